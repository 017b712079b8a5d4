"""Typed results and options of the speech engine: the contract every API adapter codes against."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

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


def utterance_to_dict(u: Utterance) -> dict[str, Any]:
    """JSON form of an utterance (the native API's and the job store's shape)."""
    return {
        "text": u.text,
        "start_ms": u.start_ms,
        "end_ms": u.end_ms,
        "language": u.language,
        "speaker": u.speaker,
        "channel": u.channel,
        "words": [{"text": w.text, "start_ms": w.start_ms, "end_ms": w.end_ms} for w in u.words],
    }


def transcript_to_dict(transcript: Transcript) -> dict[str, object]:
    """JSON form of a transcript (the native API's and the job store's shape)."""
    return {
        "text": transcript.text,
        "language": transcript.language,
        "duration_ms": transcript.duration_ms,
        "utterances": [utterance_to_dict(u) for u in transcript.utterances],
    }


def transcript_from_dict(data: dict[str, Any]) -> Transcript:
    utterances = []
    for raw in data.get("utterances", []):
        u = dict(raw)
        words = [Word(w["text"], int(w["start_ms"]), int(w["end_ms"])) for w in u.get("words", [])]
        utterances.append(
            Utterance(
                u["text"],
                int(u["start_ms"]),
                int(u["end_ms"]),
                words,
                u.get("language", ""),
                u.get("speaker"),
                int(u.get("channel", 0)),
            )
        )
    return Transcript(str(data["text"]), utterances, str(data.get("language", "")), int(data["duration_ms"]))
