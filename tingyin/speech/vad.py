"""Voice activity detection with Silero VAD (ONNX), shared by diarization and the speech core.

``speech_regions`` returns ``(start, end)`` pairs in **sample indices** of the input (end exclusive).
The model is loaded once through the model manager (``silero-vad``) and runs on one thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from tingyin.errors import InvalidRequest

VAD_SAMPLE_RATE = 16000
FRAME_SAMPLES = 512  # Silero v5/v6 at 16 kHz scores 32 ms frames
_CONTEXT_SAMPLES = 64
_BATCH_FRAMES = 2000  # 64 s of audio per call; the LSTM state carries over


class SileroVad:
    """The Silero VAD ONNX session; ``probabilities`` scores every 32 ms frame of 16 kHz audio."""

    def __init__(self, model_file: str) -> None:
        from tingyin.models.onnx import cpu_session

        # One thread: Silero's small convolutions and LSTM gain nothing from a second one, which only adds
        # hand-offs (a 601 s recording: 0.80 s on one thread, 0.93 s on two, 2-core machine).
        self.session = cpu_session(model_file, 1)

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Speech probability of each ``FRAME_SAMPLES`` frame (the last frame zero-padded)."""
        if audio.size == 0:
            return np.zeros(0, dtype=np.float32)
        audio = audio.astype(np.float32, copy=False)
        state_h = np.zeros((1, 1, 128), dtype=np.float32)
        state_c = np.zeros((1, 1, 128), dtype=np.float32)
        outputs = []
        # Each call's frames are cut from the audio as it comes (a padded copy of the whole recording and
        # its framed copy with context were 2 × 230 MB for an hour).
        step = _BATCH_FRAMES * FRAME_SAMPLES
        for begin in range(0, audio.shape[0], step):
            output, state_h, state_c = self.session.run(
                None, {"input": _framed(audio, begin, begin + step), "h": state_h, "c": state_c}
            )
            outputs.append(np.asarray(output).reshape(-1))
        return np.concatenate(outputs).astype(np.float32)


def _framed(audio: np.ndarray, begin: int, end: int) -> np.ndarray:
    """``audio[begin:end]`` as rows of ``FRAME_SAMPLES`` (the last zero-padded), each led by the last
    ``_CONTEXT_SAMPLES`` of the frame before it (zeros before the first frame), as Silero expects."""
    piece = audio[begin:end]
    frames = np.pad(piece, (0, (-piece.shape[0]) % FRAME_SAMPLES)).reshape(-1, FRAME_SAMPLES)
    context = np.empty((frames.shape[0], _CONTEXT_SAMPLES), dtype=np.float32)
    context[1:] = frames[:-1, -_CONTEXT_SAMPLES:]
    context[0] = audio[begin - _CONTEXT_SAMPLES : begin] if begin else 0.0
    return np.concatenate([context, frames], axis=1)


def _load_vad() -> SileroVad:
    from tingyin.models import model_path

    return SileroVad(str(model_path("silero-vad") / "model.onnx"))


@contextmanager
def shared_vad() -> Iterator[SileroVad]:
    """The shared VAD session (loaded on first use), counted in use for the ``with`` block: unloaded only
    when idle, never under a long recording's scoring."""
    from tingyin.models import get_manager

    with get_manager().use("vad:silero", _load_vad) as vad:
        yield vad


def _to_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    if audio.ndim != 1:
        raise InvalidRequest("VAD expects mono audio (a 1-D array)")
    if sample_rate == VAD_SAMPLE_RATE:
        return audio.astype(np.float32, copy=False)
    if sample_rate <= 0:
        raise InvalidRequest(f"invalid sample rate {sample_rate}")
    from tingyin.audio import resample

    resampled: Any = resample(audio.astype(np.float32, copy=False), sample_rate, VAD_SAMPLE_RATE)
    return np.asarray(resampled, dtype=np.float32)


def speech_probabilities(audio: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """Speech probability per 32 ms frame (512 samples at 16 kHz) of ``audio``."""
    with shared_vad() as vad:
        return vad.probabilities(_to_16k(audio, sample_rate))


def regions_from_probabilities(
    probabilities: np.ndarray,
    *,
    threshold: float = 0.5,
    min_silence_ms: int = 300,
    min_speech_ms: int = 100,
    pad_ms: int = 30,
    frame_ms: float = FRAME_SAMPLES * 1000 / VAD_SAMPLE_RATE,
) -> list[tuple[float, float]]:
    """Hysteresis segmentation of frame probabilities into ``(start_ms, end_ms)`` speech regions.

    Speech starts when a frame reaches ``threshold`` and ends after ``min_silence_ms`` of frames below
    ``threshold - 0.15`` (so brief dips inside a word do not cut it). Regions shorter than
    ``min_speech_ms`` are dropped; each is padded by ``pad_ms`` without overlapping its neighbours.
    """
    negative = max(threshold - 0.15, 0.01)
    regions: list[list[float]] = []
    start: int | None = None
    silence_from: int | None = None
    min_silence_frames = max(1, round(min_silence_ms / frame_ms))
    for index, probability in enumerate(probabilities):
        if start is None:
            if probability >= threshold:
                start, silence_from = index, None
            continue
        if probability >= threshold:
            silence_from = None
        elif probability < negative:
            if silence_from is None:
                silence_from = index
            if index - silence_from + 1 >= min_silence_frames:
                regions.append([start * frame_ms, silence_from * frame_ms])
                start, silence_from = None, None
    if start is not None:
        end = silence_from if silence_from is not None else len(probabilities)
        regions.append([start * frame_ms, end * frame_ms])
    regions = [r for r in regions if r[1] - r[0] >= min_speech_ms]
    total_ms = len(probabilities) * frame_ms
    for index, region in enumerate(regions):
        previous_end = regions[index - 1][1] if index else 0.0
        next_start = regions[index + 1][0] if index + 1 < len(regions) else total_ms
        region[0] = max(previous_end, region[0] - pad_ms, 0.0)
        region[1] = min(next_start - pad_ms if index + 1 < len(regions) else total_ms, region[1] + pad_ms)
        region[1] = max(region[1], region[0])
    return [(r[0], r[1]) for r in regions]


def speech_regions(
    audio: np.ndarray,
    sample_rate: int = 16000,
    *,
    min_silence_ms: int = 300,
    threshold: float = 0.5,
    min_speech_ms: int = 100,
    pad_ms: int = 30,
) -> list[tuple[int, int]]:
    """Speech regions of mono ``audio`` as ``(start_sample, end_sample)`` in the input's sample rate.

    ``threshold`` is Silero's speech probability (0.5 suits most audio; lower finds quieter speech);
    pauses shorter than ``min_silence_ms`` stay inside a region.
    """
    if not 0.0 < threshold < 1.0:
        raise InvalidRequest("VAD threshold must lie between 0 and 1")
    probabilities = speech_probabilities(audio, sample_rate)
    regions_ms = regions_from_probabilities(
        probabilities,
        threshold=threshold,
        min_silence_ms=min_silence_ms,
        min_speech_ms=min_speech_ms,
        pad_ms=pad_ms,
    )
    length = audio.shape[0]
    result = []
    for start_ms, end_ms in regions_ms:
        start = min(length, round(start_ms * sample_rate / 1000))
        end = min(length, round(end_ms * sample_rate / 1000))
        if end > start:
            result.append((start, end))
    return result
