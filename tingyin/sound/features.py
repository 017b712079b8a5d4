"""Feature sets a sound classifier can be trained on, what they cost, and their combined extractor.

A feature set is the concatenation of embeddings from the shipped weights:

- the Whisper-base encoder (``whisper_onnx``): chosen layers, each pooled over frames by mean / max / std;
  "layer" ``mel`` is the log-mel spectrogram itself, so log-mel statistics are one more Whisper part;
- a musicnn embedder (``tingyin.music.embedder``): MTT and/or MSD penultimate layers, patch-averaged.

Training (``training.py``) embeds the clips once with the union of the Whisper layers of every affordable
candidate (a superset spec; sub-specs are column slices of it, see ``whisper_columns``) and scores each
candidate by exact leave-one-out. Costs are per 5 s clip on an idle 2-core machine (docs/sound.md) and
only rank candidates and bound the budget: they are estimates, deliberately static so that the same data
always gives the same choice, however busy the machine is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tingyin.errors import InvalidRequest
from tingyin.sound.whisper_onnx import MEL_LAYER, N_MELS, OPSET, EmbedderSpec, embedder_dim

if TYPE_CHECKING:
    import onnx

    from tingyin.sound.embeddings import Embedder

WHISPER = "whisper-base"
WIDTH = 512
# Milliseconds per 5 s clip on 2 idle cores (int8): front end + stem, each encoder block, musicnn models.
WHISPER_BASE_MS = 8.0
WHISPER_BLOCK_MS = 12.0
MEL_ONLY_MS = 4.0
MUSIC_MS = {"musicnn-mtt": 100.0, "musicnn-msd": 75.0, "musicnn-mtt-msd": 175.0}


@dataclass(frozen=True)
class FeatureSpec:
    """A Whisper part, a musicnn part, or both (concatenated in that order)."""

    whisper: EmbedderSpec | None = None
    music: str | None = None  # a tingyin.music.embedder name, e.g. "musicnn-mtt"
    quantized: bool = True  # the Whisper part runs int8

    def __post_init__(self) -> None:
        if self.whisper is None and self.music is None:
            raise InvalidRequest("a feature set needs at least one part")

    @property
    def key(self) -> str:
        parts = []
        if self.whisper is not None:
            parts.append(self.whisper.key + ("-int8" if self.quantized else ""))
        if self.music is not None:
            parts.append(self.music)
        return "+".join(parts)

    @property
    def dim(self) -> int:
        from tingyin.music.tagger import EMBED_DIM

        dim = embedder_dim(self.whisper) if self.whisper is not None else 0
        if self.music is not None:
            dim += EMBED_DIM * len(self.music.removeprefix("musicnn-").split("-"))
        return dim

    @property
    def cost_ms(self) -> float:
        """Estimated embedding time of a 5 s clip (2 idle cores)."""
        cost = 0.0
        if self.whisper is not None:
            deepest = max(self.whisper.layers)
            cost += MEL_ONLY_MS if deepest == MEL_LAYER else WHISPER_BASE_MS + WHISPER_BLOCK_MS * deepest
        if self.music is not None:
            cost += MUSIC_MS.get(self.music, 200.0)
        return cost

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"key": self.key}
        if self.whisper is not None:
            data["whisper"] = {
                "layers": list(self.whisper.layers),
                "poolings": list(self.whisper.poolings),
                "quantized": self.quantized,
            }
        if self.music is not None:
            data["music"] = self.music
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        whisper = data.get("whisper")
        return cls(
            whisper=(
                EmbedderSpec(
                    layers=tuple(int(layer) for layer in whisper["layers"]),
                    poolings=tuple(str(pooling) for pooling in whisper.get("poolings", ("mean", "max"))),
                )
                if whisper
                else None
            ),
            music=data.get("music"),
            quantized=bool(whisper.get("quantized", True)) if whisper else True,
        )


def _whisper(*layers: int, poolings: tuple[str, ...] = ("mean", "max")) -> EmbedderSpec:
    return EmbedderSpec(layers=tuple(layers), poolings=poolings)


# What training may choose from, cheapest first. Picked on ESC-10 and the dev tasks (docs/sound.md):
# middle Whisper layers carry sound events, deeper ones phonetic content, musicnn timbre and genre.
CANDIDATES: tuple[FeatureSpec, ...] = (
    FeatureSpec(_whisper(1)),
    FeatureSpec(_whisper(1, 2)),
    FeatureSpec(_whisper(1, 2, 3)),
    FeatureSpec(_whisper(MEL_LAYER, 1, 2, 3, poolings=("mean", "max", "std"))),
    FeatureSpec(_whisper(2, 3, 4, 5)),
    FeatureSpec(_whisper(1, 3, 6)),
    FeatureSpec(_whisper(1, 2, 3), music="musicnn-mtt"),
)
DEFAULT_FEATURES = CANDIDATES[2]


def superset(specs: Sequence[EmbedderSpec]) -> EmbedderSpec:
    """One Whisper spec whose embedding contains every spec of ``specs`` as columns."""
    layers = sorted({layer for spec in specs for layer in spec.layers})
    poolings = [pooling for pooling in ("mean", "max", "std") if any(pooling in s.poolings for s in specs)]
    return EmbedderSpec(layers=tuple(layers), poolings=tuple(poolings))


def whisper_columns(full: EmbedderSpec, part: EmbedderSpec) -> np.ndarray:
    """Column indices of ``part``'s embedding inside ``full``'s (same layer/pooling order as the graph)."""
    offsets: dict[tuple[int, str], int] = {}
    position = 0
    for layer in full.layers:
        width = N_MELS if layer == MEL_LAYER else WIDTH
        for pooling in full.poolings:
            offsets[(layer, pooling)] = position
            position += width
    columns = []
    for layer in part.layers:
        width = N_MELS if layer == MEL_LAYER else WIDTH
        for pooling in part.poolings:
            if (layer, pooling) not in offsets:
                raise InvalidRequest(f"layer {layer} {pooling} is not part of {full.key}")
            start = offsets[(layer, pooling)]
            columns.append(np.arange(start, start + width))
    return np.concatenate(columns)


class FeatureExtractor:
    """The ``Embedder`` of a ``FeatureSpec``: its parts' embeddings side by side."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec

    def parts(self) -> list[Embedder]:
        from tingyin.sound.embeddings import get_embedder

        parts: list[Embedder] = []
        if self.spec.whisper is not None:
            parts.append(get_embedder(self.spec.whisper, quantized=self.spec.quantized))
        if self.spec.music is not None:
            from tingyin.music.embedder import get_music_embedder

            parts.append(get_music_embedder(self.spec.music))
        return parts

    @property
    def name(self) -> str:
        return self.spec.key

    @property
    def dim(self) -> int:
        return self.spec.dim

    def embed(self, audio: np.ndarray) -> np.ndarray:
        return self.embed_batch([audio])[0]

    def embed_batch(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate([part.embed_batch(clips) for part in self.parts()], axis=1)

    def onnx_model(self) -> onnx.ModelProto:
        """One graph: input ``audio`` float32 [batch, samples] (batch 1 with a musicnn part), output
        ``embedding`` [batch, dim], equal to ``embed_batch``."""
        import onnx
        from onnx import compose, helper

        from tingyin.sound.embeddings import embedder_file

        graphs: list[onnx.ModelProto] = []
        if self.spec.whisper is not None:
            graphs.append(onnx.load(str(embedder_file(self.spec.whisper, quantized=self.spec.quantized))))
        if self.spec.music is not None:
            from tingyin.music.embedder import music_embedder_onnx

            graphs.append(music_embedder_onnx(self.spec.music))
        # One opset for the whole graph and for the head appended to it (ReduceMax/ReduceMean/ReduceL2
        # take their axes as an input from opset 18 on): the musicnn graph (opset 13) is converted up.
        from onnx import version_converter

        graphs = [_unique_opsets(graph) for graph in graphs]
        graphs = [
            graph if _default_opset(graph) >= OPSET else version_converter.convert_version(graph, OPSET)
            for graph in graphs
        ]
        if len(graphs) == 1:
            return graphs[0]
        # Prefix each part, feed both from one "audio" input, concatenate their embeddings.
        opsets: dict[str, int] = {}
        for graph in graphs:
            for opset in graph.opset_import:
                opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
        nodes, initializers, outputs = [], [], []
        for index, graph in enumerate(graphs):
            prefixed = compose.add_prefix(graph, f"p{index}_")
            for node in prefixed.graph.node:
                node.input[:] = ["audio" if name == f"p{index}_audio" else name for name in node.input]
            nodes.extend(prefixed.graph.node)
            initializers.extend(prefixed.graph.initializer)
            outputs.append(f"p{index}_embedding")
        nodes.append(helper.make_node("Concat", outputs, ["embedding"], axis=1, name="features_concat"))
        graph = helper.make_graph(
            nodes,
            "tingyin_features",
            [helper.make_tensor_value_info("audio", onnx.TensorProto.FLOAT, ["batch", "samples"])],
            [helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT, ["batch", self.dim])],
            initializers,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid(domain, version) for domain, version in opsets.items()]
        )
        model.ir_version = min(graph_model.ir_version for graph_model in graphs)
        return model


def _default_opset(model: onnx.ModelProto) -> int:
    return max(opset.version for opset in model.opset_import if opset.domain in ("", "ai.onnx"))


def _unique_opsets(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with one opset import per domain (a merged graph may list one twice, which the version
    converter then updates only once)."""
    seen: dict[str, int] = {}
    for opset in model.opset_import:
        domain = "" if opset.domain == "ai.onnx" else opset.domain
        seen[domain] = max(seen.get(domain, 0), opset.version)
    del model.opset_import[:]
    for domain, version in seen.items():
        entry = model.opset_import.add()
        entry.domain, entry.version = domain, version
    return model
