"""Hot words and custom vocabulary: what a phrase's weight does to the recognition.

A weight runs from -10 to 10 (Qiniu's factor): a positive weight raises the phrase, a negative one lowers it,
more the larger its absolute value, and 0 does nothing. Every effect grows with the weight, so a stronger
weight never does less than a weaker one:

* the choice among hypotheses (n-best, the Mandarin second pass's rewrites): a hypothesis containing the
  phrase gains ``weight`` × ``rescoring.HOT_WORD_BONUS`` nats (loses, for a negative weight);
* positive weights: a stretch of a hypothesis that sounds like the phrase (Chinese: toneless pinyin with the
  usual fuzzy pairs zh/z, ch/c, sh/s, n/l, -ng/-n; other languages: spelling; the match needed looser the
  higher the weight) is replaced by it, as one more candidate (``corrections``) that the audio judges (the
  Mandarin second pass, with its language model; elsewhere Whisper's teacher-forced score), or after
  decoding in text no pass scored (``correct``); and where a chunk's decode missed a phrase its readings
  hint at (``missed``), it is decoded again with the phrase in its prompt;
* negative weights: the phrase's sound-alikes (``alternatives``) join the hypotheses, so that when the audio
  says something that sounds the same the recogniser can steer to it. Words are never removed: a phrase
  that was really spoken and has no better reading stays in the text.

Vocabulary phrases (Baidu) act as hot words of weight 8.
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import NamedTuple

import numpy as np

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


@dataclass(frozen=True)
class BiasPlan:
    """Hot words split by intent, strongest first. What it derives for looking phrases up is built on first
    use and kept with it: the recognizer keeps its latest plans, so a Baidu app's vocabulary, sent with
    each of its requests, is laid out once."""

    favoured: tuple[Phrase, ...]
    suppressed: tuple[Phrase, ...]

    @cached_property
    def sound_index(self) -> _SoundIndex:
        return _SoundIndex(self.favoured)

    @cached_property
    def plain_by_first_char(self) -> dict[str, list[tuple[int, str, float]]]:
        """Each phrase (favoured, then suppressed) as ``_plain`` writes it, with its place and weight,
        under its first character."""
        index: dict[str, list[tuple[int, str, float]]] = {}
        for position, word in enumerate((*self.favoured, *self.suppressed)):
            plain = _plain(word.text)
            if plain:
                index.setdefault(plain[0], []).append((position, plain, word.weight))
        return index


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


def _read_syllables(text: str) -> tuple[str, ...]:
    from pypinyin import Style, lazy_pinyin

    return tuple(lazy_pinyin(text, style=Style.NORMAL, errors=lambda chars: list(chars)))  # type: ignore[arg-type,return-value]


# The same stretches of a chunk's text are read for every phrase compared with them.
_syllables = lru_cache(maxsize=4096)(_read_syllables)


@lru_cache(maxsize=4096)
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


def respell(text: str, bias: BiasPlan) -> str:
    """Favoured phrases of Latin script that ``text`` holds in another case, in their own spelling."""
    for word in bias.favoured:
        if not has_cjk(word.text):
            text = _respell(text, word.text)
    return text


def _respell(text: str, target: str) -> str:
    index = text.lower().find(target.lower())
    return text if index < 0 else text[:index] + target + text[index + len(target) :]


def _correct_spelling(text: str, word: Phrase) -> str:
    target = word.text
    if target.lower() in text.lower():
        return _respell(text, target)  # right words, maybe wrong case
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


def missed(
    chosen: str, readings: Iterable[str], bias: BiasPlan, *, corrected_after: bool = True
) -> tuple[Phrase, ...]:
    """The favoured phrases a chunk's plain decode (without them in the prompt) missed but hinted at,
    strongest first: not in its ``chosen`` text, not even as the correction would write it (where the text
    is ``corrected_after`` decoding: the second pass judged the corrections already), while one of
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
        if plain_word in plain_chosen:
            continue
        if corrected_after and plain_word in _plain(_correct_one(chosen, word)):
            continue
        # Chinese is compared Simplified and without spaces; a spelling word by word.
        chinese = has_cjk(word.text)
        if any(
            plain_word in plain or _likeness(plain if chinese else text, word) >= HINT_SIMILARITY
            for text, plain in texts
        ):
            found.append(word)
    return tuple(found)


