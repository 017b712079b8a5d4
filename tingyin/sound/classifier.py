"""A trained sound classifier: frozen embedder + small head; save/load, predict, self-contained ONNX."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tingyin.errors import InvalidRequest, NotFound
from tingyin.sound.embeddings import DEFAULT_SPEC, Embedder, SoundEmbedder, embedder_file, get_embedder
from tingyin.sound.whisper_onnx import EmbedderSpec

FORMAT_VERSION = 1
HEAD_FILE = "head.npz"
META_FILE = "classifier.json"
ONNX_FILE = "sound_classifier.onnx"
LABELS_FILE = "labels.txt"
WHISPER_EMBEDDER = "whisper-base"  # what classifiers saved before music_tagging models were trained on
MUSIC_EMBEDDER_PREFIX = "musicnn-"  # tingyin.music.embedder names: musicnn-mtt, musicnn-mtt-msd, ...
DEFAULT_LAYERS = tuple(DEFAULT_SPEC.layers)


class EmbedderIdentity(NamedTuple):
    """What a classifier records of its embedder: the model family, Whisper layers, int8 or not."""

    model: str
    layers: tuple[int, ...]
    quantized: bool


def embedder_identity(embedder: Embedder) -> EmbedderIdentity:
    """The record of ``embedder`` in a classifier (Whisper: its layers and quantization)."""
    if isinstance(embedder, SoundEmbedder):
        return EmbedderIdentity(WHISPER_EMBEDDER, tuple(embedder.spec.layers), embedder.quantized)
    if embedder.name.startswith(MUSIC_EMBEDDER_PREFIX):
        return EmbedderIdentity(embedder.name, (), False)
    raise InvalidRequest(f"embedder {embedder.name!r} cannot be recorded in a classifier")


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def head_logits(features: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    """Logits of standardised features through a linear head ([W, b]) or a one-hidden-layer MLP."""
    if len(weights) == 2:
        return features @ weights[0] + weights[1]
    hidden = np.maximum(features @ weights[0] + weights[1], 0.0)
    return hidden @ weights[2] + weights[3]


@dataclass
class TrainedClassifier:
    """Classes, the embedder it was trained on, feature standardisation and head weights."""

    classes: list[str]
    embedder_layers: tuple[int, ...]
    quantized: bool
    mean: np.ndarray
    scale: np.ndarray
    weights: list[np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)
    embedder_model: str = WHISPER_EMBEDDER

    @property
    def is_music(self) -> bool:
        return self.embedder_model.startswith(MUSIC_EMBEDDER_PREFIX)

    @property
    def spec(self) -> EmbedderSpec:
        return EmbedderSpec(layers=tuple(self.embedder_layers))

    @property
    def head_kind(self) -> str:
        return "linear" if len(self.weights) == 2 else "mlp"

    def embedder(self) -> Embedder:
        if self.is_music:
            from tingyin.music.embedder import get_music_embedder

            return get_music_embedder(self.embedder_model)
        if self.embedder_model != WHISPER_EMBEDDER:
            raise InvalidRequest(f"unknown embedder {self.embedder_model!r} in the classifier")
        return get_embedder(self.spec, quantized=self.quantized)

    def scores_from_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Class probabilities (n, classes) for embeddings (n, dim)."""
        features = (np.asarray(embeddings, dtype=np.float32) - self.mean) / self.scale
        return softmax(head_logits(features, self.weights)).astype(np.float32)

    def predict(self, audio: np.ndarray, top_num: int = 6) -> list[tuple[str, float]]:
        """The ``top_num`` best classes for 16 kHz mono float32 ``audio``, best first."""
        if top_num < 1:
            raise InvalidRequest("top_num must be at least 1")
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim == 2:  # (channels, n): classify the mix, as training does
            samples = samples.mean(axis=0)
        samples = samples.reshape(-1)
        if samples.size == 0:
            raise InvalidRequest("the audio is empty")
        scores = self.scores_from_embeddings(self.embedder().embed(samples)[None])[0]
        order = np.argsort(-scores, kind="stable")[:top_num]
        return [(self.classes[i], float(scores[i])) for i in order]

    # -- persistence -------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {"mean": self.mean, "scale": self.scale}
        arrays.update({f"weight_{i}": weight for i, weight in enumerate(self.weights)})
        np.savez(directory / HEAD_FILE, **arrays)  # type: ignore[arg-type]
        meta = {
            "format_version": FORMAT_VERSION,
            "classes": self.classes,
            "embedder": {
                "name": self.embedder_model,
                "layers": list(self.embedder_layers),
                "quantized": self.quantized,
            },
            "head": self.head_kind,
            "weight_count": len(self.weights),
            "info": self.info,
        }
        (directory / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> TrainedClassifier:
        meta_path = directory / META_FILE
        if not meta_path.exists():
            raise NotFound(f"no trained classifier in {directory}")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise InvalidRequest(f"classifier format {meta.get('format_version')} is not supported")
        with np.load(directory / HEAD_FILE, allow_pickle=False) as arrays:
            weights = [arrays[f"weight_{i}"].astype(np.float32) for i in range(int(meta["weight_count"]))]
            mean = arrays["mean"].astype(np.float32)
            scale = arrays["scale"].astype(np.float32)
        embedder = meta.get("embedder") or {}  # absent: saved by a Whisper-only version
        return cls(
            classes=list(meta["classes"]),
            embedder_layers=tuple(int(layer) for layer in embedder.get("layers", DEFAULT_LAYERS)),
            quantized=bool(embedder.get("quantized", True)),
            mean=mean,
            scale=scale,
            weights=weights,
            info=dict(meta.get("info") or {}),
            embedder_model=str(embedder.get("name") or WHISPER_EMBEDDER),
        )

    # -- export ----------------------------------------------------------------------------------------
    def export_onnx(self, directory: Path) -> tuple[Path, Path]:
        """Write ``sound_classifier.onnx`` (audio -> scores, the whole pipeline) and ``labels.txt``.

        Input ``audio``: float32 [batch, samples], 16 kHz mono in [-1, 1] (clips of one batch must be of
        equal length; use batch 1 otherwise; music classifiers take batch 1 only). Output ``scores``:
        float32 [batch, classes], softmax, in the order of ``labels.txt`` (one class name per line). Only
        onnxruntime is needed to run it.
        """
        import onnx
        from onnx import helper, numpy_helper

        if self.is_music:  # musicnn front end, tagger(s) and patch mean as one graph; batch of 1 clip
            from tingyin.music.embedder import music_embedder_onnx

            model = music_embedder_onnx(self.embedder_model)
        else:
            model = onnx.load(str(embedder_file(self.spec, quantized=self.quantized)))
        graph = model.graph
        graph.output.pop()  # the embedding becomes an intermediate value
        nodes = []
        initializers = [
            numpy_helper.from_array(self.mean.astype(np.float32), "head_mean"),
            numpy_helper.from_array(self.scale.astype(np.float32), "head_scale"),
        ]
        nodes.append(helper.make_node("Sub", ["embedding", "head_mean"], ["head_centred"]))
        nodes.append(helper.make_node("Div", ["head_centred", "head_scale"], ["head_features"]))
        current = "head_features"
        for layer in range(len(self.weights) // 2):
            weight_name, bias_name = f"head_w{layer}", f"head_b{layer}"
            initializers.append(
                numpy_helper.from_array(self.weights[2 * layer].astype(np.float32), weight_name)
            )
            initializers.append(
                numpy_helper.from_array(self.weights[2 * layer + 1].astype(np.float32), bias_name)
            )
            nodes.append(helper.make_node("MatMul", [current, weight_name], [f"head_mm{layer}"]))
            nodes.append(helper.make_node("Add", [f"head_mm{layer}", bias_name], [f"head_out{layer}"]))
            current = f"head_out{layer}"
            if layer < len(self.weights) // 2 - 1:
                nodes.append(helper.make_node("Relu", [current], [f"head_relu{layer}"]))
                current = f"head_relu{layer}"
        nodes.append(helper.make_node("Softmax", [current], ["scores"], axis=-1))
        graph.node.extend(nodes)
        graph.initializer.extend(initializers)
        graph.output.append(
            helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, ["batch", len(self.classes)])
        )
        graph.name = "tingyin_sound_classifier"
        batch = "1" if self.is_music else "batch"
        del model.metadata_props[:]
        for key, value in {
            "labels": json.dumps(self.classes, ensure_ascii=False),
            "input": f"audio: float32 [{batch}, samples], 16 kHz mono, range [-1, 1]",
            "output": "scores: float32 [batch, classes], softmax, order of labels",
            "producer": "tingyin music tagging" if self.is_music else "tingyin sound classification",
            "embedder": self.embedder_model,
        }.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model)
        directory.mkdir(parents=True, exist_ok=True)
        onnx_path = directory / ONNX_FILE
        labels_path = directory / LABELS_FILE
        onnx.save(model, str(onnx_path))
        labels_path.write_text("\n".join(self.classes) + "\n", encoding="utf-8")
        return onnx_path, labels_path
