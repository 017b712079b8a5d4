"""Checks on what the decoder wrote: loops, early stops, subtitle hallucinations, speech left without text.

None of these throws speech away on its own. A chunk that fails a check is decoded again (full window, other
settings); only text that is provably not speech (a known subtitle credit on its own) is dropped.
"""

from __future__ import annotations

import re
import zlib

from tingyin.speech import textnorm
from tingyin.speech.chunking import Chunk

COMPRESSION_RATIO_LIMIT = 2.4
MIN_UNITS_PER_S = {"zh": 1.5, "yue": 1.5}  # less text than this for a chunk's speech: Whisper stopped early
MIN_WORDS_PER_S = 0.8
MIN_JUDGED_SPEECH_S = 3.0
# Whisper's well-known hallucinations on non-speech (subtitle credits learned from its training data).
HALLUCINATIONS = (
    "字幕由amara.org社区提供",
    "请不吝点赞订阅转发打赏支持明镜与点点栏目",
    "优优独播剧场",
    "thank you for watching",
    "thanks for watching",
    "subtitles by the amara.org community",
    "字幕志愿者",
    "中文字幕",
    "本字幕由",
)

_REPEAT_CJK = re.compile(r"([\u3400-\u9fff]{4,}?)\1")
# A digit string read twice (34994323 34994323 for 三四九九四三二三): Whisper's way of looping on phone
# numbers, too short for the other patterns. A string of one digit (88888888) is not a repeat.
_REPEAT_DIGITS = re.compile(r"(\d{4,}?)\1")
_REPEAT_OTHER = re.compile(r"(\S.{11,}?)\1")


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def is_loop(text: str) -> bool:
    """Text that repeats itself so much it compresses too well, or ends in a run of one short unit
    (``４４４４４４…``): the decoder is looping."""
    if len(text) > 20 and compression_ratio(text) > COMPRESSION_RATIO_LIMIT:
        return True
    return cut_repetitions(text) != text


def repeats_itself(text: str) -> bool:
    """A phrase said twice in a row: with a short encoder window this is nearly always Whisper re-reading
    the audio, so the chunk is decoded again with the full window."""
    flat = textnorm.strip_punctuation(text)
    dense = flat.replace(" ", "")
    if any(len(set(hit.group(1))) > 1 for hit in _REPEAT_DIGITS.finditer(dense)):
        return True
    return bool(_REPEAT_CJK.search(dense) or _REPEAT_OTHER.search(flat + " "))


def cut_repetitions(text: str, max_repeats: int = 2) -> str:
    """Cut a stretch repeated more than ``max_repeats`` times in a row (a decoding loop) to one copy."""
    for size in range(1, min(30, len(text) // 3) + 1):
        i = 0
        while i + size * (max_repeats + 1) <= len(text):
            unit = text[i : i + size]
            j = i + size
            while text[j : j + size] == unit:
                j += size
            # Short units repeat in real speech (谢谢谢谢, 哈哈哈): they need more copies to count as a loop.
            if (j - i) // size > max(max_repeats, 8 // size) and unit.strip():
                text = text[: i + size] + text[j:]
            i += 1
    return text


def stopped_early(text: str, chunk: Chunk, language: str) -> bool:
    """Much less text than the chunk's speech holds: with a short window Whisper sometimes ends after the
    first sentence. Judged only on chunks with a few seconds of speech."""
    speech_s = chunk.speech_seconds
    flat = textnorm.strip_punctuation(text)
    if speech_s < MIN_JUDGED_SPEECH_S:
        return False
    if not flat:
        return True
    if textnorm.has_cjk(flat):
        units = len(flat.replace(" ", ""))
        return units / speech_s < MIN_UNITS_PER_S.get(language, MIN_UNITS_PER_S["zh"])
    # Every digit is at least one spoken syllable: a phone number written as 11 digits is 11 units of
    # speech, not one word.
    digits = sum(ch.isdigit() for ch in flat)
    words = sum(1 for word in flat.split() if not word.isdigit())
    return (words + digits) / speech_s < MIN_WORDS_PER_S


def _plain(text: str) -> str:
    return textnorm.strip_punctuation(textnorm.to_simplified(text)).replace(" ", "").lower()


def is_hallucination(text: str) -> bool:
    """A subtitle credit alone (short text holding one of Whisper's known credits)."""
    flat = _plain(text)
    return bool(flat) and len(flat) < 40 and any(_plain(phrase) in flat for phrase in HALLUCINATIONS)


# Characters in a row copied from the style prompt that count as echoing it: two, since Whisper also
# writes the prompt back mangled (a telephone-band "打开Let It Go" came out as 英文是中央 on one CPU's int8
# kernels and as 英文是中英文 on another's), and at least ECHO_MIN_COPIED of them, so that a short answer
# that is one word of the prompt (英文, 以下) still counts as speech.
ECHO_PIECE = 2
ECHO_MIN_COPIED = 4


def echoes_prompt(text: str, prompt: str) -> bool:
    """Whisper writing its Chinese style prompt back instead of what was said, as it does on speech it
    cannot make out (whisper-base on Cantonese: 以下係廣東話嘅句子 → "广东话嘅话嘅"): at least half of the
    text's characters, and at least ``ECHO_MIN_COPIED``, lie in runs of ``ECHO_PIECE`` or more characters
    that the prompt holds. Only Chinese prompts are judged (three English words in a row are common
    speech). On zh_dev neither a reference nor a transcript is judged an echo of the Mandarin prompt."""
    style = _plain(prompt)
    flat = _plain(text)
    if not flat or not textnorm.has_cjk(style):
        return False
    copied: set[int] = set()
    for start in range(len(flat) - ECHO_PIECE + 1):
        if flat[start : start + ECHO_PIECE] in style:
            copied.update(range(start, start + ECHO_PIECE))
    return len(copied) >= ECHO_MIN_COPIED and 2 * len(copied) >= len(flat)


def needs_redecode(text: str, chunk: Chunk, language: str) -> bool:
    """A first-pass result that a full-window decode is likely to improve."""
    return (
        repeats_itself(text)
        or is_loop(text)
        or stopped_early(text, chunk, language)
        or (not textnorm.strip_punctuation(text) and chunk.speech_seconds >= 0.5)
    )


__all__ = [
    "compression_ratio",
    "cut_repetitions",
    "echoes_prompt",
    "is_hallucination",
    "is_loop",
    "needs_redecode",
    "repeats_itself",
    "stopped_early",
]
