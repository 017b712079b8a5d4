"""Short-audio recognition as every synchronous API needs it: decode, validate, recognise, on time.

The vendor adapters translate their wire format into ``ShortSpeech`` and the typed errors back into their own
codes; the rules themselves (limits, declared format checks, timeouts) live here. Callers run
``recognize_short`` on the server's ``InferenceExecutor``; the time limits stop the work itself (decoding is
checked when it returns, recognition between batches), not only the caller's wait.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tingyin import audio
from tingyin.errors import EngineError, TingyinError
from tingyin.speech.errors import NoSpeech, RecognitionTimeout
from tingyin.speech.models import speech_models
from tingyin.speech.options import DecodeOptions
from tingyin.speech.pipeline import RecordingOptions, RecordingResult, transcribe_recording


@dataclass(frozen=True)
class ShortSpeech:
    """A short recording to recognise at once. ``format`` is the one the caller declared (pcm: headerless
    samples at ``rate``, ``channels``, ``bits``; a container is checked against its declared name), None
    to find it from the data. ``required_rate``: the audio's own sample rate must be this (it is resampled
    to the model's rate either way); ``required_channels``: a container's channel count must be this (a
    vendor that takes mono only), else any is mixed down or split as ``recording`` says."""

    data: bytes | Path
    format: str | None
    rate: int = 16000
    channels: int = 1
    bits: int = 16
    recording: RecordingOptions = field(default_factory=lambda: RecordingOptions())
    max_seconds: float = 60.0
    min_seconds: float = 0.05
    required_rate: int | None = 16000
    required_channels: int | None = None
    decode_timeout_s: float = 30.0
    recognize_timeout_s: float = 60.0

    @property
    def options(self) -> DecodeOptions:
        return self.recording.decode


def _decode(request: ShortSpeech) -> audio.DecodedAudio:
    if request.format not in (None, "pcm"):
        info = audio.probe(request.data)
        audio.check_declared_format(info, request.format)
        if request.required_channels is not None and info.channels != request.required_channels:
            raise audio.WrongEncoding(
                f"the audio has {info.channels} channels, only {request.required_channels} is accepted"
            )
    return audio.decode(
        request.data,
        format="pcm" if request.format == "pcm" else None,
        pcm_rate=request.rate,
        pcm_channels=request.channels,
        pcm_bits=request.bits,
        mono=not request.recording.split_channels,
        max_seconds=request.max_seconds,
        min_seconds=request.min_seconds,
        required_rate=request.required_rate,
    )


def recognize_short(request: ShortSpeech) -> RecordingResult:
    """Decode and transcribe; raises the audio module's typed errors, ``RecognitionTimeout``, ``NoSpeech``
    for silence, and ``EngineError`` when the engine fails."""
    started = time.monotonic()
    decoded = _decode(request)
    if time.monotonic() - started > request.decode_timeout_s:
        raise RecognitionTimeout(
            f"decoding the audio took more than {request.decode_timeout_s:g} s", stage="decode"
        )
    try:
        with speech_models().use(request.options.model) as recognizer:
            return transcribe_recording(
                decoded,
                request.recording,
                recognizer,
                deadline=time.monotonic() + request.recognize_timeout_s,
            )
    except RecognitionTimeout as exc:
        raise RecognitionTimeout(
            f"recognition timed out after {request.recognize_timeout_s:g} s", stage=exc.stage
        ) from None
    except TingyinError:
        raise
    except Exception as exc:
        raise EngineError(f"recognition engine failed: {type(exc).__name__}") from exc


__all__ = ["NoSpeech", "RecognitionTimeout", "ShortSpeech", "recognize_short"]
