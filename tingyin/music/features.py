"""musicnn's front end in numpy: 16 kHz log-mel spectrogram cut into 3 s patches.

musicnn (``extractor.batch_data`` and ``configuration.py``) computes
``librosa.feature.melspectrogram(y, sr=16000, hop_length=256, n_fft=512, n_mels=96)`` (power 2,
centred frames, periodic Hann window, Slaney mel scale and area normalisation, 0-8 kHz), then
``log10(10000 * mel + 1)``, and feeds non-overlapping patches of 187 frames (3 s). This module reproduces
that without librosa, with two deliberate differences, both covered by the parity test:

- the log is taken in float32. musicnn casts the mel power to float16 first, where ``10000 * mel``
  overflows to infinity for loud tonal bins (mel power above 6.55); float32 gives the same values up to
  float16 rounding.
- frames are centred with zero padding, as librosa >= 0.10 does (musicnn's 2019 librosa padded by
  reflection); only the first and last frame differ.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
PATCH_SECONDS = PATCH_FRAMES * HOP / SAMPLE_RATE


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's auditory-toolbox mel scale (librosa's default, htk=False): linear below 1 kHz, log above."""
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mels = hz / f_sp
    above = hz >= min_log_hz
    mels = np.where(above, min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep, mels)
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    hz = f_sp * mels
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), hz)


@lru_cache(maxsize=1)
def mel_basis() -> np.ndarray:
    """The (96, 257) triangular filter bank librosa.filters.mel(sr=16000, n_fft=512, n_mels=96) returns."""
    fft_freqs = np.linspace(0.0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    mel_points = np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(SAMPLE_RATE / 2.0)), N_MELS + 2)
    mel_freqs = _mel_to_hz(mel_points)
    fdiff = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    # Slaney normalisation: each filter has unit area in Hz.
    weights *= (2.0 / (mel_freqs[2 : N_MELS + 2] - mel_freqs[:N_MELS]))[:, None]
    return weights.astype(np.float32)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)).astype(np.float32)  # periodic Hann


def _centred(audio: np.ndarray) -> np.ndarray:
    """``audio`` zero-padded by half a window on each side: frame ``f`` is ``[f * HOP, f * HOP + N_FFT)``."""
    samples = np.asarray(audio, dtype=np.float32).reshape(-1)
    padded = np.pad(samples, (N_FFT // 2, N_FFT // 2))
    if len(padded) < N_FFT:
        padded = np.pad(padded, (0, N_FFT - len(padded)))
    return padded


def _mel_of_frames(padded: np.ndarray) -> np.ndarray:
    """Mel power of every whole frame of already padded samples, shape (frames, 96)."""
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]
    spectrum = np.fft.rfft(frames * _window(), axis=1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    return power @ mel_basis().T


def mel_power(audio: np.ndarray) -> np.ndarray:
    """Mel power spectrogram, shape (frames, 96), frames = 1 + len(audio) // 256 (centred, zero-padded)."""
    return _mel_of_frames(_centred(audio))


def _compressed(mel: np.ndarray) -> np.ndarray:
    return np.log10(10000.0 * mel + 1.0).astype(np.float32)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """musicnn's input representation: ``log10(10000 * mel + 1)``, shape (frames, 96), float32."""
    return _compressed(mel_power(audio))


def patches(spectrogram: np.ndarray, hop_frames: int = PATCH_FRAMES) -> np.ndarray:
    """Cut (frames, 96) into (n, 187, 96) patches every ``hop_frames`` frames, like musicnn's ``batch_data``.

    musicnn drops a tail shorter than a patch; a spectrogram shorter than one patch is zero-padded (the
    log-mel of silence) into a single patch instead of failing.
    """
    n_frames = spectrogram.shape[0]
    if n_frames < PATCH_FRAMES:
        padded = np.zeros((PATCH_FRAMES, N_MELS), dtype=np.float32)
        padded[:n_frames] = spectrogram
        return padded[None]
    starts = range(0, n_frames - PATCH_FRAMES + 1, hop_frames)
    return np.stack([spectrogram[s : s + PATCH_FRAMES] for s in starts]).astype(np.float32)


def patch_count(n_samples: int) -> int:
    """How many patches ``patches(log_mel(audio))`` cuts from ``n_samples`` samples (at least one)."""
    n_frames = 1 + n_samples // HOP
    return max(1, (n_frames - PATCH_FRAMES) // PATCH_FRAMES + 1) if n_frames >= PATCH_FRAMES else 1


def spread_patches(n_samples: int, max_patches: int) -> np.ndarray:
    """Indices of at most ``max_patches`` patches spread evenly over the track (all of them when it has no
    more), in time order: a long track is tagged from a sample of its patches, so the work and memory of one
    request are bounded whatever its length (musicnn averages over patches; an even spread keeps intro,
    middle and end in the average)."""
    if max_patches < 1:
        raise ValueError("max_patches must be at least 1")
    total = patch_count(n_samples)
    if total <= max_patches:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, max_patches).round().astype(int))


def log_mel_patches(audio: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``patches(log_mel(audio))[indices]``, computing the spectrogram of those patches only."""
    samples = np.asarray(audio, dtype=np.float32).reshape(-1)
    if 1 + len(samples) // HOP < PATCH_FRAMES:
        return patches(log_mel(samples))[indices]
    padded = _centred(samples)
    span = (PATCH_FRAMES - 1) * HOP + N_FFT  # the padded samples one patch's frames read
    out = np.empty((len(indices), PATCH_FRAMES, N_MELS), dtype=np.float32)
    for row, index in enumerate(indices):
        start = int(index) * PATCH_FRAMES * HOP
        out[row] = _compressed(_mel_of_frames(padded[start : start + span]))
    return out
