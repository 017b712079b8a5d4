"""The n-gram reader: backoff logic on a hand-checked model, our file format, the KenLM binary layouts, and
agreement with the ``kenlm`` module (where it is installed, and through its recorded answers where not)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tingyin.speech.ngram import NgramModel, State, open_model
from tingyin.speech.ngram_import import arpa_model, murmur_hash64a, read_kenlm_binary
from tingyin.speech.zh_lm import PACKAGED_MODEL

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ngram"
BINARIES = ["small.trie.klm", "small.quant.klm", "small.array.klm", "small.quant-array.klm"]
LIBIME = Path("/usr/lib/x86_64-linux-gnu/libime/zh_CN.lm")

# Small enough to check by hand. "b a c" has no "a c" bigram (a pruned suffix); d's backoff is an explicit
# 0 but "d a" extends it; c and "b c" extend nothing; <unk> is missing (KenLM then uses -100).
TINY_ARPA = """
\\data\\
ngram 1=6
ngram 2=6
ngram 3=3

\\1-grams:
-1.0\t<s>\t-0.5
-0.8\t</s>
-1.2\ta\t-0.3
-1.5\tb\t-0.2
-2.0\tc
-1.9\td\t0

\\2-grams:
-0.4\t<s> a\t-0.1
-0.6\ta b\t-0.25
-0.7\tb c
-0.9\tb </s>
-1.0\tb a\t-0.05
-0.5\td a

