#!/usr/bin/env python
"""Convert an n-gram language model (KenLM trie binary or ARPA text) into tingyin's own format.

The Mandarin second pass ships libime's word trigram converted by this script; to regenerate it:

    apt-get install libime-data-language-model        # Debian/Ubuntu; 1.0.16-1 was used
    PYTHONPATH=. python scripts/convert_ngram.py /usr/lib/x86_64-linux-gnu/libime/zh_CN.lm \\
        tingyin/speech/data/zh_word_trigram.npz --check

The KenLM file is parsed by ``tingyin.speech.ngram_import`` (no ``kenlm`` module, no compiler); the trie and
its 8-bit quantisation are kept as they are, so scores are unchanged. The output records where it came
from (file name, size, sha256, the Debian package that owns it, when dpkg knows). ``--check`` then reloads
the written file and, when the ``kenlm`` module happens to be installed, compares scores on random
queries with it.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import subprocess
import time
from pathlib import Path

from tingyin.speech.ngram import NgramModel, open_model
from tingyin.speech.ngram_import import KENLM_MAGIC, read_kenlm_binary


def provenance(source: Path) -> dict[str, object]:
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    info: dict[str, object] = {"source": source.name, "bytes": source.stat().st_size, "sha256": digest}
    try:
        owner = subprocess.run(
            ["dpkg-query", "-S", str(source.resolve())], capture_output=True, text=True, check=True
        ).stdout.split(":", 1)[0]
        version = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", owner], capture_output=True, text=True, check=True
        ).stdout
        info["debian_package"] = f"{owner} {version}"
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def check(written: NgramModel, source: Path, queries: int) -> None:
    try:
        import kenlm
    except ImportError:
        print("check: kenlm is not installed; the written file reloads and validates")
        return
    reference = kenlm.Model(str(source))
    rng = random.Random(0)
    vocab = written.vocab
    worst = 0.0
    for _ in range(queries // 8):
        state, kstate = written.begin_sentence(), kenlm.State()
        reference.BeginSentenceWrite(kstate)
        for _ in range(8):
            word = rng.choice(vocab[1:])
            after = kenlm.State()
            expected = reference.BaseScore(kstate, word, after)
            got, state = written.score(state, word)
            worst = max(worst, abs(expected - got))
            kstate = after
    print(f"check: {queries} random queries against kenlm, largest difference {worst:g}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path, help="KenLM trie binary or ARPA file")
    parser.add_argument("output", type=Path, help="the .npz to write")
    parser.add_argument("--check", action="store_true", help="reload the output and compare with kenlm")
    parser.add_argument("--queries", type=int, default=20000)
    args = parser.parse_args()

    started = time.perf_counter()
    with open(args.source, "rb") as f:
        kenlm_binary = f.read(len(KENLM_MAGIC)) == KENLM_MAGIC
    # A KenLM file's word strings are also checked against its hash table (their order gives the ids).
    if kenlm_binary:
        model = read_kenlm_binary(args.source, verify_vocabulary=True)
    else:
        model = open_model(args.source)
    model.provenance = provenance(args.source)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.output)
    counts = " ".join(f"{k}-grams={n}" for k, n in enumerate(model.counts(), start=1))
    print(f"{args.output}: {args.output.stat().st_size / 1e6:.1f} MB, {counts}, {model.provenance}")
    print(f"converted in {time.perf_counter() - started:.1f} s")
    if args.check:
        written = NgramModel.load(args.output)
        check(written, args.source, args.queries)


if __name__ == "__main__":
    main()
