"""Music / non-music decision: the SAMI service refuses speech, noise and silence ("不支持非音乐类音频").

Two stages:

1. a level gate: audio whose RMS is below ``SILENCE_DBFS`` is silence, whatever the model says.
2. a logistic regression over the MTT_musicnn penultimate embedding (200 values, averaged over 3 s
   patches) and three loudness-contour features (share of low-energy 50 ms frames, share of frames 25 dB
   below the peak, spread of frame levels in dB): speech pauses, music rarely does.

The regression is fitted by ``python -m tingyin.music.eval --fit`` on the training split of
:mod:`tingyin.music.eval` (Debian MOH and Sonic Pi music, voice mixed over music, testdata speech, ESC-10
folds 1-3) and stored in ``detector.json``; the figures in docs/music.md are on the held-out split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tingyin.music.tagger import TaggerOutput, run_tagger

DETECTOR_PATH = Path(__file__).resolve().parent / "detector.json"
SILENCE_DBFS = -55.0
FRAME_SAMPLES = 800  # 50 ms at 16 kHz
CONTOUR_FEATURES = ("low_energy_share", "quiet_25db_share", "frame_db_std")


@dataclass(frozen=True)
class MusicDecision:
    """``is_music`` with its probability-like ``score`` in [0, 1] and a short ``reason``."""

    is_music: bool
    score: float
    reason: str


def rms_dbfs(audio: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(audio, dtype=np.float64))) + 1e-10))


def contour_features(audio: np.ndarray) -> np.ndarray:
    """Loudness-contour features of 16 kHz audio, in the order of ``CONTOUR_FEATURES``."""
    n_frames = max(1, len(audio) // FRAME_SAMPLES)
    framed = np.zeros(n_frames * FRAME_SAMPLES, dtype=np.float32)
    framed[: min(len(audio), len(framed))] = audio[: len(framed)]
    rms = np.sqrt(np.mean(framed.reshape(n_frames, FRAME_SAMPLES) ** 2, axis=1)) + 1e-6
    level_db = 20 * np.log10(rms)
    return np.array(
        [np.mean(rms < 0.5 * rms.mean()), np.mean(level_db < level_db.max() - 25.0), level_db.std()],
        dtype=np.float64,
    )


def detector_features(audio: np.ndarray, mtt: TaggerOutput) -> np.ndarray:
    """The regression's input: MTT embedding (200) followed by the contour features (3)."""
    return np.concatenate([mtt.embedding.astype(np.float64), contour_features(audio)])


@lru_cache(maxsize=1)
def _load_detector() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DETECTOR_PATH.read_text())
    for key in ("mean", "scale", "coef"):
        data[key] = np.asarray(data[key], dtype=np.float64)
    return data


def music_probability(features: np.ndarray) -> float:
    model = _load_detector()
    z = (features - model["mean"]) / model["scale"]
    logit = float(z @ model["coef"] + model["intercept"])
    return float(1.0 / (1.0 + np.exp(-logit)))


def is_music(audio: np.ndarray, *, mtt: TaggerOutput | None = None) -> MusicDecision:
    """Decide whether 16 kHz mono ``audio`` is music. Pass ``mtt`` when MTT_musicnn has already run on it."""
    samples = np.asarray(audio, dtype=np.float32).reshape(-1)
    level = rms_dbfs(samples)
    if level < SILENCE_DBFS:
        return MusicDecision(False, 0.0, f"silence: level {level:.1f} dBFS is below {SILENCE_DBFS:g} dBFS")
    mtt = mtt if mtt is not None else run_tagger(samples, "MTT_musicnn")
    threshold = float(_load_detector()["threshold"])
    score = music_probability(detector_features(samples, mtt))
    if score >= threshold:
        return MusicDecision(True, score, f"music probability {score:.2f} >= {threshold:g}")
    return MusicDecision(False, score, f"not music: music probability {score:.2f} < {threshold:g}")
