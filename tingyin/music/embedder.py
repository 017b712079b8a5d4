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

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from tingyin.errors import InvalidRequest
from tingyin.models import get_manager
from tingyin.music import features
from tingyin.music.tagger import EMBED_DIM, MODELS, run_patches

if TYPE_CHECKING:
    import onnx

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


@contextmanager
def music_embedder_in_use(name: str = DEFAULT_MUSIC_EMBEDDER) -> Iterator[MusicEmbedder]:
    """The shared music embedder called ``name`` (its musicnn sessions are shared by the model manager),
    counted in use for the block: a training's embedding pass outlasts the idle TTL."""
    models = models_of(name)
    with get_manager().use(f"music-embedder:{name}", lambda: MusicEmbedder(models)) as embedder:
        yield embedder


def get_music_embedder(name: str = DEFAULT_MUSIC_EMBEDDER) -> MusicEmbedder:
    """The shared music embedder for a short call; ``music_embedder_in_use`` for longer."""
    with music_embedder_in_use(name) as embedder:
        return embedder


def _dft_kernels() -> np.ndarray:
    """Periodic-Hann-windowed DFT basis as Conv1d kernels: (2 * 257, 1, 512), real parts then imaginary."""
    n = np.arange(features.N_FFT)
    bins = np.arange(features.N_FFT // 2 + 1)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / features.N_FFT)
    angle = 2.0 * np.pi * np.outer(bins, n) / features.N_FFT
    kernels = np.concatenate([np.cos(angle) * window, -np.sin(angle) * window])
    return kernels[:, None, :].astype(np.float32)


def _frontend_graph() -> onnx.ModelProto:
    """audio [1, samples] -> musicnn log-mel patches [patches, 187, 96], as ``features.patches(log_mel)``."""
    from onnx import TensorProto, helper, numpy_helper

    bins = features.N_FFT // 2 + 1
    constants = {
        "fe_shape": np.array([1, 1, -1], dtype=np.int64),
        "fe_pads": np.array([0, 0, features.N_FFT // 2, 0, 0, features.N_FFT // 2], dtype=np.int64),
        "fe_dft": _dft_kernels(),
        "fe_mel": features.mel_basis().T.astype(np.float32),
        "fe_gain": np.array(10000.0, dtype=np.float32),
        "fe_one": np.array(1.0, dtype=np.float32),
        "fe_ln10": np.array(np.log(10.0), dtype=np.float32),
        "fe_zero_i": np.array([0], dtype=np.int64),
        "fe_bins": np.array([bins], dtype=np.int64),
        "fe_bins2": np.array([2 * bins], dtype=np.int64),
        "fe_axis1": np.array([1], dtype=np.int64),
        "fe_patch": np.array([features.PATCH_FRAMES], dtype=np.int64),
        "fe_patch_shape": np.array([-1, features.PATCH_FRAMES, features.N_MELS], dtype=np.int64),
        "fe_zero_pair": np.array([0, 0], dtype=np.int64),
        "fe_zero_one": np.array([0], dtype=np.int64),
    }
    node = helper.make_node
    nodes = [
        node("Reshape", ["audio", "fe_shape"], ["fe_signal"]),
        node("Pad", ["fe_signal", "fe_pads"], ["fe_padded"], mode="constant"),
        node(
            "Conv",
            ["fe_padded", "fe_dft"],
            ["fe_spectrum"],
            kernel_shape=[features.N_FFT],
            strides=[features.HOP],
        ),
        node("Slice", ["fe_spectrum", "fe_zero_i", "fe_bins", "fe_axis1"], ["fe_real"]),
        node("Slice", ["fe_spectrum", "fe_bins", "fe_bins2", "fe_axis1"], ["fe_imag"]),
        node("Mul", ["fe_real", "fe_real"], ["fe_real2"]),
        node("Mul", ["fe_imag", "fe_imag"], ["fe_imag2"]),
        node("Add", ["fe_real2", "fe_imag2"], ["fe_power"]),  # [1, 257, frames]
        node("Transpose", ["fe_power"], ["fe_power_t"], perm=[0, 2, 1]),
        node("MatMul", ["fe_power_t", "fe_mel"], ["fe_mel_power"]),  # [1, frames, 96]
        node("Mul", ["fe_mel_power", "fe_gain"], ["fe_scaled"]),
        node("Add", ["fe_scaled", "fe_one"], ["fe_plus_one"]),
        node("Log", ["fe_plus_one"], ["fe_ln"]),
        node("Div", ["fe_ln", "fe_ln10"], ["fe_log_mel"]),
        # Fewer frames than a patch: zero-pad to one patch; otherwise drop the tail after whole patches.
        node("Shape", ["fe_log_mel"], ["fe_shape_all"]),
        node("Slice", ["fe_shape_all", "fe_axis1", "fe_bins_end", "fe_zero_one"], ["fe_frames"]),
        node("Sub", ["fe_patch", "fe_frames"], ["fe_missing"]),
        node("Max", ["fe_missing", "fe_zero_i"], ["fe_pad_frames"]),
        node(
            "Concat",
            ["fe_zero_pair", "fe_zero_i", "fe_zero_i", "fe_pad_frames", "fe_zero_i"],
            ["fe_frame_pads"],
            axis=0,
        ),
        node("Pad", ["fe_log_mel", "fe_frame_pads"], ["fe_log_mel_padded"], mode="constant"),
        node("Max", ["fe_frames", "fe_patch"], ["fe_frames_padded"]),
        node("Div", ["fe_frames_padded", "fe_patch"], ["fe_patch_count"]),
        node("Mul", ["fe_patch_count", "fe_patch"], ["fe_used_frames"]),
        node("Slice", ["fe_log_mel_padded", "fe_zero_i", "fe_used_frames", "fe_axis1"], ["fe_whole"]),
        node("Reshape", ["fe_whole", "fe_patch_shape"], ["patches"]),
    ]
    constants["fe_bins_end"] = np.array([2], dtype=np.int64)
    graph = helper.make_graph(
        nodes,
        "musicnn_frontend",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, "samples"])],
        [
            helper.make_tensor_value_info(
                "patches", TensorProto.FLOAT, ["patches", features.PATCH_FRAMES, features.N_MELS]
            )
        ],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx.ml", 2)]
    )


