"""Hot words and custom vocabulary: what a phrase's weight does to the recognition.

A weight runs from -10 to 10 (Qiniu's factor): a positive weight raises the phrase, a negative one lowers it,
more the larger its absolute value, and 0 does nothing. Every effect grows with the weight, so a stronger
weight never does less than a weaker one:

* the choice among hypotheses (n-best, the Mandarin second pass's rewrites): a hypothesis containing the
  phrase gains ``weight`` × ``rescoring.HOT_WORD_BONUS`` nats (loses, for a negative weight);
* positive weights: the phrase goes into the decoder prompt (strongest first, within a budget), and after
  decoding a stretch of text that sounds like it (Chinese: toneless pinyin with the usual fuzzy pairs zh/z,
  ch/c, sh/s, n/l, -ng/-n; other languages: spelling) is replaced by it, the match needed being looser the
  higher the weight;
* negative weights: the phrase's sound-alikes (``alternatives``) join the hypotheses, so that when the audio
  says something that sounds the same the recogniser can steer to it. Words are never removed: a phrase
  that was really spoken and has no better reading stays in the text.

Vocabulary phrases (Baidu) act as hot words of weight 8.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
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


def prompt_phrases(bias: BiasPlan) -> tuple[Phrase, ...]:
    """The favoured phrases the decoder prompt can hold, strongest first, within the prompt budget."""
    chosen: list[Phrase] = []
    used = 0
    for word in bias.favoured:
        if used + len(word.text) + 1 > PROMPT_CHAR_BUDGET:
            break
        chosen.append(word)
        used += len(word.text) + 1
    return tuple(chosen)


def prompt_text(bias: BiasPlan) -> str:
    """Favoured phrases for the decoder prompt (``prompt_phrases``)."""
    chosen = [word.text for word in prompt_phrases(bias)]
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


def _closest_zh(text: str, target: str) -> tuple[float, int] | None:
    """The stretch of ``text`` that sounds most like ``target``: (similarity, start)."""
    size = len(target)
    best: tuple[float, int] | None = None
    for run in _CJK_RUN.finditer(text):
        for start in range(run.start(), run.end() - size + 1):
            candidate = text[start : start + size]
            score = pinyin_similarity(candidate, target)
            # A stretch that already shares characters with the phrase is more likely the same phrase.
            score += 0.05 * sum(c == t for c, t in zip(candidate, target, strict=True)) / size
            if best is None or score > best[0]:
                best = (score, start)
    return best


def _correct_zh(text: str, word: Phrase) -> str:
    target = word.text
    size = len(target)
    if size < 2 or target in text:
        return text
    best = _closest_zh(text, target)
    if best is None or best[0] < threshold(word.weight):
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
    best = _closest_spelling(text, target)
    if best is None or best[0] < threshold(word.weight) - 0.05:
        return text
    return text[: best[1]] + target + text[best[2] :]


def _closest_spelling(text: str, target: str) -> tuple[float, int, int] | None:
    """The run of words in ``text`` (one fewer to one more than ``target`` has) spelt most like it:
    (similarity, start, end)."""
    size = len(target.split())
    tokens = list(_WORD.finditer(text))
    best: tuple[float, int, int] | None = None
    for n in {max(1, size - 1), size, size + 1}:
        for i in range(len(tokens) - n + 1):
            span = tokens[i : i + n]
            candidate = text[span[0].start() : span[-1].end()]
            score = difflib.SequenceMatcher(
                None, candidate.lower().replace(" ", ""), target.lower().replace(" ", "")
            ).ratio()
            if best is None or score > best[0]:
                best = (score, span[0].start(), span[-1].end())
    return best


# How alike a stretch must sound (zh) or be spelt (other) to hint at a phrase, whatever its weight (a
# correction needs 0.88 at weight 1, 0.7 at 10). On 132 zh_dev clips, each with a word of its reference
# as the hot word (weight 1): at 0.58 104 came out (105 with every chunk prompted), at 0.73 92.
HINT_SIMILARITY = 0.58


def _likeness(text: str, word: Phrase) -> float:
    """How much the stretch of ``text`` most like ``word`` sounds (zh) or is spelt (other) like it."""
    if has_cjk(word.text):
        close = _closest_zh(text, word.text) if len(word.text) >= 2 else None
        return close[0] if close is not None else 0.0
    if word.text.lower() in text.lower():
        return 1.0
    near = _closest_spelling(text, word.text)
    return near[0] + 0.05 if near is not None else 0.0  # spelling is corrected 0.05 below ``threshold``


def missed(chosen: str, readings: Iterable[str], bias: BiasPlan) -> tuple[Phrase, ...]:
    """The favoured phrases a chunk's plain decode (without them in the prompt) missed but hinted at,
    strongest first: not in its ``chosen`` text, not even as the correction would write it, while one of
    its ``readings`` (the beam's n-best) holds the phrase or a stretch somewhat like it
    (``HINT_SIMILARITY``). Only these go into the prompt of a second decode of the chunk: the prompt
    changes other words too. Only the phrases a prompt can hold are looked for (``prompt_phrases``, as
    before 2026-11-30): each costs a sound comparison with every stretch of every reading, about 1.2 ms,
    and a Baidu vocabulary may hold 10,000 phrases (12 s a chunk)."""
    texts = [(text, _plain(text)) for text in dict.fromkeys(readings)]
    plain_chosen = _plain(chosen)
    found = []
    for word in prompt_phrases(bias):
        plain_word = _plain(word.text)
        if plain_word in plain_chosen or _likeness(chosen, word) >= threshold(word.weight):
            continue
        # Chinese is compared Simplified and without spaces; a spelling word by word.
        chinese = has_cjk(word.text)
        if any(
            plain_word in plain or _likeness(plain if chinese else text, word) >= HINT_SIMILARITY
            for text, plain in texts
        ):
            found.append(word)
    return tuple(found)


def holds(text: str, phrases: tuple[Phrase, ...]) -> bool:
    """Whether ``text``, as the correction would write it, holds one of ``phrases``."""
    plain = _plain(correct(text, BiasPlan(phrases, ())))
    return any(_plain(w.text) in plain for w in phrases)


def correct(text: str, bias: BiasPlan) -> str:
    """Replace stretches that sound (zh) or are spelt (other) like a favoured phrase by the phrase."""
    for word in bias.favoured:
        text = _correct_zh(text, word) if has_cjk(word.text) else _correct_spelling(text, word)
    return text


STEER_ALIKES = 8  # sound-alike readings tried in place of each suppressed phrase (SecondPass.pool)


def weight_in(text: str, bias: BiasPlan) -> float:
    """The summed weight of the hot words ``text`` contains (Simplified, case and spaces ignored):
    positive for favoured phrases, negative for suppressed ones."""
    plain = _plain(text)
    return sum(w.weight for w in (*bias.favoured, *bias.suppressed) if _plain(w.text) in plain)


def _plain(text: str) -> str:
    return to_simplified(text).replace(" ", "").lower()


Rewriter = Callable[[str, tuple[str, ...]], list[str]]


def alternatives(text: str, bias: BiasPlan, rewrite: Rewriter) -> list[str]:
    """Readings of ``text`` with a suppressed phrase it contains replaced by what sounds like it.

    ``rewrite(text, keep)`` gives sound-alike rewrites of ``text`` (best first) that leave the ``keep``
    phrases alone; everything but the suppressed phrase is kept, so the replacement is chosen in context
    (调查详细的警卫 → 调查详细的经纬). At most ``STEER_ALIKES`` per phrase."""
    out: list[str] = []
    for word in bias.suppressed:
        if not word.text or word.text not in text:
            continue
        # The rest of the text, as the runs of Chinese characters the rewriter works on.
        around = tuple(run for piece in text.split(word.text) for run in _CJK_RUN.findall(piece))
        out += rewrite(text, around)[:STEER_ALIKES]
    return [t for t in dict.fromkeys(out) if t != text]
