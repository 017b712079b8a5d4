"""Typed results of the speech core: the contract every API adapter codes against."""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import Field

from tingyin.speech.options import LANGUAGES, DecodeOptions, HotWord
from tingyin.validation import FrozenModel


class Word(NamedTuple):
    """A word (English) or character (Chinese) with its time span in milliseconds and the decoder's
    probability of its tokens (the least probable token's, so a doubtful word stands out)."""

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
    role: str | None = None  # "S" (agent) or "C" (customer) when roles were asked for


class Transcript(NamedTuple):
    """What the recognizer heard in one mono signal, and the options it used."""

    text: str
    utterances: list[Utterance]
    language: str
    duration_ms: int
    options: DecodeOptions | None = None


class WordRecord(FrozenModel):
    """A word (or Chinese character) in API and stored results: times in milliseconds."""

    text: str
    start_ms: int
    end_ms: int
    probability: float = 1.0


class UtteranceRecord(FrozenModel):
    """An utterance in API and stored results."""

    text: str
    start_ms: int
    end_ms: int
    language: str
    speaker: int | None = None
    channel: int = 0
    role: str | None = None
    words: list[WordRecord] = Field(default_factory=list)

    @classmethod
    def of(cls, u: Utterance) -> UtteranceRecord:
        return cls.model_validate(utterance_to_dict(u))

    def utterance(self) -> Utterance:
        return utterance_from_dict(self.model_dump())


def word_to_dict(w: Word) -> dict[str, Any]:
    return {
        "text": w.text,
        "start_ms": w.start_ms,
        "end_ms": w.end_ms,
        "probability": round(w.probability, 4),
    }


def utterance_to_dict(u: Utterance) -> dict[str, Any]:
    """JSON form of an utterance (the native API's and the job store's shape)."""
    return {
        "text": u.text,
        "start_ms": u.start_ms,
        "end_ms": u.end_ms,
        "language": u.language,
        "speaker": u.speaker,
        "channel": u.channel,
        "role": u.role,
        "words": [word_to_dict(w) for w in u.words],
    }


def utterance_from_dict(raw: dict[str, Any]) -> Utterance:
    words = [
        Word(str(w["text"]), int(w["start_ms"]), int(w["end_ms"]), float(w.get("probability", 1.0)))
        for w in raw.get("words", [])
    ]
    speaker = raw.get("speaker")
    return Utterance(
        str(raw["text"]),
        int(raw["start_ms"]),
        int(raw["end_ms"]),
        words,
        str(raw.get("language", "")),
        None if speaker is None else int(speaker),
        int(raw.get("channel", 0)),
        raw.get("role"),
    )


def transcript_to_dict(transcript: Transcript) -> dict[str, object]:
    """JSON form of a transcript (the native API's shape)."""
    return {
        "text": transcript.text,
        "language": transcript.language,
        "duration_ms": transcript.duration_ms,
        "utterances": [utterance_to_dict(u) for u in transcript.utterances],
        "options": transcript.options.model_dump(mode="json") if transcript.options else None,
    }


__all__ = [
    "LANGUAGES",
    "HotWord",
    "Transcript",
    "Utterance",
    "UtteranceRecord",
    "Word",
    "WordRecord",
    "transcript_to_dict",
    "utterance_from_dict",
    "utterance_to_dict",
]
