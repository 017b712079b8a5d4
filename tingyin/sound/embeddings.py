"""Frozen pretrained audio embeddings: the Whisper-base encoder, pooled, as an onnxruntime session.

The graph (``whisper_onnx``) is built once from the shipped CTranslate2 weights, quantized to int8
(dynamic, MatMul weights only: about twice as fast on 2 cores, same accuracy on ESC-10) and kept under
``$TINGYIN_HOME/models/sound``. The same file is what an exported classifier embeds, so served,
validated and exported scores agree.

Embeddings of training clips are cached as ``.npy`` keyed by the clip's sha256 and the encoder name.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np

from tingyin.audio import decode
from tingyin.config import get_settings
from tingyin.models import get_manager, model_path
from tingyin.models.onnx import cpu_session
from tingyin.sound.types import LabeledClip, TrainingCancelled
from tingyin.sound.whisper_onnx import (
    EmbedderSpec,
    build_embedder,
    embedder_cache_path,
    embedder_dim,
    quantizable_nodes,
)

DEFAULT_SPEC = EmbedderSpec(layers=(1, 2, 3))
_build_lock = threading.Lock()


def embedder_file(spec: EmbedderSpec = DEFAULT_SPEC, *, quantized: bool = True) -> Path:
    """The embedder ONNX file for ``spec``, built (and quantized) on first use."""
    import onnx

    settings = get_settings()
    model_bin = model_path("whisper-base") / "model.bin"
    cache_dir = settings.model_dir / "sound"
    cache_dir.mkdir(parents=True, exist_ok=True)
    base = embedder_cache_path(cache_dir, model_bin, spec)
    target = base.with_name(base.stem + ("-int8" if quantized else "") + ".onnx")
    if target.exists():
        return target
    with _build_lock:
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
            plain = Path(scratch) / "embedder.onnx"
            graph = build_embedder(model_bin, spec, fp16_weights=not quantized)
            onnx.save(graph, plain)
            if quantized:
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantized_path = Path(scratch) / "embedder-int8.onnx"
                quantize_dynamic(
                    plain,
                    quantized_path,
                    weight_type=QuantType.QInt8,
                    op_types_to_quantize=["MatMul"],
                    nodes_to_quantize=quantizable_nodes(graph),
                )
                plain = quantized_path
            os.replace(plain, target)
    return target


class Embedder(Protocol):
    """What training and prediction need of an embedder: the Whisper ``SoundEmbedder`` here, or the
    musicnn ``tingyin.music.embedder.MusicEmbedder`` of music_tagging models."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, audio: np.ndarray) -> np.ndarray: ...

    def embed_batch(self, clips: Sequence[np.ndarray]) -> np.ndarray: ...


