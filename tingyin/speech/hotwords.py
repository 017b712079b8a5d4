"""Hot words and custom vocabulary: bias the decoder through its prompt, then correct the text.

Positive weights favour a phrase: it goes into the decoder prompt, and after decoding a stretch of text that
sounds like it (Chinese: toneless pinyin with the usual fuzzy pairs zh/z, ch/c, sh/s, n/l, -ng/-n; other
languages: spelling) is replaced by it. The higher the weight, the looser the match that is accepted.
Vocabulary phrases (Baidu) act as hot words of weight 8. Negative weights suppress a phrase: the decoder's
n-best list is searched for a hypothesis without it (see engine), and what remains is removed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

from tingyin.speech.options import HotWord
from tingyin.speech.textnorm import has_cjk, to_simplified

VOCABULARY_WEIGHT = 8.0
# Prompt budget (tokens) for hot words: Whisper's prompt may hold 223 tokens; keep room for the style prompt.
PROMPT_CHAR_BUDGET = 120

_FUZZY_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("l", "n"), ("f", "h"), ("r", "l"))
_FUZZY_FINALS = (("ang", "an"), ("eng", "en"), ("ing", "in"), ("iang", "ian"), ("uang", "uan"))


class Phrase(NamedTuple):
    """A phrase as the decoder biases it: Simplified text and its weight."""

    text: str
    weight: float


class BiasPlan(NamedTuple):
    """Hot words split by intent, strongest first."""

    favoured: tuple[Phrase, ...]
    suppressed: tuple[Phrase, ...]


def plan(hot_words: Iterable[HotWord], vocabulary: Iterable[str]) -> BiasPlan:
    words = [Phrase(to_simplified(w.text.strip()), float(w.weight)) for w in hot_words if w.text.strip()]
    words += [Phrase(to_simplified(p.strip()), VOCABULARY_WEIGHT) for p in vocabulary if p.strip()]
    favoured: dict[str, Phrase] = {}
    for word in words:
        if word.weight > 0 and (word.text not in favoured or favoured[word.text].weight < word.weight):
            favoured[word.text] = word
    suppressed = {w.text: w for w in words if w.weight < 0}
    return BiasPlan(
        tuple(sorted(favoured.values(), key=lambda w: -w.weight)),
        tuple(sorted(suppressed.values(), key=lambda w: w.weight)),
    )


def prompt_text(bias: BiasPlan) -> str:
    """Favoured phrases for the decoder prompt, strongest first, within the prompt budget."""
    chosen: list[str] = []
    used = 0
    for word in bias.favoured:
        if used + len(word.text) + 1 > PROMPT_CHAR_BUDGET:
            break
        chosen.append(word.text)
        used += len(word.text) + 1
    if not chosen:
        return ""
    separator = "、" if any(has_cjk(w) for w in chosen) else ", "
    return separator.join(chosen)


@lru_cache(maxsize=4096)
def _syllables(text: str) -> tuple[str, ...]:
    from pypinyin import Style, lazy_pinyin

    return tuple(lazy_pinyin(text, style=Style.NORMAL, errors=lambda chars: list(chars)))  # type: ignore[arg-type,return-value]


def fuzzy_syllable(syllable: str) -> str:
    for long, short in _FUZZY_INITIALS:
        if syllable.startswith(long):
            syllable = short + syllable[len(long) :]
            break
    for long, short in _FUZZY_FINALS:
        if syllable.endswith(long):
            syllable = syllable[: -len(long)] + short
            break
    return syllable


def _syllable_similarity(a: str, b: str) -> float:
    if a == b:
        return 1.0
    if fuzzy_syllable(a) == fuzzy_syllable(b):
        return 0.85
    return difflib.SequenceMatcher(None, a, b).ratio() * 0.7


def pinyin_similarity(a: str, b: str) -> float:
    """How alike two equally long Chinese strings sound, 0..1 (tones ignored, fuzzy pairs count 0.85)."""
    sa, sb = _syllables(a), _syllables(b)
    if len(sa) != len(sb) or not sa:
        return 0.0
    return sum(_syllable_similarity(x, y) for x, y in zip(sa, sb, strict=True)) / len(sa)


def threshold(weight: float) -> float:
    """Similarity a stretch needs to be replaced by a hot word of this weight (weight 10: 0.7, 1: 0.88)."""
    return 0.9 - 0.02 * max(0.0, min(10.0, weight))


_CJK_RUN = re.compile(r"[\u3400-\u9fff]+")


def _correct_zh(text: str, word: Phrase) -> str:
    target = word.text
    size = len(target)
    if size < 2 or target in text:
        return text
    needed = threshold(word.weight)
    best: tuple[float, int] | None = None
    for run in _CJK_RUN.finditer(text):
        for start in range(run.start(), run.end() - size + 1):
            candidate = text[start : start + size]
            score = pinyin_similarity(candidate, target)
            # A stretch that already shares characters with the phrase is more likely the same phrase.
            score += 0.05 * sum(c == t for c, t in zip(candidate, target, strict=True)) / size
            if score >= needed and (best is None or score > best[0]):
                best = (score, start)
    if best is None:
        return text
    start = best[1]
    return text[:start] + target + text[start + size :]


_WORD = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")


def _correct_spelling(text: str, word: Phrase) -> str:
    target = word.text
    if target.lower() in text.lower():
        # Right words, maybe wrong case: take the phrase's own spelling.
        index = text.lower().index(target.lower())
        return text[:index] + target + text[index + len(target) :]
    size = len(target.split())
    tokens = list(_WORD.finditer(text))
    needed = threshold(word.weight) - 0.05
    best: tuple[float, int, int] | None = None
    for n in {max(1, size - 1), size, size + 1}:
        for i in range(len(tokens) - n + 1):
            span = tokens[i : i + n]
            candidate = text[span[0].start() : span[-1].end()]
            score = difflib.SequenceMatcher(
                None, candidate.lower().replace(" ", ""), target.lower().replace(" ", "")
            ).ratio()
            if score >= needed and (best is None or score > best[0]):
                best = (score, span[0].start(), span[-1].end())
    if best is None:
        return text
    return text[: best[1]] + target + text[best[2] :]


def correct(text: str, bias: BiasPlan) -> str:
    """Replace stretches that sound (zh) or are spelt (other) like a favoured phrase by the phrase."""
    for word in bias.favoured:
        text = _correct_zh(text, word) if has_cjk(word.text) else _correct_spelling(text, word)
    return text


def contains_suppressed(text: str, bias: BiasPlan) -> bool:
    lowered = to_simplified(text).lower()
    return any(word.text.lower() in lowered for word in bias.suppressed)


def remove_suppressed(text: str, bias: BiasPlan) -> str:
    for word in bias.suppressed:
        text = re.sub(re.escape(word.text), "", text, flags=re.IGNORECASE)
    return re.sub(r"\s{2,}", " ", text).strip()
