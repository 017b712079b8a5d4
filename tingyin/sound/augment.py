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


# The spectral envelope ``keep_envelope`` restores: the log power spectrum of 1024-sample frames (64 ms),
# averaged over the clip and smoothed by keeping its first ENVELOPE_QUEFRENCIES cepstral coefficients (a
# shape about 1.3 kHz coarse: a body's or a vocal tract's resonances, not the harmonics of a note). On the
# instruments dev task (four generated tasks, 20 clips per class, Whisper layers 1-3) speed variants with
# the envelope kept (changes up to 7 semitones) scored 90.0 % against 86.4 % without; 6 coefficients
# 88.1 %, 10 90.1 %, 14 89.6 %, 20 87.9 % (docs/sound.md).
ENVELOPE_FRAME = 1024
ENVELOPE_QUEFRENCIES = 12
MAX_ENVELOPE_GAIN_DB = 20.0


def log_envelope(audio: np.ndarray) -> np.ndarray:
    """The clip's smoothed log power spectrum (ENVELOPE_FRAME // 2 + 1 bins); needs ENVELOPE_FRAME samples."""
    hop = ENVELOPE_FRAME // 2
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(audio, dtype=np.float64), ENVELOPE_FRAME)
    power = np.mean(np.abs(np.fft.rfft(frames[::hop] * np.hanning(ENVELOPE_FRAME), axis=1)) ** 2, axis=0)
    cepstrum = np.fft.irfft(np.log(power + 1e-10))
    cepstrum[ENVELOPE_QUEFRENCIES:-ENVELOPE_QUEFRENCIES] = 0.0
    return np.asarray(np.fft.rfft(cepstrum).real)


def keep_envelope(changed: np.ndarray, original: np.ndarray) -> np.ndarray:
    """``changed`` (``original`` played at another speed) filtered back to ``original``'s spectral envelope:
    the notes keep their new pitch, the resonances that tell a cello from a violin return to where they
    were (a speed change moves them with the pitch: a faster cello sounds like a smaller instrument). At
    most MAX_ENVELOPE_GAIN_DB either way; clips shorter than one frame come back unchanged."""
    if min(changed.shape[-1], original.shape[-1]) < ENVELOPE_FRAME:
        return changed
    limit = MAX_ENVELOPE_GAIN_DB / 20.0 * np.log(10.0)  # in natural log of amplitude
    gain = np.clip((log_envelope(original) - log_envelope(changed)) / 2.0, -limit, limit)
    spectrum = np.fft.rfft(changed)
    bins = np.interp(np.linspace(0.0, 1.0, spectrum.shape[-1]), np.linspace(0.0, 1.0, gain.shape[-1]), gain)
    filtered = np.fft.irfft(spectrum * np.exp(bins), n=changed.shape[-1])
    return np.clip(filtered, -1.0, 1.0).astype(np.float32)


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