class SoundEmbedder:
    """Audio (16 kHz float32) -> a fixed-size embedding."""

    def __init__(self, spec: EmbedderSpec = DEFAULT_SPEC, *, quantized: bool = True) -> None:
        self.spec = spec
        self.quantized = quantized
        self.onnx_path = embedder_file(spec, quantized=quantized)
        self._session = cpu_session(self.onnx_path)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.spec.key + ("-int8" if self.quantized else "")

    @property
    def dim(self) -> int:
        return embedder_dim(self.spec)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """The embedding of one clip, shape (dim,)."""
        return self.embed_batch([audio])[0]

    def embed_batch(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings of several clips, (n, dim). Clips of equal length share one run; a clip's embedding
        never depends on the others in the batch (no padding between clips)."""
        out = np.zeros((len(clips), self.dim), dtype=np.float32)
        by_length: dict[int, list[int]] = defaultdict(list)
        for index, clip in enumerate(clips):
            by_length[int(clip.shape[-1])].append(index)
        for indices in by_length.values():
            for start in range(0, len(indices), 8):
                chunk = indices[start : start + 8]
                batch = np.stack([np.asarray(clips[i], dtype=np.float32).reshape(-1) for i in chunk])
                with self._lock:
                    result = self._session.run(["embedding"], {"audio": batch})[0]
                out[chunk] = result
        return out


@contextmanager
def embedder_in_use(spec: EmbedderSpec = DEFAULT_SPEC, *, quantized: bool = True) -> Iterator[SoundEmbedder]:
    """The shared embedder (loaded once by the model manager), counted in use for the block: a training's
    embedding pass outlasts the idle TTL, and the manager must not drop (and reload) it meanwhile."""
    key = f"sound-embedder:{spec.key}:{'int8' if quantized else 'fp32'}"
    with get_manager().use(key, lambda: SoundEmbedder(spec, quantized=quantized)) as embedder:
        yield embedder


def get_embedder(spec: EmbedderSpec = DEFAULT_SPEC, *, quantized: bool = True) -> SoundEmbedder:
    """The shared embedder for a short call (one prediction, one batch); ``embedder_in_use`` for longer."""
    with embedder_in_use(spec, quantized=quantized) as embedder:
        return embedder


class EmbeddingCache:
    """Embeddings on disk: ``<directory>/<encoder>/<sha256[:2]>/<sha256>[.<variant>].npy``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, content_hash: str, encoder: str, variant: str = "") -> Path:
        # An encoder's name joins its parts with "+" (Whisper layers + musicnn): plain, never a path.
        if not content_hash.isalnum() or not all(part.isalnum() for part in re.split(r"[-_+]", encoder)):
            raise ValueError("content hash and encoder name must be plain names")
        suffix = f".{variant}" if variant else ""
        return self.directory / encoder / content_hash[:2] / f"{content_hash}{suffix}.npy"

    def get(self, content_hash: str, encoder: str, variant: str = "") -> np.ndarray | None:
        path = self.path(content_hash, encoder, variant)
        try:
            return np.load(path, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError):
            return None

    def put(self, content_hash: str, encoder: str, embedding: np.ndarray, variant: str = "") -> None:
        path = self.path(content_hash, encoder, variant)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npy")
        np.save(temporary, np.asarray(embedding, dtype=np.float32), allow_pickle=False)
        os.replace(temporary, path)


def load_clip_audio(clip: LabeledClip, max_seconds: float | None = None) -> np.ndarray:
    """The clip decoded to 16 kHz mono float32."""
    return decode(clip.source, max_seconds=max_seconds).samples


ProgressCallback = Callable[[float, str], None]


def embed_clips(
    clips: Sequence[LabeledClip],
    *,
    embedder: Embedder | None = None,
    cache: EmbeddingCache | None = None,
    augmenter: Callable[[np.ndarray, int], np.ndarray] | None = None,
    variant: str = "",
    progress: ProgressCallback | None = None,
    cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Embeddings (n, dim) of ``clips``, from the cache where present.

    ``augmenter(audio, index)`` transforms the decoded audio first (``variant`` then names the
    augmentation in the cache key, so plain and augmented embeddings never mix).
    """
    embedder = embedder or get_embedder()
    out = np.zeros((len(clips), embedder.dim), dtype=np.float32)
    missing: list[int] = []
    for index, clip in enumerate(clips):
        cached = cache.get(clip.content_hash, embedder.name, variant) if cache is not None else None
        if cached is not None and cached.shape == (embedder.dim,):
            out[index] = cached
        else:
            missing.append(index)
    total = max(1, len(clips))
    done = len(clips) - len(missing)
    # Decode and embed a few clips at a time so equal-length clips share a run, and cancel stays prompt.
    for start in range(0, len(missing), 8):
        if cancel is not None and cancel():
            raise TrainingCancelled("cancelled while computing embeddings")
        chunk = missing[start : start + 8]
        audios = []
        for index in chunk:
            audio = load_clip_audio(clips[index])
            if augmenter is not None:
                audio = augmenter(audio, index)
            audios.append(audio)
        embeddings = embedder.embed_batch(audios)
        for index, embedding in zip(chunk, embeddings, strict=True):
            out[index] = embedding
            if cache is not None:
                cache.put(clips[index].content_hash, embedder.name, embedding, variant)
        done += len(chunk)
        if progress is not None:
            progress(done / total, f"embedded {done}/{len(clips)} clips")
    return out
