"""Homophone correction of Mandarin transcripts with a word-frequency lexicon.

Whisper base often writes a word that sounds right with the wrong characters (购房 → 构防, 公积金 → 攻击金,
驾驶 → 架势). This module scores a sentence with a unigram word model (best segmentation over jieba's
dictionary of ~350k words with corpus frequencies) and replaces a 2-4 character stretch by a dictionary
word that sounds the same (toneless pinyin, fuzzy initials/finals) when the sentence becomes much more
probable than the cost of the changed characters. Only CJK runs are touched.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from importlib import resources
from typing import NamedTuple

from tingyin.speech import textnorm
from tingyin.speech.hotwords import fuzzy_syllable

MAX_WORD = 4  # longest stretch replaced
MAX_SEGMENT_WORD = 6  # longest dictionary word in the segmentation
MIN_CANDIDATE_FREQ = 10  # rare dictionary words are never proposed
EXACT_COST = 5.5  # nats per changed character when the pinyin is identical (tones ignored)
FUZZY_COST = 8.0  # nats per changed character when it only matches with fuzzy initials/finals
MAX_PASSES = 3
CONTEXT = 6  # characters either side of a stretch that take part in judging a replacement
# A Latin word or digit run inside Chinese text costs a fixed amount, so that hypotheses cannot win by
# avoiding Chinese characters.
LATIN_WORD_LOGPROB = -12.0


class Correction(NamedTuple):
    start: int
    end: int
    replacement: str
    gain: float


@lru_cache(maxsize=8192)
def _readings(char: str) -> tuple[str, ...]:
    """Fuzzy toneless readings of one character (all heteronyms), empty for non-Chinese."""
    from pypinyin.contrib.tone_convert import to_normal
    from pypinyin.pinyin_dict import pinyin_dict

    raw = pinyin_dict.get(ord(char))
    if not raw:
        return ()
    return tuple(dict.fromkeys(fuzzy_syllable(to_normal(r)) for r in raw.split(",")))


def sound_keys(text: str, limit: int = 8) -> list[tuple[str, ...]]:
    options = [_readings(c) for c in text]
    if any(not o for o in options):
        return []
    return list(itertools.islice(itertools.product(*options), limit))


class Lexicon:
    """Word log-probabilities and a sound-alike index of jieba's dictionary."""

    def __init__(self) -> None:
        logp: dict[str, float] = {}
        counts: list[tuple[str, int]] = []
        text = resources.files("jieba").joinpath("dict.txt").read_text(encoding="utf-8")
        for line in text.splitlines():
            parts = line.split(" ")
            if len(parts) < 2 or not parts[1].isdigit():
                continue
            counts.append((parts[0], int(parts[1])))
        total = sum(c for _, c in counts)
        for word, count in counts:
            if len(word) <= MAX_SEGMENT_WORD:
                logp[word] = math.log(max(count, 1) / total)
        self.logp = logp
        self.unknown = math.log(0.5 / total)
        self.index: dict[tuple[str, ...], list[str]] = {}
        for word, count in counts:
            if count >= MIN_CANDIDATE_FREQ and 2 <= len(word) <= MAX_WORD:
                for key in sound_keys(word, limit=4):
                    self.index.setdefault(key, []).append(word)

    def score(self, text: str) -> float:
        """Log-probability of the best segmentation of a CJK string under the unigram word model."""
        n = len(text)
        best = [0.0] + [-math.inf] * n
        for end in range(1, n + 1):
            for size in range(1, min(MAX_SEGMENT_WORD, end) + 1):
                word = text[end - size : end]
                lp = self.logp.get(word)
                if lp is None:
                    if size > 1:
                        continue
                    lp = self.unknown
                value = best[end - size] + lp
                if value > best[end]:
                    best[end] = value
        return best[n]

    def candidates(self, stretch: str) -> list[tuple[str, float]]:
        """Dictionary words sounding like ``stretch``, with the cost of the change."""
        found: dict[str, float] = {}
        for key in sound_keys(stretch):
            for word in self.index.get(key, ()):
                if word == stretch:
                    continue
                cost = rewrite_cost(stretch, word, EXACT_COST, FUZZY_COST)
                if word not in found or cost < found[word]:
                    found[word] = cost
        return list(found.items())

    def best_correction(self, run: str, protected: set[int]) -> Correction | None:
        best: Correction | None = None
        for size in range(2, MAX_WORD + 1):
            for start in range(0, len(run) - size + 1):
                if protected & set(range(start, start + size)):
                    continue
                stretch = run[start : start + size]
                if stretch in self.logp and len(stretch) == size and self._is_common(stretch):
                    continue
                # The unigram model's segmentation only changes near the stretch: score a local window.
                left, right = max(0, start - CONTEXT), min(len(run), start + size + CONTEXT)
                before = self.score(run[left:right])
                for word, cost in self.candidates(stretch):
                    changed = run[left:start] + word + run[start + size : right]
                    gain = self.score(changed) - before - cost
                    if gain > 0 and (best is None or gain > best.gain):
                        best = Correction(start, start + size, word, gain)
        return best

    def _is_common(self, word: str) -> bool:
        # A frequent word as written is left alone: a unigram model cannot judge between two real words.
        return self.logp.get(word, -math.inf) > math.log(2e-6)

    def correct_run(self, run: str, protected: set[int] | None = None) -> str:
        protected = set(protected or ())
        for _ in range(MAX_PASSES + len(run) // 10):
            found = self.best_correction(run, protected)
            if found is None:
                break
            run = run[: found.start] + found.replacement + run[found.end :]
            protected |= set(range(found.start, found.end))
        return run


def rewrite_cost(stretch: str, word: str, exact_cost: float, fuzzy_cost: float) -> float:
    """Cost of writing ``word`` for the same-length, sound-alike ``stretch``: per changed character,
    ``exact_cost`` when a toneless reading is shared, else ``fuzzy_cost``."""
    cost = 0.0
    for a, b in zip(stretch, word, strict=True):
        if a != b:
            cost += exact_cost if set(plain_readings(a)) & set(plain_readings(b)) else fuzzy_cost
    return cost


def sentence_pieces(text: str) -> list[str]:
    """``text`` as a language model reads it: numbers as Chinese numerals, punctuation dropped, then its
    runs of Chinese characters and its Latin words (or digit runs), in order."""
    plain = textnorm.strip_punctuation(textnorm.numbers_to_words(textnorm.to_simplified(text), "zh"))
    return re.findall(r"[\u4e00-\u9fff]+|[A-Za-z0-9']+", plain)


def sentence_logprob(text: str, run_logprob: Callable[[str], float]) -> float:
    """Log-probability of ``text`` under a word model that scores each Chinese run with ``run_logprob``
    (``sentence_pieces``), each Latin word or digit run a fixed cost."""
    return sum(
        run_logprob(run) if textnorm.has_cjk(run) else LATIN_WORD_LOGPROB for run in sentence_pieces(text)
    )


@lru_cache(maxsize=8192)
def plain_readings(char: str) -> tuple[str, ...]:
    from pypinyin.contrib.tone_convert import to_normal
    from pypinyin.pinyin_dict import pinyin_dict

    raw = pinyin_dict.get(ord(char))
    return tuple(to_normal(r) for r in raw.split(",")) if raw else ()


def covered_positions(run: str, phrases: Iterable[str]) -> frozenset[int]:
    """Character positions of ``run`` covered by any of ``phrases``."""
    covered: set[int] = set()
    for phrase in phrases:
        # ``in`` first: a Baidu vocabulary holds up to 10,000 phrases, and a pattern compiled for each
        # (Python keeps 512) cost 0.2 s a rewrite.
        if phrase and phrase in run:
            for hit in re.finditer(re.escape(phrase), run):
                covered.update(range(hit.start(), hit.end()))
    return frozenset(covered)


def correct_homophones(lexicon: Lexicon, text: str, keep: tuple[str, ...] = ()) -> str:
    """Fix sound-alike miswritten words in the Chinese parts of ``text`` (``keep`` phrases stay)."""
    out = []
    last = 0
    for match in re.finditer(r"[\u4e00-\u9fff]{2,}", text):
        run = match.group(0)
        out.append(text[last : match.start()])
        out.append(lexicon.correct_run(run, set(covered_positions(run, keep))))
        last = match.end()
    out.append(text[last:])
    return "".join(out)