def music_embedder_onnx(name: str = DEFAULT_MUSIC_EMBEDDER) -> onnx.ModelProto:
    """The embedder ``name`` as one ONNX graph: input ``audio`` float32 [1, samples] (16 kHz mono), output
    ``embedding`` float32 [1, dim], equal to ``MusicEmbedder.embed`` (front end, musicnn, patch mean)."""
    import onnx
    from onnx import compose, helper

    from tingyin.music.tagger import WEIGHTS_DIR

    frontend = _frontend_graph()
    merged = frontend
    pooled = []
    for position, model in enumerate(models_of(name)):
        tagger = onnx.load(str(WEIGHTS_DIR / f"{model}.onnx"))
        prefix = f"m{position}_"
        tagger = compose.add_prefix(tagger, prefix)
        for output in list(tagger.graph.output):
            if output.name != prefix + "penultimate":
                tagger.graph.output.remove(output)
        merged.ir_version = tagger.ir_version  # the converted musicnn's: what onnxruntime supports
        outputs = [o.name for o in merged.graph.output]
        merged = compose.merge_models(
            merged,
            tagger,
            io_map=[("patches", prefix + "x")],
            outputs=[*outputs, prefix + "penultimate"],
        )
        pooled.append(prefix + "pooled")
        merged.graph.node.append(
            helper.make_node(
                "ReduceMean", [prefix + "penultimate"], [prefix + "pooled"], axes=[0], keepdims=1
            )
        )
    while merged.graph.output:
        merged.graph.output.pop()
    merged.graph.node.append(helper.make_node("Concat", pooled, ["embedding"], axis=1))
    merged.graph.output.append(
        helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT, [1, EMBED_DIM * len(pooled)])
    )
    return merged
