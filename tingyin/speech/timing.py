"""Times of characters and words: from Whisper's cross-attention alignment, carried through text rewrites,
then clamped monotonic and inside the audio."""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from tingyin.speech import textnorm
from tingyin.speech.chunking import SAMPLE_RATE, Chunk, SpeechMap
from tingyin.speech.types import Utterance, Word
from tingyin.speech.whisper import ENCODER_FRAME_S

if TYPE_CHECKING:
    from faster_whisper.tokenizer import Tokenizer


class TimedChar(NamedTuple):
    char: str
    start: float  # seconds, absolute
    end: float
    probability: float = 1.0


def spoken(chars: Sequence[TimedChar]) -> list[TimedChar]:
    """The characters and words that were said: no spaces, no punctuation."""
    return [c for c in chars if not c.char.isspace() and not textnorm.is_punctuation(c.char)]


def timed_chars(tokenizer: Tokenizer, tokens: list[int], alignment: Any, chunk: Chunk) -> list[TimedChar]:
    """Spread each token's aligned time span over the characters it decodes to; a character's probability is
    that of its least probable token."""
    pairs = alignment.alignments
    if not pairs or not tokens:
        return []
    text_indices = np.array([p[0] for p in pairs])
    time_indices = np.array([p[1] for p in pairs])
    probabilities = list(getattr(alignment, "text_token_probs", []) or [])
    offset = chunk.start / SAMPLE_RATE
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] * ENCODER_FRAME_S  # token k spans jump_times[k] .. jump_times[k + 1]

    def token_time(k: int) -> float:
        return float(jump_times[min(k, len(jump_times) - 1)])

    # Multi-byte characters span several tokens: decode cumulatively and emit once the bytes complete.
    chars: list[TimedChar] = []
    emitted = ""
    pending = 0
    for k in range(len(tokens)):
        text = tokenizer.decode(tokens[: k + 1])
        if text.endswith("\ufffd") or not text.startswith(emitted):
            continue
        new = text[len(emitted) :]
        emitted = text
        if not new:
            continue
        start, end = token_time(pending), token_time(k + 1)
        end = max(end, start)
        probability = min(probabilities[pending : k + 1], default=1.0) if probabilities else 1.0
        pending = k + 1
        step = (end - start) / len(new)
        for n, ch in enumerate(new):
            chars.append(
                TimedChar(ch, offset + start + n * step, offset + start + (n + 1) * step, float(probability))
            )
    return chars


LONG_CHAR_S = 0.5  # an aligned character longer than this probably starts in the silence before it


def snap_to_speech(chars: list[TimedChar], speech: SpeechMap) -> list[TimedChar]:
    """Long characters start where the VAD hears their speech begin: the alignment's path begins at the
    chunk's first frame, so the first character of a chunk otherwise starts in the silence, and the first
    character after a short pause inside a chunk often starts at the end of the one before it (a character
    never holds a pause, so it starts after the last pause it spans)."""
    out = []
    for c in chars:
        if c.end - c.start > LONG_CHAR_S:
            onset = speech.last_onset(c.start, c.end)
            if onset is not None and onset > c.start:
                c = c._replace(start=min(onset, c.end))
        out.append(c)
    return out


