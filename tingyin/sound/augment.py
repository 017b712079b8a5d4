"""Data augmentation on the audio: noise, gain, time shift, mixing.

An audio-level variant must be embedded again (about as much as the clip itself), so training adds one
per clip only when its time budget allows (``training.py``).
"""

from __future__ import annotations

import numpy as np


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise at ``snr_db`` below the clip's RMS."""
    rms = float(np.sqrt(np.mean(np.square(audio), dtype=np.float64))) or 1e-4
    noise = np.asarray(rng.standard_normal(audio.shape[-1]), dtype=np.float32)
    return (audio + noise * (rms / (10.0 ** (snr_db / 20.0)))).astype(np.float32)


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    return np.clip(audio * np.float32(10.0 ** (gain_db / 20.0)), -1.0, 1.0).astype(np.float32)


def time_shift(audio: np.ndarray, shift_samples: int) -> np.ndarray:
    """Circular shift: the clip keeps its length and content."""
    return np.roll(audio, shift_samples).astype(np.float32, copy=False)


def change_speed(audio: np.ndarray, semitones: float) -> np.ndarray:
    """``audio`` played faster (``semitones`` > 0) or slower: pitch, formants and tempo move together, as
    with a tape or a resampler (not a phase vocoder: cheaper, and no phasing artefacts)."""
    from tingyin.audio import TARGET_RATE, resample

    target = max(1, round(TARGET_RATE / 2.0 ** (semitones / 12.0)))
    return resample(np.asarray(audio, dtype=np.float32), TARGET_RATE, target)


def mix(audio: np.ndarray, other: np.ndarray, other_weight: float) -> np.ndarray:
    """``audio`` with ``other`` (tiled or cut to the same length) mixed in at ``other_weight``."""
    if other.shape[-1] < audio.shape[-1]:
        other = np.resize(other, audio.shape[-1])
    return ((1.0 - other_weight) * audio + other_weight * other[: audio.shape[-1]]).astype(np.float32)


def random_audio_variant(audio: np.ndarray, rng: np.random.Generator, *, noise: bool = True) -> np.ndarray:
    """A random gain (±6 dB), time shift (up to half the clip) and, with ``noise``, white noise at
    10-30 dB SNR."""
    shifted = time_shift(audio, int(rng.integers(0, max(1, audio.shape[-1] // 2))))
    gained = apply_gain(shifted, float(rng.uniform(-6.0, 6.0)))
    return add_noise(gained, float(rng.uniform(10.0, 30.0)), rng) if noise else gained
