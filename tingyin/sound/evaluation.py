"""The evaluation report of a trained version: accuracy, per-class precision/recall/F1, confusion matrix.

The caution for small classes is the seed's own sentence (EasyDL sound classification, Step 4), with an
English rendering next to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Copied from the seed (Step4 校验模型效果). The seed says "张" (a measure word for images) here too.
SMALL_CLASS_CAUTION_ZH = "如果单个分类/标签的音频量在100张以内，这个数据基本参考意义不大。"
SMALL_CLASS_CAUTION_EN = (
    "If a single class/label has fewer than 100 audio clips, these figures are of little reference value."
)
SMALL_CLASS_THRESHOLD = 100


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    precision: float
    recall: float
    f1: float
    support: int  # held-out clips of this class
    clips: int  # clips of this class in the whole dataset


@dataclass(frozen=True)
class EvaluationReport:
    """Figures on the held-out clips; JSON-serialisable through ``to_dict``."""

    accuracy: float
    classes: list[str]
    per_class: list[ClassMetrics]
    # confusion[i][j]: held-out clips of class i predicted as class j.
    confusion_matrix: list[list[int]]
    class_counts: dict[str, int]
    train_count: int
    held_out_count: int
    macro_f1: float
    small_classes: list[str] = field(default_factory=list)
    caution: str | None = None
    caution_en: str | None = None
    # Held-out clips predicted wrongly: {content_hash, label, predicted, score} (the console plays them).
    misclassified: list[dict[str, Any]] = field(default_factory=list)
    # How the figures were obtained, and of which model (the served one: see training.py).
    method: str | None = None
    # Features chosen and candidates tried, penalty, calibration (temperature, log loss, ECE), ...
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationReport:
        values = dict(data)
        values["per_class"] = [ClassMetrics(**item) for item in values["per_class"]]
        return cls(**values)


def evaluate_predictions(
    true_labels: Sequence[str],
    predicted_labels: Sequence[str],
    classes: Sequence[str],
    class_counts: Mapping[str, int],
    *,
    train_count: int,
    clip_hashes: Sequence[str] | None = None,
    scores: Sequence[float] | None = None,
    method: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> EvaluationReport:
    """Build the report; ``class_counts`` are the dataset's clips per class (for the small-class caution).
    With ``clip_hashes`` (and the predicted class's ``scores``) of the held-out clips, the report lists
    the misclassified ones."""
    index = {name: position for position, name in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for truth, guess in zip(true_labels, predicted_labels, strict=True):
        confusion[index[truth], index[guess]] += 1
    total = int(confusion.sum())
    accuracy = float(np.trace(confusion) / total) if total else 0.0
    per_class = []
    for position, name in enumerate(classes):
        hits = int(confusion[position, position])
        predicted = int(confusion[:, position].sum())
        actual = int(confusion[position].sum())
        precision = hits / predicted if predicted else 0.0
        recall = hits / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append(
            ClassMetrics(
                name,
                round(precision, 6),
                round(recall, 6),
                round(f1, 6),
                actual,
                int(class_counts.get(name, 0)),
            )
        )
    small = [name for name in classes if class_counts.get(name, 0) < SMALL_CLASS_THRESHOLD]
    with_support = [metrics.f1 for metrics in per_class if metrics.support]
    return EvaluationReport(
        accuracy=round(accuracy, 6),
        classes=list(classes),
        per_class=per_class,
        confusion_matrix=confusion.tolist(),
        class_counts={name: int(class_counts.get(name, 0)) for name in classes},
        train_count=train_count,
        held_out_count=total,
        macro_f1=round(float(np.mean(with_support)) if with_support else 0.0, 6),
        small_classes=small,
        caution=SMALL_CLASS_CAUTION_ZH if small else None,
        caution_en=SMALL_CLASS_CAUTION_EN if small else None,
        misclassified=[
            {
                "content_hash": clip_hashes[i],
                "label": truth,
                "predicted": guess,
                "score": round(float(scores[i]), 6) if scores is not None else None,
            }
            for i, (truth, guess) in enumerate(zip(true_labels, predicted_labels, strict=True))
            if truth != guess and clip_hashes is not None
        ],
        method=method,
        details=dict(extra or {}),
    )
