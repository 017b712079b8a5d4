#!/usr/bin/env python
"""Load time, memory and speed of the Mandarin second pass's trigram reader, optionally against ``kenlm``.

    PYTHONPATH=. python scripts/bench_zh_lm.py [--manifest ../shared/testdata/zh_dev/manifest.csv]
        [--model tingyin/speech/data/zh_word_trigram.npz] [--kenlm /usr/lib/x86_64-linux-gnu/libime/zh_CN.lm]

Prints: the model file's size, the time to load it and the resident memory it adds (the n-gram model alone,
then ``ZhLanguageModel`` with its sound-alike index); the CPU time per query of ``NgramModel.score`` on word
sequences from the manifest's reference texts (and of kenlm's ``BaseScore`` on the same sequences, with the
same answers checked, when ``--kenlm`` is given and the module is installed); and the CPU time per sentence
of the second pass's language-model work (``rewrites`` + ``score``) with the number of queries it makes.
Timings are CPU seconds of this process (``time.process_time``): on a shared machine they vary less than
wall time; print the load average next to them.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from collections.abc import Callable
from pathlib import Path


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    from tingyin.speech.ngram import NgramModel, State, open_model
    from tingyin.speech.zh_lm import PACKAGED_MODEL, ZhLanguageModel

    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest", type=Path, default=Path("../shared/testdata/zh_dev/manifest.csv"))
    parser.add_argument("--model", type=Path, default=PACKAGED_MODEL)
    parser.add_argument("--kenlm", type=Path, help="the same model as a KenLM file, to compare with kenlm")
    parser.add_argument("--sentences", type=int, default=300)
    args = parser.parse_args()

    with open(args.manifest, encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)][: args.sentences]
    import jieba  # noqa: F401  (imported before measuring: the lexicon needs it anyway)

    print(f"model file {args.model}: {args.model.stat().st_size / 1e6:.1f} MB")
    before = rss_mb()
    started = time.perf_counter()
    model: NgramModel = open_model(args.model)
    print(f"n-gram model: load {time.perf_counter() - started:.2f} s, +{rss_mb() - before:.0f} MB RSS")
    del model
    before = rss_mb()
    started = time.perf_counter()
    lm = ZhLanguageModel(args.model)
    print(
        f"ZhLanguageModel (model + sound-alike index): load {time.perf_counter() - started:.2f} s, "
        f"+{rss_mb() - before:.0f} MB RSS"
    )

    # Word sequences: each reference text, segmented by the trigram itself.
    sequences: list[list[str]] = []
    for text in texts:
        words: list[str] = []
        i = 0
        while i < len(text):
            longest = min(4, len(text) - i)
            size = next(s for s in range(longest, 0, -1) if s == 1 or text[i : i + s] in lm.model)
            words.append(text[i : i + size])
            i += size
        sequences.append([*words, "</s>"])
    queries = sum(len(s) for s in sequences)
    ngram = lm.model

    def ours() -> None:
        for sequence in sequences:
            state = ngram.begin_sentence()
            for word in sequence:
                _, state = ngram.score(state, word)

    per_query = _best(ours) / queries * 1e6
    print(f"NgramModel.score: {per_query:.2f} µs CPU per query ({queries} queries)")
    if args.kenlm:
        try:
            import kenlm
        except ImportError:
            print("kenlm is not installed: no comparison")
        else:
            reference = kenlm.Model(str(args.kenlm))

            def theirs() -> None:
                for sequence in sequences:
                    state = kenlm.State()
                    reference.BeginSentenceWrite(state)
                    for word in sequence:
                        after = kenlm.State()
                        reference.BaseScore(state, word, after)
                        state = after

            differ = 0
            for sequence in sequences:
                kstate, state = kenlm.State(), ngram.begin_sentence()
                reference.BeginSentenceWrite(kstate)
                for word in sequence:
                    after = kenlm.State()
                    expected = reference.BaseScore(kstate, word, after)
                    got, state = ngram.score(state, word)
                    differ += expected != got
                    kstate = after
            print(
                f"kenlm BaseScore: {_best(theirs) / queries * 1e6:.2f} µs CPU per query; "
                f"answers that differ: {differ}"
            )

    counted = 0
    score = ngram.score

    def counting(state: State, word: str) -> tuple[float, State]:
        nonlocal counted
        counted += 1
        return score(state, word)

    ngram.score = counting  # type: ignore[method-assign]
    started = time.process_time()
    for text in texts:
        for rewrite in lm.rewrites(text, limit=2):
            lm.score(rewrite)
        lm.score(text)
    spent = time.process_time() - started
    print(
        f"second-pass LM work (rewrites + scores, cold caches): {spent / len(texts) * 1000:.1f} ms CPU per "
        f"sentence, {counted / len(texts):.0f} queries per sentence"
    )
    print(f"load average {os.getloadavg()}")


def _best(run: Callable[[], None], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


if __name__ == "__main__":
    main()
