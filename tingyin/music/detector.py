"""Music / non-music decision: the SAMI service refuses speech, noise and silence ("不支持非音乐类音频").

What separates them, with the models we ship:

1. a level gate: audio whose RMS is below ``SILENCE_DBFS`` is silence, whatever the models say;
2. musicnn's own tag activations (MTT_musicnn and MSD_musicnn were trained on real music only: on music their
   instrument, genre and mood tags are confident; on speech the voice tags fire without instruments; on
   environmental sound nothing fits);
3. how the sound holds pitch (``tonal_features``): instruments and singers hold notes at steady pitches,
   speech glides between syllables and pauses, noise has no steady spectral peaks;
4. the loudness contour (``contour_features``): speech pauses, music rarely does.

A three-way multinomial logistic regression (music / speech / noise) over these named, interpretable
features turns them into probabilities, so a refusal says what the audio sounds like instead; a binary one
over the same features gives P(vocal) for MusicTaggingVocal (MTT_musicnn's voice tags alone mistake string
pads for choirs). Both are fitted by ``python -m tingyin.music.eval --fit`` on the ``fit`` split of the
evaluation data (General MIDI renders of real pieces on many instruments and ensembles, sung and spoken
vocals over music, real recordings, read speech, ESC-10 folds 1-3; regularisation and threshold chosen by
cross-validation on that split) and stored in ``detector.json``; docs/music.md gives the figures on the
held-out split, where a fifth of the instruments and ensembles never appear in the fit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tingyin.models import get_manager
from tingyin.music import features
from tingyin.music.tagger import TaggerOutput, run_patches

DETECTOR_PATH = Path(__file__).resolve().parent / "detector.json"
DETECTOR_MODELS = ("MTT_musicnn", "MSD_musicnn")
SILENCE_DBFS = -55.0
FRAME_SAMPLES = 800  # 50 ms at 16 kHz
CONTOUR_FEATURES = ("low_energy_share", "quiet_25db_share", "frame_db_std")
TONAL_FEATURES = (
    "held_frame_share",
    "held_energy_share",
    "peak_frame_share",
    "peak_energy_share",
    "flatness",
    "quiet_held_share",
    "beat_strength",
)
TONAL_MAX_SECONDS = 60.0  # longer audio: tonal features on evenly spaced excerpts of this total length
RATE = features.SAMPLE_RATE


@dataclass(frozen=True)
class MusicDecision:
    """``is_music`` with P(music) as ``score``, the ``verdict`` (music, speech, noise or silence), the
    class probabilities and a short ``reason`` a client can read."""

    is_music: bool
    score: float
    reason: str
    verdict: str = "music"
    probabilities: Mapping[str, float] = field(default_factory=dict)
    vocal_probability: float = 0.0  # P(a voice sings or speaks in it), from the vocal head


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


def _excerpt(audio: np.ndarray, max_seconds: float) -> np.ndarray:
    """At most ``max_seconds`` of ``audio``: ten evenly spaced pieces of a long track, joined."""
    limit = int(max_seconds * RATE)
    if len(audio) <= limit:
        return audio
    piece = limit // 10
    starts = np.linspace(0, len(audio) - piece, 10).astype(int)
    return np.concatenate([audio[s : s + piece] for s in starts])


def tonal_features(audio: np.ndarray, *, hold_s: float = 0.25) -> np.ndarray:
    """How the sound holds pitch, in the order of ``TONAL_FEATURES``.

    Spectral peaks (80 Hz - 5 kHz, 128 ms windows every 32 ms) standing 12 dB above the local spectrum are
    tonal components; one that stays within a bin (7.8 Hz) of its frequency for ``hold_s`` is a held note.
    Returned: the share of sounding frames with a held note, the share of sounding energy in held notes, the
    same two for any tonal peak, the median spectral flatness (1 for white noise, near 0 for tones), the
    share of the quieter half of the frames that still hold a note (speech pauses are silent, the gaps of a
    song over instruments are not), and the beat strength: the highest autocorrelation of the spectral flux
    at lags of 0.3-1.5 s (a pulse of 40-200 beats per minute).
    """
    from scipy.ndimage import maximum_filter1d, uniform_filter1d

    n_fft, hop = 2048, 512
    samples = _excerpt(np.asarray(audio, dtype=np.float32).reshape(-1), TONAL_MAX_SECONDS)
    if len(samples) < n_fft:
        samples = np.pad(samples, (0, n_fft - len(samples)))
    frames = np.lib.stride_tricks.sliding_window_view(samples, n_fft)[::hop]
    window = np.hanning(n_fft).astype(np.float32)
    low, high = int(80 * n_fft / RATE), int(5000 * n_fft / RATE)
    power = (np.abs(np.fft.rfft(frames * window, axis=1)) ** 2)[:, low:high].astype(np.float64) + 1e-12
    energy = power.sum(axis=1)
    sounding = energy > energy.max() * 1e-4  # within 40 dB of the loudest frame
    if not sounding.any():
        return np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    level = 10 * np.log10(power)
    local = uniform_filter1d(level, size=31, axis=1, mode="nearest")
    peak = np.zeros_like(level, dtype=bool)
    peak[:, 1:-1] = (level[:, 1:-1] > level[:, :-2]) & (level[:, 1:-1] >= level[:, 2:])
    peak &= level > local + 12.0
    peak &= level > level.max(axis=1, keepdims=True) - 45.0
    peak &= sounding[:, None]
    near = maximum_filter1d(peak.astype(np.uint8), size=3, axis=1).astype(bool)
    # Length of the run (in frames) of "a peak within one bin" that each cell belongs to.
    forward = np.zeros(near.shape, dtype=np.int32)
    backward = np.zeros(near.shape, dtype=np.int32)
    for t in range(len(near)):
        forward[t] = (forward[t - 1] + 1) * near[t] if t else near[t]
    for t in range(len(near) - 1, -1, -1):
        backward[t] = (backward[t + 1] + 1) * near[t] if t < len(near) - 1 else near[t]
    held = peak & (forward + backward - 1 >= max(2, round(hold_s * RATE / hop)))
    n_sounding = float(sounding.sum())
    sounding_energy = float(power[sounding].sum())
    flatness = np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)
    quiet = energy <= np.median(energy)
    return np.array(
        [
            float((held.any(axis=1) & sounding).sum()) / n_sounding,
            float((power * held).sum()) / sounding_energy,
            float((peak.any(axis=1) & sounding).sum()) / n_sounding,
            float((power * peak).sum()) / sounding_energy,
            float(np.median(flatness[sounding])),
            float((held.any(axis=1) & quiet).sum()) / max(1.0, float(quiet.sum())),
            _beat_strength(level, hop),
        ]
    )


def _beat_strength(level_db: np.ndarray, hop: int) -> float:
    """Highest normalised autocorrelation of the positive spectral flux at lags of 0.3-1.5 s."""
    flux = np.maximum(np.diff(level_db, axis=0), 0.0).sum(axis=1)
    flux = flux - flux.mean()
    frame_s = hop / RATE
    low, high = round(0.3 / frame_s), round(1.5 / frame_s)
    if len(flux) < 2 * high or not np.any(flux):
        return 0.0
    spectrum = np.fft.rfft(flux, 2 * len(flux))
    autocorrelation = np.fft.irfft(np.abs(spectrum) ** 2)[: len(flux)]
    autocorrelation /= autocorrelation[0] * (len(flux) - np.arange(len(flux))) / len(flux)
    return float(np.max(autocorrelation[low : high + 1]))


def named_features(audio: np.ndarray, taggers: Mapping[str, TaggerOutput]) -> dict[str, float]:
    """Every feature the detector may read, by name: ``mtt:<tag>``, ``msd:<tag>``, contour and tonal."""
    named: dict[str, float] = {}
    for model, prefix in (("MTT_musicnn", "mtt"), ("MSD_musicnn", "msd")):
        if model in taggers:
            output = taggers[model]
            named.update(
                {f"{prefix}:{label}": float(v) for label, v in zip(output.labels, output.scores, strict=True)}
            )
    named.update(zip(CONTOUR_FEATURES, (float(v) for v in contour_features(audio)), strict=True))
    named.update(zip(TONAL_FEATURES, (float(v) for v in tonal_features(audio)), strict=True))
    return named


class MusicDetector:
    """The fitted regressions of ``detector.json`` over the same named features: P(music), P(speech),
    P(noise), and P(vocal) (a voice sings or speaks over the music: MusicTaggingVocal)."""

    def __init__(self, model: Mapping[str, Any]) -> None:
        self.classes: tuple[str, ...] = tuple(model["classes"])
        self.features: tuple[str, ...] = tuple(model["features"])
        self.mean = np.asarray(model["mean"], dtype=np.float64)
        self.scale = np.asarray(model["scale"], dtype=np.float64)
        self.coef = np.asarray(model["coef"], dtype=np.float64).reshape(len(self.classes), len(self.features))
        self.intercept = np.asarray(model["intercept"], dtype=np.float64).reshape(len(self.classes))
        self.threshold = float(model["threshold"])
        self.vocal_coef = np.asarray(model["vocal"]["coef"], dtype=np.float64).reshape(len(self.features))
        self.vocal_intercept = float(model["vocal"]["intercept"])

    @classmethod
    def load(cls, path: Path = DETECTOR_PATH) -> MusicDetector:
        return cls(json.loads(path.read_text()))

    def _standard(self, named: Mapping[str, float]) -> np.ndarray:
        x = np.array([named[name] for name in self.features], dtype=np.float64)
        return (x - self.mean) / self.scale

    def probabilities(self, named: Mapping[str, float]) -> dict[str, float]:
        logits = self.coef @ self._standard(named) + self.intercept
        exp = np.exp(logits - logits.max())
        return {name: float(p) for name, p in zip(self.classes, exp / exp.sum(), strict=True)}

    def vocal_probability(self, named: Mapping[str, float]) -> float:
        logit = float(self.vocal_coef @ self._standard(named) + self.vocal_intercept)
        return float(1.0 / (1.0 + np.exp(-logit)))

    def decide(self, audio: np.ndarray, taggers: Mapping[str, TaggerOutput]) -> MusicDecision:
        level = rms_dbfs(audio)
        if level < SILENCE_DBFS:
            return MusicDecision(
                False, 0.0, f"silence (level {level:.1f} dBFS is below {SILENCE_DBFS:g} dBFS)", "silence"
            )
        named = named_features(audio, taggers)
        probabilities = self.probabilities(named)
        vocal = self.vocal_probability(named)
        music = probabilities["music"]
        shown = ", ".join(f"{name} {p:.2f}" for name, p in sorted(probabilities.items(), key=lambda i: -i[1]))
        if music >= self.threshold:
            return MusicDecision(True, music, f"music ({shown})", "music", probabilities, vocal)
        verdict = max((c for c in self.classes if c != "music"), key=lambda c: probabilities[c])
        described = {"speech": "speech without music", "noise": "noise or environmental sound"}[verdict]
        reason = f"it sounds like {described} ({shown})"
        return MusicDecision(False, music, reason, verdict, probabilities, vocal)


def get_detector() -> MusicDetector:
    """The shipped detector (``detector.json``), loaded once through the model manager."""
    return get_manager().get("music-detector", MusicDetector.load)


def is_music(audio: np.ndarray, *, taggers: Mapping[str, TaggerOutput] | None = None) -> MusicDecision:
    """Decide whether 16 kHz mono ``audio`` is music. Pass ``taggers`` (model name -> output) for the
    ``DETECTOR_MODELS`` that have already run on it; the missing ones are run here."""
    samples = np.asarray(audio, dtype=np.float32).reshape(-1)
    outputs = dict(taggers or {})
    missing = [model for model in DETECTOR_MODELS if model not in outputs]
    if missing:
        patch_input = features.patches(features.log_mel(samples))
        for model in missing:
            outputs[model] = run_patches(patch_input, model)
    return get_detector().decide(samples, outputs)
