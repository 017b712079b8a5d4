"""Typed results and options of the speech engine: the contract every API adapter codes against."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

LANGUAGES = ("auto", "zh", "en", "yue", "zh-en")


class Word(NamedTuple):
    """A word (English) or character (Chinese) with its time span in milliseconds."""

    text: str
    start_ms: int
    end_ms: int
    probability: float = 1.0


class Utterance(NamedTuple):
    """A sentence-like stretch of speech by one speaker on one channel."""

    text: str
    start_ms: int
    end_ms: int
    words: list[Word]
    language: str
    speaker: int | None = None
    channel: int = 0


class Transcript(NamedTuple):
    text: str
    utterances: list[Utterance]
    language: str
    duration_ms: int


class HotWord(NamedTuple):
    """A phrase to favour (weight > 0) or suppress (weight < 0); weights run from -10 to 10 (Qiniu)."""

    text: str
    weight: float = 5.0


@dataclass(frozen=True)
class TranscribeOptions:
    """What the caller wants. ``language`` is one of LANGUAGES; ``vocabulary`` lists phrases that must come
    out exactly when spoken (Baidu custom vocabulary); ``model`` defaults to the configured ASR model."""

    language: str = "auto"
    itn: bool = True
    punctuation: bool = True
    hot_words: tuple[HotWord, ...] = ()
    vocabulary: tuple[str, ...] = ()
    word_timestamps: bool = True
    model: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
