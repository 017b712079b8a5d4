"""musicnn music taggers served with onnxruntime: 50 tag probabilities and a 200-dim embedding per track.

Two models ship in ``tingyin/music/weights/`` (converted by ``scripts/convert_musicnn.py``):

- ``MTT_musicnn``: trained on MagnaTagATune (instruments, vocals, moods, a few genres).
- ``MSD_musicnn``: trained on the Million Song Dataset's top-50 last.fm tags (genres, eras, moods).

A track is cut into non-overlapping 3 s patches (musicnn's own default); tag probabilities and the penultimate
embedding are averaged over the patches (musicnn's ``top_tags`` averages the taggram the same way).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tingyin.errors import InvalidRequest
from tingyin.models import get_manager
from tingyin.music import features

if TYPE_CHECKING:
    import onnxruntime as ort

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
EMBED_DIM = 200  # units of musicnn's penultimate dense layer (after batch norm)
BATCH_PATCHES = 8  # patches per onnxruntime call: ~330 MB of activations, freed after each call

MTT_LABELS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal",
    "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice",
    "choral",
)  # fmt: skip
MSD_LABELS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock",
    "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk",
    "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist", "guitar",
    "Hip-Hop", "70s", "party", "country", "easy listening", "sexy", "catchy", "funk", "electro",
    "heavy metal", "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy",
)  # fmt: skip
MODEL_LABELS: dict[str, tuple[str, ...]] = {"MTT_musicnn": MTT_LABELS, "MSD_musicnn": MSD_LABELS}
MODELS = tuple(MODEL_LABELS)


@dataclass(frozen=True)
class TaggerOutput:
    """One model on one track: per-patch tag probabilities (patches, 50) and embeddings (patches, 200)."""

    model: str
    labels: tuple[str, ...]
    taggram: np.ndarray
    patch_embeddings: np.ndarray

    @property
    def scores(self) -> np.ndarray:
        """Tag probabilities averaged over the patches, shape (50,)."""
        return self.taggram.mean(axis=0)

    @property
    def embedding(self) -> np.ndarray:
        """Penultimate-layer embedding averaged over the patches, shape (200,)."""
        return self.patch_embeddings.mean(axis=0)

    def tag_scores(self) -> TagScores:
        return TagScores(self.model, self.labels, self.scores.astype(np.float32))


@dataclass(frozen=True)
class TagScores:
    """Track-level tag probabilities in [0, 1] of one model, in the model's label order."""

    model: str
    labels: tuple[str, ...]
    scores: np.ndarray

    def __getitem__(self, label: str) -> float:
        return float(self.scores[self.labels.index(label)])

    def as_dict(self) -> dict[str, float]:
        return {label: float(score) for label, score in zip(self.labels, self.scores, strict=True)}

    def top(self, n: int = 5) -> list[tuple[str, float]]:
        order = np.argsort(-self.scores)[:n]
        return [(self.labels[i], float(self.scores[i])) for i in order]


def _check_model(model: str) -> None:
    if model not in MODEL_LABELS:
        raise InvalidRequest(f"unknown music tagging model {model!r}; known: {', '.join(MODELS)}")


def load_tagger(model: str = "MTT_musicnn") -> ort.InferenceSession:
    """The shared onnxruntime session of ``model``, loaded on first use through the model manager."""
    _check_model(model)

    def loader() -> ort.InferenceSession:
        from tingyin.models.onnx import cpu_session

        return cpu_session(WEIGHTS_DIR / f"{model}.onnx", memory_arena=False)

    return get_manager().get(f"musicnn:{model}", loader)


def _as_mono_16k(audio: np.ndarray) -> np.ndarray:
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise InvalidRequest(
            f"music audio must be mono 16 kHz samples, got an array of shape {samples.shape}"
        )
    if samples.size == 0:
        raise InvalidRequest("music audio is empty")
    return samples


def run_patches(spectrogram_patches: np.ndarray, model: str = "MTT_musicnn") -> TaggerOutput:
    """Run ``model`` on (n, 187, 96) log-mel patches."""
    session = load_tagger(model)
    tags: list[np.ndarray] = []
    embeddings: list[np.ndarray] = []
    for start in range(0, len(spectrogram_patches), BATCH_PATCHES):
        batch = np.ascontiguousarray(spectrogram_patches[start : start + BATCH_PATCHES], dtype=np.float32)
        batch_tags, batch_embeddings = session.run(["tags", "penultimate"], {"x": batch})
        tags.append(batch_tags)
        embeddings.append(batch_embeddings)
    return TaggerOutput(model, MODEL_LABELS[model], np.concatenate(tags), np.concatenate(embeddings))


def run_tagger(audio: np.ndarray, model: str = "MTT_musicnn") -> TaggerOutput:
    """Tag 16 kHz mono float32 ``audio`` with ``model``: musicnn front end, 3 s patches, ONNX."""
    _check_model(model)
    samples = _as_mono_16k(audio)
    return run_patches(features.patches(features.log_mel(samples)), model)


def tag_music(audio: np.ndarray, model: str = "MTT_musicnn") -> TagScores:
    """Track-level probabilities of ``model``'s 50 tags for 16 kHz mono float32 ``audio`` (patch average)."""
    return run_tagger(audio, model).tag_scores()


def music_embedding(audio: np.ndarray, model: str = "MTT_musicnn") -> np.ndarray:
    """The 200-dim penultimate-layer embedding of ``model``, averaged over 3 s patches, float32."""
    return run_tagger(audio, model).embedding.astype(np.float32)
