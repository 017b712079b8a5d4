"""Music embeddings for custom music taggers: musicnn's penultimate layer, the sound platform's embedder API.

``MusicEmbedder`` has the interface of ``tingyin.sound.embeddings.SoundEmbedder`` (``name``, ``dim``,
``embed``, ``embed_batch``), so the sound platform trains and serves ``music_tagging`` models with the same
head, cache and reports as sound classifiers. A clip's embedding is the 200-dim penultimate layer of each
chosen musicnn model, averaged over the clip's 3 s patches, concatenated in model order.

The default is MTT_musicnn alone: on the quick checks in ``docs/music.md`` (Sonic Pi sample families; sections
of five music-on-hold tracks held out in time) it matched or beat MTT+MSD concatenated and clearly beat
MSD alone, at half the cost of the concatenation. Other combinations stay loadable by name
(``musicnn-mtt-msd``), so a classifier records exactly what it was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tingyin.errors import InvalidRequest
from tingyin.models import get_manager
from tingyin.music import features
from tingyin.music.tagger import EMBED_DIM, MODELS, run_patches

NAME_PREFIX = "musicnn-"
DEFAULT_MUSIC_MODELS: tuple[str, ...] = ("MTT_musicnn",)


def embedder_name(models: Sequence[str]) -> str:
    """``musicnn-mtt``, ``musicnn-mtt-msd``, ...: the models in order, as recorded in a classifier."""
    return NAME_PREFIX + "-".join(model.split("_")[0].lower() for model in models)


DEFAULT_MUSIC_EMBEDDER = embedder_name(DEFAULT_MUSIC_MODELS)


def models_of(name: str) -> tuple[str, ...]:
    """The musicnn models behind an embedder name (the inverse of ``embedder_name``)."""
    by_short = {model.split("_")[0].lower(): model for model in MODELS}
    parts = name.removeprefix(NAME_PREFIX).split("-") if name.startswith(NAME_PREFIX) else []
    if not parts or any(part not in by_short for part in parts):
        raise InvalidRequest(f"unknown music embedder {name!r}")
    return tuple(by_short[part] for part in parts)


class MusicEmbedder:
    """Audio (16 kHz mono float32) -> musicnn embeddings of ``models``, patch-averaged and concatenated."""

    def __init__(self, models: Sequence[str] = DEFAULT_MUSIC_MODELS) -> None:
        unknown = [model for model in models if model not in MODELS]
        if not models or unknown:
            raise InvalidRequest(f"music embedder models must be among {', '.join(MODELS)}")
        self.models = tuple(models)

    @property
    def name(self) -> str:
        return embedder_name(self.models)

    @property
    def dim(self) -> int:
        return EMBED_DIM * len(self.models)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """The embedding of one clip, shape (dim,)."""
        return self.embed_batch([audio])[0]

    def embed_batch(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings of several clips, (n, dim). The patches of all clips share the model runs; a clip's
        embedding depends on its own patches only."""
        patch_sets = []
        for clip in clips:
            samples = np.asarray(clip, dtype=np.float32)
            if samples.ndim == 2:  # (channels, n): the mix, as the sound platform does
                samples = samples.mean(axis=0)
            samples = samples.reshape(-1)
            if samples.size == 0:
                raise InvalidRequest("the audio is empty")
            patch_sets.append(features.patches(features.log_mel(samples)))
        out = np.zeros((len(clips), self.dim), dtype=np.float32)
        if not patch_sets:
            return out
        bounds = np.cumsum([0] + [len(patches) for patches in patch_sets])
        all_patches = np.concatenate(patch_sets)
        for position, model in enumerate(self.models):
            per_patch = run_patches(all_patches, model).patch_embeddings
            columns = slice(position * EMBED_DIM, (position + 1) * EMBED_DIM)
            for index in range(len(clips)):
                out[index, columns] = per_patch[bounds[index] : bounds[index + 1]].mean(axis=0)
        return out


def get_music_embedder(name: str = DEFAULT_MUSIC_EMBEDDER) -> MusicEmbedder:
    """The shared music embedder called ``name`` (its musicnn sessions are shared by the model manager)."""
    models = models_of(name)
    return get_manager().get(f"music-embedder:{name}", lambda: MusicEmbedder(models))