\\3-grams:
-0.2\t<s> a b
-0.05\ta b c
-0.3\tb a c
\\end\\
"""


@pytest.fixture(scope="module")
def tiny() -> NgramModel:
    return arpa_model(TINY_ARPA.splitlines())


def _walk(model: NgramModel, words: list[str], state: State | None = None) -> tuple[list[float], State]:
    state = model.begin_sentence() if state is None else state
    scores = []
    for word in words:
        score, state = model.score(state, word)
        scores.append(score)
    return scores, state


def _approx(values: list[float]) -> object:
    return pytest.approx(values, abs=1e-6)


def test_longest_match_then_backoff(tiny: NgramModel) -> None:
    scores, state = _walk(tiny, ["a", "b", "c", "</s>"])
    # bigram <s> a, trigram <s> a b, trigram a b c, then </s> from an empty context
    assert scores == _approx([-0.4, -0.2, -0.05, -0.8])
    assert state == ((), ())
    after_a = _walk(tiny, ["a"])[1]
    assert tiny.score(after_a, "c")[0] == pytest.approx(-2.0 - 0.3 - 0.1)  # p(c) + bo(a) + bo(<s> a)
    assert tiny.score(after_a, "</s>")[0] == pytest.approx(-0.8 - 0.3 - 0.1)
    after_b = tiny.score(tiny.null_context(), "b")[1]
    assert tiny.score(after_b, "b")[0] == pytest.approx(-1.5 - 0.2)  # no "b b": p(b) + bo(b)
    assert tiny.score(after_b, "</s>")[0] == pytest.approx(-0.9)


def test_state_keeps_only_context_that_a_longer_ngram_extends(tiny: NgramModel) -> None:
    a, b = tiny.index("a"), tiny.index("b")
    assert _walk(tiny, ["a", "b"])[1] == ((b, a), pytest.approx((-0.2, -0.25)))
    # c extends nothing: no context survives it; d's zero backoff still extends ("d a").
    assert tiny.score(tiny.null_context(), "c")[1] == ((), ())
    after_d = tiny.score(tiny.null_context(), "d")[1]
    assert after_d == ((tiny.index("d"),), (0.0,))
    assert tiny.score(after_d, "a")[0] == pytest.approx(-0.5)
    assert tiny.score(after_d, "b")[0] == pytest.approx(-1.5)


def test_a_trigram_with_a_pruned_suffix(tiny: NgramModel) -> None:
    after_ba = _walk(tiny, ["a"], tiny.score(tiny.null_context(), "b")[1])[1]
    assert tiny.score(after_ba, "c")[0] == pytest.approx(-0.3)  # found through the blank "a c"
    after_sa = _walk(tiny, ["a"])[1]
    assert tiny.score(after_sa, "c")[0] == pytest.approx(-2.4)  # the blank holds bo(a) + p(c)
    assert tiny.score(_walk(tiny, ["a"], tiny.null_context())[1], "c")[0] == pytest.approx(-2.3)


def test_unknown_words_and_vocabulary(tiny: NgramModel) -> None:
    assert "a" in tiny and "</s>" in tiny
    assert "zzz" not in tiny and "<unk>" not in tiny  # as kenlm: <unk> is not "in" the model
    assert tiny.index("zzz") == 0
    assert tiny.score(_walk(tiny, ["a"])[1], "zzz")[0] == pytest.approx(-100.0 - 0.3 - 0.1)
    assert tiny.unigram("a") == pytest.approx(-1.2)
    assert tiny.unigram("zzz") == pytest.approx(-100.0)
    assert tiny.counts() == [7, 7, 3]  # + <unk>; + the blank bigram "a c"


def _all_answers(model: NgramModel, words: list[str], length: int = 3) -> list[tuple[object, ...]]:
    """Scores and states (as words) of every sequence of ``words`` up to ``length`` long."""
    out: list[tuple[object, ...]] = []
    for start in (model.begin_sentence(), model.null_context()):
        frontier = [start]
        for _ in range(length):
            following = []
            for state in frontier:
                for word in words:
                    score, after = model.score(state, word)
                    out.append((score, [model.vocab[i] for i in after[0]], after[1]))
                    following.append(after)
            frontier = list(dict.fromkeys(following))
    return out


def test_no_score_exceeds_its_words_ceiling(tiny: NgramModel) -> None:
    words = ["a", "b", "c", "d", "</s>", "zzz"]
    for start in (tiny.begin_sentence(), tiny.null_context()):
        frontier = [start]
        for _ in range(3):
            following = []
            for state in frontier:
                for word in words:
                    score, after = tiny.score(state, word)
                    assert score <= tiny.score_ceilings[tiny.index(word)]
                    following.append(after)
            frontier = list(dict.fromkeys(following))
    # The best n-gram ending in the word, plus the rounding margin: c's is "a b c" (-0.05).
    assert tiny.score_ceilings[tiny.index("c")] == pytest.approx(-0.05, abs=2e-4)
    assert tiny.score_ceilings[tiny.index("d")] == pytest.approx(-1.9, abs=2e-4)  # no n-gram ends in d
    # A positive backoff (not in a normalised model) can be added on top of a probability: allowed for.
    lifted = arpa_model(TINY_ARPA.replace("-1.5\tb\t-0.2", "-1.5\tb\t0.3").splitlines())
    after_b = lifted.score(lifted.begin_sentence(), "b")[1]
    assert lifted.score(after_b, "d")[0] == pytest.approx(-1.9 + 0.3)
    assert lifted.score_ceilings[lifted.index("d")] >= -1.9 + 0.3


def test_our_format_round_trip(tiny: NgramModel, tmp_path: Path) -> None:
    path = tmp_path / "tiny.npz"
    tiny.provenance = {"source": "tiny"}
    tiny.save(path)
    again = open_model(path)
    assert again.provenance == {"source": "tiny"}
    assert again.vocab == tiny.vocab
    words = ["<s>", "</s>", "a", "b", "c", "d", "zzz"]
    assert _all_answers(again, words) == _all_answers(tiny, words)
    # Same model, same bytes: the packaged file can be checked against a fresh conversion.
    path2 = tmp_path / "tiny2.npz"
    again.save(path2)
    assert path2.read_bytes() == path.read_bytes()


def test_unreadable_files_are_value_errors(tmp_path: Path, tiny: NgramModel) -> None:
    text = tmp_path / "text.lm"
    text.write_text("hello")
    with pytest.raises(ValueError):
        open_model(text)
    good = tmp_path / "tiny.npz"
    tiny.save(good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ValueError):
        open_model(truncated)
    kenlm_file = (FIXTURES / "small.quant-array.klm").read_bytes()
    for size in (100, 140, 3000, len(kenlm_file) - 200):  # in the header, the counts, the trie, the words
        cut = tmp_path / f"cut{size}.klm"
        cut.write_bytes(kenlm_file[:size])
        with pytest.raises(ValueError):
            open_model(cut)
    with pytest.raises(ValueError):
        arpa_model(["\\data\\", "ngram 1=1", "", "\\2-grams:", "-1\ta b"])
    with pytest.raises(OSError):
        open_model(tmp_path / "missing.npz")


def test_murmur_hash_orders_the_kenlm_vocabulary() -> None:
    # Every word of a KenLM file hashes to its slot of the file's sorted hash table.
    model = read_kenlm_binary(FIXTURES / "small.quant-array.klm", verify_vocabulary=True)
    hashes = [murmur_hash64a(w.encode()) for w in model.vocab[1:]]
    assert hashes == sorted(hashes)
    assert murmur_hash64a(b"") != murmur_hash64a(b"\0")


@pytest.fixture(scope="module")
def small_arpa() -> NgramModel:
    return open_model(FIXTURES / "small.arpa")


def _recorded() -> dict[str, object]:
    return dict(json.loads((FIXTURES / "small.kenlm-scores.json").read_text(encoding="utf-8")))


def _sequence_scores(model: NgramModel, sequences: list[list[str]]) -> list[list[float]]:
    return [_walk(model, [*sequence, "</s>"])[0] for sequence in sequences]


@pytest.mark.parametrize("name", BINARIES)
def test_kenlm_binaries_give_kenlms_answers(name: str, small_arpa: NgramModel) -> None:
    model = open_model(FIXTURES / name)
    assert model.counts() == small_arpa.counts()
    recorded = _recorded()
    sequences = recorded["sequences"]
    assert isinstance(sequences, list) and isinstance(recorded["scores"], dict)
    assert _sequence_scores(model, sequences) == recorded["scores"][name]  # exactly
    if "quant" not in name:  # unquantised: the binary and the ARPA text are the same model
        words = [*random.Random(3).sample(small_arpa.vocab, 12), "不在词表"]
        assert _all_answers(model, words) == _all_answers(small_arpa, words)


# ------------------------------------------------------------------------------- with the kenlm module


def _compare_with_kenlm(ours: NgramModel, reference: object, sequences: list[list[str]]) -> int:
    """Every BaseScore of every sequence, from <s> through </s>; states must split the same way."""
    import kenlm

    compared = 0
    seen: dict[State, object] = {}
    for sequence in sequences:
        kstate = kenlm.State()
        reference.BeginSentenceWrite(kstate)  # type: ignore[attr-defined]
        state = ours.begin_sentence()
        for word in [*sequence, "</s>"]:
            after = kenlm.State()
            expected = reference.BaseScore(kstate, word, after)  # type: ignore[attr-defined]
            got, state = ours.score(state, word)
            assert got == expected, (sequence, word)
            assert seen.setdefault(state, after) == after  # equal states in ours are equal in kenlm
            kstate = after
            compared += 1
    return compared


@pytest.mark.parametrize("name", ["small.arpa", *BINARIES])
def test_matches_the_kenlm_module_on_the_fixtures(name: str) -> None:
    kenlm = pytest.importorskip("kenlm")
    ours = open_model(FIXTURES / name)
    rng = random.Random(1)
    words = [*ours.vocab[1:], "不在词表", "<unk>"]
    sequences = [[rng.choice(words) for _ in range(7)] for _ in range(1500)]
    assert _compare_with_kenlm(ours, kenlm.Model(str(FIXTURES / name)), sequences) == 1500 * 8
    assert all((w in ours) == (w in kenlm.Model(str(FIXTURES / name))) for w in words)


@pytest.fixture(scope="module")
def packaged() -> NgramModel:
    return open_model(PACKAGED_MODEL)


def test_packaged_model_records_where_it_came_from(packaged: NgramModel) -> None:
    assert packaged.order == 3
    assert packaged.counts() == [164887, 1983152, 634213]
    assert packaged.provenance["debian_package"] == "libime-data-language-model 1.0.16-1"
    assert packaged.provenance["sha256"] == "e4097ca9ca1082928c2ea7d5e368080a696611efa0714dfe563c769f26a415d2"
    notice = (PACKAGED_MODEL.parent / "NOTICE.md").read_text(encoding="utf-8")
    assert "LGPL-2.1" in notice and str(packaged.provenance["sha256"]) in notice
    assert (PACKAGED_MODEL.parent / "LGPL-2.1.txt").is_file()


def _segment(model: NgramModel, text: str) -> list[str]:
    """Greedy longest-match words of the model (enough to make realistic queries)."""
    words, i = [], 0
    while i < len(text):
        for size in range(min(4, len(text) - i), 0, -1):
            if size == 1 or text[i : i + size] in model:
                words.append(text[i : i + size])
                i += size
                break
    return words


def test_packaged_model_matches_kenlm_on_libimes_file(packaged: NgramModel, shared_testdata: Path) -> None:
    kenlm = pytest.importorskip("kenlm")
    if not LIBIME.is_file():
        pytest.skip("libime's zh_CN.lm is not installed (Debian libime-data-language-model)")
    reference = kenlm.Model(str(LIBIME))
    with open(shared_testdata / "zh_dev" / "manifest.csv", encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    sentences = [_segment(packaged, t) for t in texts]
    rng = random.Random(2)
    vocab = packaged.vocab
    # Real sentences, the same with sound-alike-like swaps, and random vocabulary.
    swapped = [[w if rng.random() < 0.7 else rng.choice(vocab) for w in s] for s in sentences]
    noise = [[rng.choice(vocab) for _ in range(8)] for _ in range(1000)]
    assert _compare_with_kenlm(packaged, reference, sentences + swapped + noise) > 10000
    assert all((w in packaged) == (w in reference) for s in sentences for w in s)


def test_packaged_model_is_the_conversion_of_libimes_file(packaged: NgramModel) -> None:
    if not LIBIME.is_file():
        pytest.skip("libime's zh_CN.lm is not installed (Debian libime-data-language-model)")
    converted = read_kenlm_binary(LIBIME)
    assert converted.vocab == packaged.vocab
    for name in ("unigram_prob", "unigram_backoff", "unigram_next"):
        assert np.array_equal(getattr(converted, name), getattr(packaged, name))
    for ours, theirs in zip(packaged.levels, converted.levels, strict=True):
        for field in ("words", "prob", "prob_table", "backoff", "backoff_table", "next"):
            a, b = getattr(ours, field), getattr(theirs, field)
            assert (a is None and b is None) or np.array_equal(a, b), field


def test_the_converter_script_records_provenance(tmp_path: Path, small_arpa: NgramModel) -> None:
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "small.npz"
    source = FIXTURES / "small.quant-array.klm"
    subprocess.run(
        [sys.executable, str(root / "scripts" / "convert_ngram.py"), str(source), str(out), "--check"],
        check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
    )
    converted = open_model(out)
    assert converted.provenance["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert converted.provenance["source"] == "small.quant-array.klm"
    recorded = _recorded()
    sequences = recorded["sequences"]
    assert isinstance(sequences, list) and isinstance(recorded["scores"], dict)
    assert _sequence_scores(converted, sequences) == recorded["scores"]["small.quant-array.klm"]
