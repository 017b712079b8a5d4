"""A trained sound classifier: frozen features + a linear head with calibrated scores and an open-set
("unknown") test; save/load, predict, self-contained ONNX.

Scores are ``softmax(logits / temperature)``: the temperature is fitted on leave-one-out predictions of
the training clips, so a score of 0.9 is right about 90 % of the time on data like the training data.

Open set: a clip far from every class can be answered ``UNKNOWN`` (a name no class can take, since class
names are ``[A-Za-z0-9_]+``). Its *familiarity* is a conformal p-value: the fraction of training clips
(scored without themselves) that look less typical than it, by the sum of two standardised signals, the
best head logit and the cosine to the nearest class centroid. With a threshold of 0.05 about 5 % of clips
like the training clips are answered "unknown", whatever the data; a larger threshold catches more
strangers and rejects more genuine clips.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tingyin.errors import InvalidRequest, NotFound
from tingyin.sound.embeddings import Embedder
from tingyin.sound.features import FeatureExtractor, FeatureSpec
from tingyin.sound.whisper_onnx import EmbedderSpec

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
HEAD_FILE = "head.npz"
META_FILE = "classifier.json"
ONNX_FILE = "sound_classifier.onnx"
LABELS_FILE = "labels.txt"
WHISPER_EMBEDDER = "whisper-base"  # what classifiers saved before music_tagging models were trained on
MUSIC_EMBEDDER_PREFIX = "musicnn-"  # tingyin.music.embedder names: musicnn-mtt, musicnn-mtt-msd, ...
UNKNOWN = "[unknown]"


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def head_logits(features: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    """Logits of standardised features through a linear head ([W, b]) or a one-hidden-layer MLP (loaded
    from versions trained before the ridge head)."""
    if len(weights) == 2:
        return features @ weights[0] + weights[1]
    hidden = np.maximum(features @ weights[0] + weights[1], 0.0)
    return hidden @ weights[2] + weights[3]


def feature_spec_of(embedder: Embedder) -> FeatureSpec:
    """The ``FeatureSpec`` an embedder computes (a Whisper, musicnn or combined embedder)."""
    from tingyin.sound.embeddings import SoundEmbedder

    if isinstance(embedder, FeatureExtractor):
        return embedder.spec
    if isinstance(embedder, SoundEmbedder):
        return FeatureSpec(whisper=embedder.spec, quantized=embedder.quantized)
    if embedder.name.startswith(MUSIC_EMBEDDER_PREFIX):
        return FeatureSpec(music=embedder.name)
    raise InvalidRequest(f"embedder {embedder.name!r} cannot be recorded in a classifier")


@dataclass(frozen=True)
class OpenSet:
    """What the familiarity of a clip is computed from (see the module docstring)."""

    centroids: np.ndarray  # (classes, dim): unit-length class means of the normalised features
    logit_mean: float
    logit_std: float
    cosine_mean: float
    cosine_std: float
    calibration: np.ndarray  # sorted typicality of the training clips, each scored without itself
    default_threshold: float

    def typicality(self, features: np.ndarray, logits: np.ndarray) -> np.ndarray:
        unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        cosine = (unit @ self.centroids.T).max(axis=1)
        return (logits.max(axis=1) - self.logit_mean) / self.logit_std + (
            cosine - self.cosine_mean
        ) / self.cosine_std

    def familiarity(self, features: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """Per row: the fraction of training clips less typical than it, in [0, 1]."""
        typical = self.typicality(features, logits)
        return (np.searchsorted(self.calibration, typical, side="right") / len(self.calibration)).astype(
            np.float32
        )


class Prediction(NamedTuple):
    scores: np.ndarray  # (classes,) calibrated probabilities, in the order of ``classes``
    familiarity: float | None  # None for classifiers without an open-set model


@dataclass
class TrainedClassifier:
    """Classes, the features it was trained on, feature standardisation, head and calibration."""

    classes: list[str]
    features: FeatureSpec
    mean: np.ndarray
    scale: np.ndarray
    weights: list[np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    # Rows are scaled to length sqrt(dim) after standardisation (a cosine geometry; see training.py).
    normalize_rows: bool = False
    open_set: OpenSet | None = None

    @property
    def is_music(self) -> bool:
        return self.features.whisper is None and self.features.music is not None

    @property
    def head_kind(self) -> str:
        return "linear" if len(self.weights) == 2 else "mlp"

    def embedder(self) -> Embedder:
        if self.features.whisper is not None and self.features.music is None:
            from tingyin.sound.embeddings import get_embedder

            return get_embedder(self.features.whisper, quantized=self.features.quantized)
        if self.is_music:
            from tingyin.music.embedder import get_music_embedder

            return get_music_embedder(str(self.features.music))
        return FeatureExtractor(self.features)

    def standardise(self, embeddings: np.ndarray) -> np.ndarray:
        features = (np.asarray(embeddings, dtype=np.float32) - self.mean) / self.scale
        if self.normalize_rows:
            norms = np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
            features = features * (np.float32(np.sqrt(features.shape[1])) / norms)
        return features.astype(np.float32)

    def predict_embeddings(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(scores (n, classes), familiarity (n,) or None) for embeddings (n, dim)."""
        features = self.standardise(embeddings)
        logits = head_logits(features, self.weights)
        scores = softmax(logits / self.temperature).astype(np.float32)
        familiarity = self.open_set.familiarity(features, logits) if self.open_set is not None else None
        return scores, familiarity

    def scores_from_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Class probabilities (n, classes) for embeddings (n, dim)."""
        return self.predict_embeddings(embeddings)[0]

    def classify(self, audio: np.ndarray) -> Prediction:
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim == 2:  # (channels, n): classify the mix, as training does
            samples = samples.mean(axis=0)
        samples = samples.reshape(-1)
        if samples.size == 0:
            raise InvalidRequest("the audio is empty")
        scores, familiarity = self.predict_embeddings(self.embedder().embed(samples)[None])
        return Prediction(scores[0], float(familiarity[0]) if familiarity is not None else None)

    def resolve_threshold(self, threshold: float | str | None) -> float | None:
        """``None``/"off": no unknown answer; "auto": this version's default; a number in [0, 1)."""
        if threshold is None or threshold == "off":
            return None
        if threshold == "auto":
            return self.open_set.default_threshold if self.open_set is not None else None
        if isinstance(threshold, str) or not 0.0 <= float(threshold) < 1.0:
            raise InvalidRequest('unknown_threshold must be "off", "auto" or a number in [0, 1)')
        return float(threshold)

    def predict(
        self, audio: np.ndarray, top_num: int = 6, unknown_threshold: float | str | None = None
    ) -> list[tuple[str, float]]:
        """The ``top_num`` best classes for 16 kHz mono float32 ``audio``, best first. With a threshold
        and a familiarity below it, ``UNKNOWN`` comes first, scored ``1 - familiarity``."""
        if top_num < 1:
            raise InvalidRequest("top_num must be at least 1")
        threshold = self.resolve_threshold(unknown_threshold)
        prediction = self.classify(audio)
        order = np.argsort(-prediction.scores, kind="stable")
        ranked = [(self.classes[i], float(prediction.scores[i])) for i in order]
        familiarity = prediction.familiarity
        if threshold is not None and familiarity is not None and familiarity < threshold:
            ranked.insert(0, (UNKNOWN, 1.0 - familiarity))
        return ranked[:top_num]

    # -- persistence -------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {"mean": self.mean, "scale": self.scale}
        arrays.update({f"weight_{i}": weight for i, weight in enumerate(self.weights)})
        open_set: dict[str, Any] | None = None
        if self.open_set is not None:
            arrays["open_set_centroids"] = self.open_set.centroids
            arrays["open_set_calibration"] = self.open_set.calibration
            open_set = {
                "logit_mean": self.open_set.logit_mean,
                "logit_std": self.open_set.logit_std,
                "cosine_mean": self.open_set.cosine_mean,
                "cosine_std": self.open_set.cosine_std,
                "default_threshold": self.open_set.default_threshold,
            }
        np.savez(directory / HEAD_FILE, **arrays)  # type: ignore[arg-type]
        features = self.features.to_dict()
        meta = {
            "format_version": FORMAT_VERSION,
            "classes": self.classes,
            "features": features,
            # The format-1 record, kept so that a reader of format 1 finds what it knows.
            "embedder": {
                "name": WHISPER_EMBEDDER if self.features.whisper is not None else self.features.music,
                "layers": list(self.features.whisper.layers) if self.features.whisper else [],
                "quantized": self.features.quantized if self.features.whisper else False,
            },
            "head": self.head_kind,
            "weight_count": len(self.weights),
            "temperature": self.temperature,
            "normalize_rows": self.normalize_rows,
            "open_set": open_set,
            "info": self.info,
        }
        (directory / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> TrainedClassifier:
        meta_path = directory / META_FILE
        if not meta_path.exists():
            raise NotFound(f"no trained classifier in {directory.name}")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format_version") not in READABLE_FORMATS:
            raise InvalidRequest(f"classifier format {meta.get('format_version')} is not supported")
        with np.load(directory / HEAD_FILE, allow_pickle=False) as arrays:
            weights = [arrays[f"weight_{i}"].astype(np.float32) for i in range(int(meta["weight_count"]))]
            mean = arrays["mean"].astype(np.float32)
            scale = arrays["scale"].astype(np.float32)
            open_set = None
            if meta.get("open_set"):
                stats = meta["open_set"]
                open_set = OpenSet(
                    centroids=arrays["open_set_centroids"].astype(np.float32),
                    logit_mean=float(stats["logit_mean"]),
                    logit_std=float(stats["logit_std"]),
                    cosine_mean=float(stats["cosine_mean"]),
                    cosine_std=float(stats["cosine_std"]),
                    calibration=arrays["open_set_calibration"].astype(np.float32),
                    default_threshold=float(stats["default_threshold"]),
                )
        return cls(
            classes=list(meta["classes"]),
            features=_features_of(meta),
            mean=mean,
            scale=scale,
            weights=weights,
            info=dict(meta.get("info") or {}),
            temperature=float(meta.get("temperature", 1.0)),
            normalize_rows=bool(meta.get("normalize_rows", False)),
            open_set=open_set,
        )

    # -- export ----------------------------------------------------------------------------------------
    def export_onnx(self, directory: Path) -> tuple[Path, Path]:
        """Write ``sound_classifier.onnx`` (audio -> scores, the whole pipeline) and ``labels.txt``.

        Input ``audio``: float32 [batch, samples], 16 kHz mono in [-1, 1] (clips of one batch must be of
        equal length; use batch 1 otherwise; classifiers with a musicnn part take batch 1 only). Outputs:
        ``scores`` float32 [batch, classes], calibrated softmax, in the order of ``labels.txt`` (one class
        name per line); ``familiarity`` float32 [batch] (open-set p-value, see the module docstring; all
        ones for a classifier trained without one). Only onnxruntime is needed to run it.
        """
        import onnx
        from onnx import helper, numpy_helper

        model = FeatureExtractor(self.features).onnx_model()
        graph = model.graph
        while graph.output:
            graph.output.pop()  # the embedding becomes an intermediate value
        nodes = []
        constants: dict[str, np.ndarray] = {
            "head_mean": self.mean.astype(np.float32),
            "head_scale": self.scale.astype(np.float32),
            "head_temperature": np.asarray(self.temperature, dtype=np.float32),
            "head_sqrt_dim": np.asarray(np.sqrt(self.mean.shape[0]), dtype=np.float32),
            "head_axes": np.asarray([1], dtype=np.int64),
            "head_tiny": np.asarray(1e-12, dtype=np.float32),
        }
        nodes.append(helper.make_node("Sub", ["embedding", "head_mean"], ["head_centred"]))
        nodes.append(helper.make_node("Div", ["head_centred", "head_scale"], ["head_standard"]))
        features = "head_standard"
        if self.normalize_rows:
            nodes += [
                helper.make_node("ReduceL2", ["head_standard", "head_axes"], ["head_norm"], keepdims=1),
                helper.make_node("Max", ["head_norm", "head_tiny"], ["head_norm_safe"]),
                helper.make_node("Div", ["head_standard", "head_norm_safe"], ["head_unit"]),
                helper.make_node("Mul", ["head_unit", "head_sqrt_dim"], ["head_features"]),
            ]
            features = "head_features"
        current = features
        layers = len(self.weights) // 2
        for layer in range(layers):
            constants[f"head_w{layer}"] = self.weights[2 * layer].astype(np.float32)
            constants[f"head_b{layer}"] = self.weights[2 * layer + 1].astype(np.float32)
            nodes.append(helper.make_node("MatMul", [current, f"head_w{layer}"], [f"head_mm{layer}"]))
            nodes.append(helper.make_node("Add", [f"head_mm{layer}", f"head_b{layer}"], [f"head_out{layer}"]))
            current = f"head_out{layer}"
            if layer < layers - 1:
                nodes.append(helper.make_node("Relu", [current], [f"head_relu{layer}"]))
                current = f"head_relu{layer}"
        nodes.append(helper.make_node("Div", [current, "head_temperature"], ["head_scaled"]))
        nodes.append(helper.make_node("Softmax", ["head_scaled"], ["scores"], axis=-1))
        nodes += self._familiarity_nodes(features, current, constants)
        graph.node.extend(nodes)
        graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in constants.items())
        batch = "1" if self.features.music is not None else "batch"
        graph.output.append(
            helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [batch, len(self.classes)])
        )
        graph.output.append(helper.make_tensor_value_info("familiarity", onnx.TensorProto.FLOAT, [batch]))
        graph.name = "tingyin_sound_classifier"
        del model.metadata_props[:]
        for key, value in {
            "labels": json.dumps(self.classes, ensure_ascii=False),
            "input": f"audio: float32 [{batch}, samples], 16 kHz mono, range [-1, 1]",
            "output": "scores: float32 [batch, classes], calibrated softmax, order of labels; "
            "familiarity: float32 [batch], open-set p-value (below the threshold: unknown)",
            "default_unknown_threshold": str(self.open_set.default_threshold if self.open_set else ""),
            "producer": "tingyin music tagging" if self.is_music else "tingyin sound classification",
            "features": self.features.key,
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

    def _familiarity_nodes(self, features: str, logits: str, constants: dict[str, np.ndarray]) -> list[Any]:
        """ONNX nodes computing ``familiarity`` [batch] as ``OpenSet.familiarity`` does."""
        from onnx import helper

        node = helper.make_node
        if self.open_set is None:  # ones of shape [batch]
            constants["fam_zero_f"] = np.asarray(0.0, dtype=np.float32)
            constants["fam_one"] = np.asarray(1.0, dtype=np.float32)
            return [
                node("ReduceMax", [logits, "head_axes"], ["fam_any"], keepdims=0),
                node("Mul", ["fam_any", "fam_zero_f"], ["fam_zero"]),
                node("Add", ["fam_zero", "fam_one"], ["familiarity"]),
            ]
        open_set = self.open_set
        constants.update(
            {
                "fam_centroids_t": open_set.centroids.T.astype(np.float32),
                "fam_logit_mean": np.asarray(open_set.logit_mean, dtype=np.float32),
                "fam_logit_std": np.asarray(open_set.logit_std, dtype=np.float32),
                "fam_cos_mean": np.asarray(open_set.cosine_mean, dtype=np.float32),
                "fam_cos_std": np.asarray(open_set.cosine_std, dtype=np.float32),
                "fam_calibration": open_set.calibration.astype(np.float32)[None, :],  # [1, m]
            }
        )
        return [
            node("ReduceL2", [features, "head_axes"], ["fam_norm"], keepdims=1),
            node("Max", ["fam_norm", "head_tiny"], ["fam_norm_safe"]),
            node("Div", [features, "fam_norm_safe"], ["fam_unit"]),
            node("MatMul", ["fam_unit", "fam_centroids_t"], ["fam_cosines"]),
            node("ReduceMax", ["fam_cosines", "head_axes"], ["fam_cos"], keepdims=1),
            node("ReduceMax", [logits, "head_axes"], ["fam_logit"], keepdims=1),
            node("Sub", ["fam_logit", "fam_logit_mean"], ["fam_l1"]),
            node("Div", ["fam_l1", "fam_logit_std"], ["fam_l2"]),
            node("Sub", ["fam_cos", "fam_cos_mean"], ["fam_c1"]),
            node("Div", ["fam_c1", "fam_cos_std"], ["fam_c2"]),
            node("Add", ["fam_l2", "fam_c2"], ["fam_typical"]),  # [batch, 1]
            # p = mean over calibration values of (value <= typicality), as searchsorted(side="right").
            node("LessOrEqual", ["fam_calibration", "fam_typical"], ["fam_below"]),  # [batch, m]
            node("Cast", ["fam_below"], ["fam_below_f"], to=1),
            node("ReduceMean", ["fam_below_f", "head_axes"], ["familiarity"], keepdims=0),
        ]


def _features_of(meta: dict[str, Any]) -> FeatureSpec:
    """The feature set recorded in ``classifier.json`` (format 2), or derived from format 1's embedder."""
    if meta.get("features"):
        return FeatureSpec.from_dict(meta["features"])
    embedder = meta.get("embedder") or {}  # absent: saved by a Whisper-only version
    name = str(embedder.get("name") or WHISPER_EMBEDDER)
    if name.startswith(MUSIC_EMBEDDER_PREFIX):
        return FeatureSpec(music=name)
    if name != WHISPER_EMBEDDER:
        raise InvalidRequest(f"unknown embedder {name!r} in the classifier")
    layers = tuple(int(layer) for layer in embedder.get("layers", (1, 2, 3)))
    return FeatureSpec(whisper=EmbedderSpec(layers=layers), quantized=bool(embedder.get("quantized", True)))
