"""Short-audio recognition as every synchronous API needs it: decode, validate, recognise, on time.

The vendor adapters translate their wire format into ``ShortSpeech`` and the typed errors back into
their own codes; the rules themselves (limits, declared format checks, timeouts) live here.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tingyin import audio
from tingyin.errors import EngineError, ServiceUnavailable, TingyinError
from tingyin.speech.types import TranscribeOptions, Transcript

T = TypeVar("T")


class RecognitionTimeout(EngineError):
    """Recognition took longer than allowed."""

    code = "recognition_timeout"

    def __init__(self, message: str, *, stage: str) -> None:
        super().__init__(message)
        self.stage = stage  # "decode" or "recognize"


class NoSpeech(TingyinError):
    """Nothing was recognised in the audio."""

    code = "no_speech"
    http_status = 422


@dataclass(frozen=True)
class ShortSpeech:
    data: bytes
    format: str  # pcm, wav, amr, m4a, ... as declared by the caller
    rate: int = 16000
    channels: int = 1
    options: TranscribeOptions = field(default_factory=TranscribeOptions)
    max_seconds: float = 60.0
    min_seconds: float = 0.05
    required_rate: int | None = 16000
    decode_timeout_s: float = 30.0
    recognize_timeout_s: float = 60.0


# Recognition runs on this pool so a request can give up waiting (timeouts) without a stuck thread
# holding the request. Two workers keep both cores busy; more would only slow each one down.
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="recognize")
# How long a request may wait for a free worker before the server counts as busy.
QUEUE_TIMEOUT_S = 300.0


def _run_timed(function: Callable[[], T], timeout_s: float, stage: str) -> T:
    """Run on the pool; the timeout counts from when the work starts, not from when it was queued,
    so a burst of requests is served in turn instead of timing out while waiting."""
    started = threading.Event()

    def job() -> T:
        started.set()
        return function()

    future = _pool.submit(job)
    if not started.wait(QUEUE_TIMEOUT_S):
        future.cancel()
        raise ServiceUnavailable("the recognition workers are all busy; try again later")
    try:
        return future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        what = "decoding the audio" if stage == "decode" else "recognition"
        raise RecognitionTimeout(f"{what} timed out after {timeout_s:g} s", stage=stage) from None


def _decode(request: ShortSpeech) -> audio.DecodedAudio:
    if request.format != "pcm":
        info = audio.probe(request.data)
        audio.check_declared_format(info, request.format)
    return audio.decode(
        request.data,
        format="pcm" if request.format == "pcm" else None,
        pcm_rate=request.rate,
        pcm_channels=request.channels,
        max_seconds=request.max_seconds,
        min_seconds=request.min_seconds,
        required_rate=request.required_rate,
    )


def recognize_short(request: ShortSpeech) -> Transcript:
    """Decode and transcribe; raises the audio module's typed errors, ``RecognitionTimeout``,
    ``NoSpeech`` for silence, and ``EngineError`` when the engine fails."""
    from tingyin.speech import transcribe

    decoded = _run_timed(lambda: _decode(request), request.decode_timeout_s, "decode")
    try:
        transcript = _run_timed(
            lambda: transcribe(decoded.mono(), request.options), request.recognize_timeout_s, "recognize"
        )
    except TingyinError:
        raise
    except Exception as exc:
        raise EngineError(f"recognition engine failed: {type(exc).__name__}: {exc}") from exc
    if not transcript.text.strip():
        raise NoSpeech("no speech was recognised in the audio")
    return transcript