def holds(text: str, phrases: tuple[Phrase, ...], *, corrected_after: bool = True) -> bool:
    """Whether ``text``, as the correction would write it where it is ``corrected_after`` decoding, holds
    one of ``phrases``."""
    plain = _plain(correct(text, BiasPlan(phrases, ())) if corrected_after else text)
    return any(_plain(w.text) in plain for w in phrases)


def correct(text: str, bias: BiasPlan) -> str:
    """Replace stretches that sound (zh) or are spelt (other) like a favoured phrase by the phrase, each
    phrase in turn, strongest first, in the text as the phrases before it left it."""
    start = 0
    while (change := _first_change(text, bias, start)) is not None:
        start, text = change
    return text


def corrections(text: str, bias: BiasPlan) -> Iterator[str]:
    """``text`` with one favoured phrase corrected in (as ``correct`` would replace its stretch), for each
    phrase whose correction changes it, in the plan's order (strongest first)."""
    start = 0
    while (change := _first_change(text, bias, start)) is not None:
        start, changed = change
        yield changed


def _first_change(text: str, bias: BiasPlan, start: int) -> tuple[int, str] | None:
    """The first favoured phrase from place ``start`` on whose correction changes ``text``: (the place
    after it, the text it leaves), or None."""
    if len(bias.favoured) >= _INDEXED_FROM:
        return bias.sound_index.first_change(text, start)
    for position in range(start, len(bias.favoured)):
        changed = _correct_one(text, bias.favoured[position])
        if changed != text:
            return position + 1, changed
    return None


def _correct_one(text: str, word: Phrase) -> str:
    return _correct_zh(text, word) if has_cjk(word.text) else _correct_spelling(text, word)


# Comparing each phrase with each stretch in Python costs about 0.3 ms a phrase on a sentence: 3 s a
# sentence with a 10,000-phrase Baidu vocabulary. From this many phrases on, the Chinese ones are compared
# all at once (``_SoundIndex``); fewer are not worth building an index for (``holds`` asks about a few
# phrases at a time, each set once).
_INDEXED_FROM = 32


class _PhrasesOfLength(NamedTuple):
    """The Chinese phrases of one length in a ``_SoundIndex``, as arrays (one row a phrase)."""

    positions: np.ndarray  # (k,) their places in the plan's favoured tuple, ascending
    syllables: np.ndarray  # (k, n) ids into the index's syllable inventory
    chars: np.ndarray  # (k, n) code points
    thresholds: np.ndarray  # (k,) ``threshold(weight)``
    mixed: np.ndarray  # rows of phrases not all Chinese characters (三星Pay), ascending


