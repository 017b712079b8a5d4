"""From a decoded chunk to the utterances a caller sees: script, numbers, hot words, punctuation, splitting.

Text: Traditional → Simplified, loops cut, numbers as digits (ITN on) or words (ITN off), hot-word correction,
pause-based punctuation for Chinese (or none). Times are carried through every
rewrite (``timing.retime``) and utterances split at sentence ends and long pauses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from tingyin.speech import hotwords, textnorm
from tingyin.speech.chunking import SAMPLE_RATE, Chunk
from tingyin.speech.guards import cut_repetitions
from tingyin.speech.options import DecodeOptions
from tingyin.speech.timing import TimedChar, retime, spoken, spread, words
from tingyin.speech.types import DecodingStats, Utterance

PAUSE_COMMA_S = 0.35  # a pause this long inside a Chinese sentence without punctuation gets a comma
PAUSE_SPLIT_S = 0.8  # a pause this long ends an utterance


class DecodedChunk(NamedTuple):
    """What the decoder made of one chunk: raw text, its timed characters (empty without alignment), and
    whether the Mandarin second pass already chose the characters (then no unigram correction follows)."""

    chunk: Chunk
    language: str
    text: str
    chars: list[TimedChar]
    rescored: bool = False
    decoding: DecodingStats | None = None


HomophoneCorrector = Callable[[str, tuple[str, ...]], str]


def rewrite_text(
    item: DecodedChunk,
    options: DecodeOptions,
    bias: hotwords.BiasPlan,
    correct_homophones: HomophoneCorrector | None,
) -> str:
    """Script, numbers and hot words: the text the caller asked for (punctuation is handled later)."""
    text = textnorm.to_simplified(textnorm.clean(item.text)).strip()
    if not text:
        return ""
    text = cut_repetitions(text)
    chinese = not options.translating  # a translation is English, whatever language was spoken
    if chinese and (item.language in ("zh", "yue") or textnorm.has_cjk(text)):
        text = textnorm.to_chinese_punctuation(text)
    if (
        chinese
        and item.language == "zh"
        and textnorm.has_cjk(text)
        and not item.rescored
        and correct_homophones
    ):
        text = correct_homophones(text, tuple(w.text for w in bias.favoured))
    language = "en" if options.translating else item.language or options.language
    text = (
        textnorm.numbers_to_digits(text, language)
        if options.itn
        else textnorm.numbers_to_words(text, language)
    )
    # The second pass had each favoured phrase's correction among its candidates (``SecondPass.pool``) and
    # judged it by the audio; only its spelling is left to do.
    text = hotwords.respell(text, bias) if item.rescored else hotwords.correct(text, bias)
    return text.strip()


def punctuate_and_split(chars: list[TimedChar], zh_like: bool, punctuation: bool) -> list[list[TimedChar]]:
    """Insert pause-based punctuation (Chinese), then split into utterances at sentence ends and pauses."""
    if not chars:
        return []
    out: list[TimedChar] = []
    for k, tc in enumerate(chars):
        out.append(tc)
        nxt = chars[k + 1] if k + 1 < len(chars) else None
        if nxt is None or not zh_like or not punctuation:
            continue
        gap = nxt.start - tc.end
        if textnorm.is_punctuation(tc.char) or textnorm.is_punctuation(nxt.char) or tc.char == " ":
            continue
        if _inside_word(tc, nxt):
            continue
        if gap >= PAUSE_SPLIT_S:
            out.append(TimedChar("。", tc.end, tc.end))
        elif gap >= PAUSE_COMMA_S:
            out.append(TimedChar("，", tc.end, tc.end))
    pieces: list[list[TimedChar]] = [[]]
    for k, tc in enumerate(out):
        if tc.char == " " and not pieces[-1]:
            continue
        pieces[-1].append(tc)
        nxt = out[k + 1] if k + 1 < len(out) else None
        if nxt is None:
            break
        sentence_end = tc.char in textnorm.SENTENCE_END and not textnorm.is_punctuation(nxt.char)
        if (sentence_end and not (tc.char == "." and nxt.char.isdigit())) or (
            nxt.start - tc.end >= PAUSE_SPLIT_S and not _inside_word(tc, nxt)
        ):
            pieces.append([])
    return [p for p in pieces if "".join(c.char for c in p).strip()]


def _inside_word(char: TimedChar, following: TimedChar) -> bool:
    """Two letters or digits of one Latin word or number: a pause between them is the alignment's (it
    spreads a word over speech it did not place), never a place for a comma or a new utterance."""
    return all(c.char.isascii() and c.char.isalnum() for c in (char, following))


def utterances_of(
    item: DecodedChunk,
    options: DecodeOptions,
    bias: hotwords.BiasPlan,
    duration_s: float,
    correct_homophones: HomophoneCorrector | None,
) -> list[Utterance]:
    """The utterances of one decoded chunk, with times inside the chunk."""
    text = rewrite_text(item, options, bias, correct_homophones)
    if not text:
        return []
    chunk_lo, chunk_hi = item.chunk.start / SAMPLE_RATE, min(duration_s, item.chunk.end / SAMPLE_RATE)
    chars = retime(item.chars, text) if item.chars else []
    if not chars:  # no alignment: spread the text over the chunk's speech regions (pauses stay pauses)
        chars = spread(text, item.chunk.speech)
    zh_like = not options.translating and (item.language in ("zh", "yue") or textnorm.has_cjk(text))
    language = item.language or "zh"
    utterances: list[Utterance] = []
    for piece in punctuate_and_split(chars, zh_like, options.punctuation):
        utterance_text = "".join(c.char for c in piece).strip()
        if options.punctuation:
            if zh_like:
                # A Mandarin utterance ends with 。 also after a number or a Latin word (42589945。), as the
                # vendors' Mandarin models write it; a Chinese phrase in another language's turn too.
                chinese = item.language in ("zh", "yue") or textnorm.has_cjk(utterance_text[-1:])
                utterance_text = textnorm.end_with(utterance_text, "。" if chinese else ".")
        else:
            utterance_text = textnorm.strip_punctuation(utterance_text)
        if not utterance_text:
            continue
        found = words(piece, chunk_lo, chunk_hi) if options.word_timestamps else []
        timed = spoken(piece) or piece
        start = max(chunk_lo, timed[0].start)
        end = min(chunk_hi, max(timed[-1].end, start))
        if found:
            start, end = min(start, found[0].start_ms / 1000), max(end, found[-1].end_ms / 1000)
        utterances.append(
            Utterance(
                utterance_text,
                round(start * 1000),
                round(end * 1000),
                found,
                language,
                decoding=item.decoding,
            )
        )
    return utterances


def join_texts(texts: Sequence[str]) -> str:
    """Utterance texts as one text: no space between Chinese pieces, one between others."""
    return textnorm.join_tokens([t for t in texts if t])


__all__ = ["DecodedChunk", "join_texts", "punctuate_and_split", "rewrite_text", "utterances_of"]
