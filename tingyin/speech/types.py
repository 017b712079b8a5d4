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


class DecodingStats(NamedTuple):
    """Whisper's figures of the decode an utterance's text came from (shared by the utterances of one
    decoded chunk, as by the segments of one window in Whisper): where the chunk starts in mel frames (100
    a second), the sampling temperature (0: beam search), the average log-probability per token, the
    text's gzip compression ratio (high: repetitive) and the model's probability that it is no speech."""

    seek: int
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


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
    decoding: DecodingStats | None = None


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


class DecodingRecord(FrozenModel):
    """``DecodingStats`` in API and stored results."""

    seek: int = Field(description="start of the decoded chunk in mel frames (100 per second)")
    temperature: float = Field(description="0: beam search; otherwise the sampling temperature")
    avg_logprob: float = Field(description="average log-probability per token of the chunk's decode")
    compression_ratio: float = Field(description="gzip compression ratio of the chunk's text")
    no_speech_prob: float = Field(description="the model's probability that the chunk holds no speech")


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
    decoding: DecodingRecord | None = None

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
        "decoding": decoding_to_dict(u.decoding) if u.decoding else None,
    }


def decoding_to_dict(stats: DecodingStats) -> dict[str, Any]:
    return {
        "seek": stats.seek,
        "temperature": stats.temperature,
        "avg_logprob": round(stats.avg_logprob, 4),
        "compression_ratio": round(stats.compression_ratio, 4),
        "no_speech_prob": round(stats.no_speech_prob, 4),
    }


def utterance_from_dict(raw: dict[str, Any]) -> Utterance:
    words = [
        Word(str(w["text"]), int(w["start_ms"]), int(w["end_ms"]), float(w.get("probability", 1.0)))
        for w in raw.get("words", [])
    ]
    speaker = raw.get("speaker")
    stats = raw.get("decoding")
    return Utterance(
        str(raw["text"]),
        int(raw["start_ms"]),
        int(raw["end_ms"]),
        words,
        str(raw.get("language", "")),
        None if speaker is None else int(speaker),
        int(raw.get("channel", 0)),
        raw.get("role"),
        DecodingStats(
            int(stats["seek"]),
            float(stats["temperature"]),
            float(stats["avg_logprob"]),
            float(stats["compression_ratio"]),
            float(stats["no_speech_prob"]),
        )
        if stats
        else None,
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
    "DecodingRecord",
    "DecodingStats",
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