def retime(chars: list[TimedChar], new_text: str) -> list[TimedChar]:
    """Times for ``new_text`` from the timed characters of the text it was rewritten from."""
    old_text = "".join(c.char for c in chars)
    if old_text == new_text:
        return chars
    if not chars:
        return []
    out: list[TimedChar] = []
    matcher = SequenceMatcher(None, old_text, new_text, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for k in range(i2 - i1):
                old = chars[i1 + k]
                out.append(old._replace(char=new_text[j1 + k]))
            continue
        if j2 == j1:
            continue
        if i2 > i1:
            start, end = chars[i1].start, chars[i2 - 1].end
            probability = min(c.probability for c in chars[i1:i2])
        else:
            anchor = chars[i1 - 1].end if i1 > 0 else chars[0].start
            start = end = anchor
            probability = 1.0
        step = (end - start) / (j2 - j1)
        for k in range(j2 - j1):
            out.append(TimedChar(new_text[j1 + k], start + k * step, start + (k + 1) * step, probability))
    return out


def spread(text: str, regions: Sequence[tuple[int, int]]) -> list[TimedChar]:
    """Times for ``text`` spread evenly over the speech regions, in proportion to their length."""
    seconds = [((end - start) / SAMPLE_RATE, start / SAMPLE_RATE) for start, end in regions]
    total = sum(length for length, _ in seconds) or 1.0
    step = total / max(1, len(text))
    chars = []
    for k, ch in enumerate(text):
        position = k * step  # seconds of speech before this character
        for length, offset in seconds:
            if position < length or (length, offset) == seconds[-1]:
                start = offset + min(position, length)
                chars.append(TimedChar(ch, start, min(start + step, offset + length)))
                break
            position -= length
    return chars


def words(chars: list[TimedChar], lo: float, hi: float) -> list[Word]:
    """Characters (CJK) or words (other scripts) with monotonic times inside [lo, hi] seconds."""
    found: list[Word] = []
    current: list[TimedChar] = []

    def word_of(group: list[TimedChar]) -> Word:
        text = "".join(c.char for c in group)
        probability = min(c.probability for c in group)
        return Word(text, round(group[0].start * 1000), round(group[-1].end * 1000), probability)

    def flush() -> None:
        if current:
            found.append(word_of(current))
            current.clear()

    for tc in chars:
        if textnorm.has_cjk(tc.char):
            flush()
            found.append(word_of([tc]))
        elif tc.char.isspace() or (textnorm.is_punctuation(tc.char) and tc.char not in "'’.-%"):
            flush()
        elif textnorm.is_punctuation(tc.char) and not current:
            continue
        else:
            current.append(tc)
    flush()
    # Trailing '.'/'-' picked up inside a word at a sentence end is punctuation, not part of the word.
    found = [w._replace(text=w.text.rstrip(".-")) for w in found if w.text.rstrip(".-")]
    clamped: list[Word] = []
    floor = round(lo * 1000)
    ceiling = round(hi * 1000)
    for w in found:
        start = min(max(w.start_ms, floor), ceiling)
        end = min(max(w.end_ms, start), ceiling)
        clamped.append(w._replace(start_ms=start, end_ms=end))
        floor = start
    return clamped


def monotonic(utterances: list[Utterance], previous_end: int) -> list[Utterance]:
    """Utterances in time order, none starting before the previous one ended, words inside their utterance.
    One left without duration (its words all fall inside the time of the one before, e.g. text a rewrite
    inserted at an instant) joins its neighbour instead, so an utterance always spans time; a lone one (all
    its chunk's text inside the previous chunk's time) keeps a nominal millisecond."""
    fixed: list[Utterance] = []
    held: list[Utterance] = []  # instants before the first utterance with a duration
    for index, u in enumerate(utterances):
        start = max(u.start_ms, previous_end)
        end = max(u.end_ms, start)
        if end <= start and (fixed or index < len(utterances) - 1):
            if fixed:
                fixed[-1] = _joined(fixed[-1], u, fixed[-1].start_ms, fixed[-1].end_ms)
            else:
                held.append(u)
            continue
        if held:
            for early in reversed(held):
                u = _joined(early, u, min(early.start_ms, u.start_ms), u.end_ms)
            held = []
            start = max(u.start_ms, previous_end)
            end = max(u.end_ms, start)
        end = max(end, start + 1)
        fixed.append(u._replace(start_ms=start, end_ms=end, words=_inside(u.words, start, end)))
        previous_end = end
    return fixed


def _joined(first: Utterance, second: Utterance, start: int, end: int) -> Utterance:
    """``second`` appended to ``first`` over ``start``-``end``: one text, the words of both inside."""
    text = textnorm.join_tokens([t for t in (first.text, second.text) if t])
    return first._replace(
        text=text, start_ms=start, end_ms=end, words=_inside([*first.words, *second.words], start, end)
    )


def _inside(words: list[Word], start: int, end: int) -> list[Word]:
    """``words`` with their times clamped into ``start``-``end`` (ms)."""
    return [
        w._replace(start_ms=min(max(w.start_ms, start), end), end_ms=min(max(w.end_ms, start), end))
        for w in words
    ]


__all__ = ["TimedChar", "monotonic", "retime", "snap_to_speech", "spread", "timed_chars", "words"]