class _SoundIndex:
    """A plan's favoured phrases, laid out so that one pass over a text finds the first phrase (in the
    plan's order, from a given place) whose correction changes it, with exactly the arithmetic of
    ``_correct_zh``: each phrase of n Chinese characters against every n-character stretch of the text's
    Chinese runs, syllable likenesses summed and averaged in the same order, the shared-character bonus
    added, the first best stretch taken where it reaches the phrase's threshold and the phrase is not
    already there. Phrases this cannot lay out (spelling, a phrase not read one syllable a character) are
    corrected one by one (``_correct_one``), in their places in the order."""

    def __init__(self, favoured: tuple[Phrase, ...]) -> None:
        self._favoured = favoured
        inventory: dict[str, int] = {}
        rows: dict[int, list[tuple[int, list[int], list[int], float]]] = {}
        one_by_one = []
        for position, word in enumerate(favoured):
            if not has_cjk(word.text):
                one_by_one.append(position)
                continue
            if len(word.text) < 2:
                continue  # never corrected (``_correct_zh``)
            syllables = _read_syllables(word.text)  # not cached: each phrase is read once
            if len(syllables) != len(word.text):
                one_by_one.append(position)
                continue
            ids = [inventory.setdefault(syllable, len(inventory)) for syllable in syllables]
            rows.setdefault(len(word.text), []).append(
                (position, ids, [ord(c) for c in word.text], threshold(word.weight))
            )
        self._inventory = tuple(inventory)
        self._by_length = {
            size: _PhrasesOfLength(
                np.array([row[0] for row in group], dtype=np.int64),
                np.array([row[1] for row in group], dtype=np.int64),
                np.array([row[2] for row in group], dtype=np.int64),
                np.array([row[3] for row in group], dtype=np.float64),
                np.array(
                    [k for k, row in enumerate(group) if not _CJK_RUN.fullmatch(favoured[row[0]].text)],
                    dtype=np.int64,
                ),
            )
            for size, group in rows.items()
        }
        self._one_by_one = one_by_one
        # A syllable of a text against each syllable of the inventory; shared by the threads of a request
        # (a race writes the same row twice).
        self._likeness: dict[str, np.ndarray] = {}

    def first_change(self, text: str, start: int) -> tuple[int, str] | None:
        """The first phrase from place ``start`` on whose correction changes ``text``: (the place after it,
        the text it leaves), or None."""
        found = self._first_chinese_change(text, start)
        end = found[0] if found is not None else len(self._favoured)
        for position in self._one_by_one[bisect.bisect_left(self._one_by_one, start) :]:
            if position >= end:
                break
            changed = _correct_one(text, self._favoured[position])
            if changed != text:
                return position + 1, changed
        return (found[0] + 1, found[1]) if found is not None else None

    def _first_chinese_change(self, text: str, start: int) -> tuple[int, str] | None:
        runs = [(m.start(), m.end()) for m in _CJK_RUN.finditer(text)]
        best: tuple[int, str] | None = None
        for size, phrases in self._by_length.items():
            first = int(np.searchsorted(phrases.positions, start))
            # Only a phrase placed before the one found so far can come first.
            last = len(phrases.positions)
            if best is not None:
                last = int(np.searchsorted(phrases.positions, best[0]))
            starts = [s for a, b in runs for s in range(a, b - size + 1)]
            if first >= last or not starts:
                continue
            scores, shared = self._scores(text, starts, size, phrases, first, last)
            places = scores.argmax(axis=0)  # the first best stretch, as ``_closest_zh`` takes it
            columns = np.arange(last - first)
            # A phrase of Chinese characters is in the text where a stretch shares all of them; one that
            # holds other characters (Latin letters, spaces) is looked for.
            already_there = (shared == size).any(axis=0)
            for k in phrases.mixed[(phrases.mixed >= first) & (phrases.mixed < last)]:
                already_there[k - first] = self._favoured[int(phrases.positions[k])].text in text
            changes = np.flatnonzero(
                (scores[places, columns] >= phrases.thresholds[first:last]) & ~already_there
            )
            if changes.size:
                k = int(changes[0])
                at = starts[int(places[k])]
                position = int(phrases.positions[first + k])
                best = (position, text[:at] + self._favoured[position].text + text[at + size :])
        return best

    def _scores(
        self, text: str, starts: list[int], size: int, phrases: _PhrasesOfLength, first: int, last: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each stretch's likeness to each phrase (stretches × phrases) and the characters they share."""
        stretches = [_syllables(text[s : s + size]) for s in starts]
        aligned = np.array([len(syllables) == size for syllables in stretches])
        total = np.zeros((len(starts), last - first))
        shared = np.zeros((len(starts), last - first), dtype=np.int64)
        for j in range(size):
            heard = [syllables[j] if len(syllables) == size else "" for syllables in stretches]
            rows = np.stack([self._row(syllable) for syllable in heard])
            total = total + rows[:, phrases.syllables[first:last, j]]
            codes = np.array([ord(text[s + j]) for s in starts], dtype=np.int64)
            shared += codes[:, None] == phrases.chars[first:last, j][None, :]
        # ``pinyin_similarity`` is 0 where a stretch is not read one syllable a character.
        scores = np.where(aligned[:, None], total / size, 0.0)
        return scores + 0.05 * shared / size, shared

    def _row(self, syllable: str) -> np.ndarray:
        row = self._likeness.get(syllable)
        if row is None:
            row = np.array([_syllable_similarity(syllable, other) for other in self._inventory])
            self._likeness[syllable] = row
        return row


STEER_ALIKES = 8  # sound-alike readings tried in place of each suppressed phrase (SecondPass.pool)


def weight_in(text: str, bias: BiasPlan) -> float:
    """The summed weight of the hot words ``text`` contains (Simplified, case and spaces ignored):
    positive for favoured phrases, negative for suppressed ones."""
    plain = _plain(text)
    # Only phrases starting with one of the text's characters can be in it: a Baidu vocabulary holds up to
    # 10,000 phrases, and the second pass asks this of every candidate.
    index = bias.plain_by_first_char
    found = sorted(hit for char in set(plain) for hit in index.get(char, ()) if hit[1] in plain)
    return sum(weight for _, _, weight in found)  # summed in the plan's order, as before


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
