"""Training a sound classifier: frozen embeddings (cached) + a small head fitted with L-BFGS in numpy.

Steps: decode and embed every clip (cache by sha256), add audio-level variants for small datasets and
embedding mixup, hold out a stratified 20 % to evaluate, then fit the final head on all clips (the
report describes the held-out run; the served head has seen every clip). Class weights balance the
loss so a class with few clips is not drowned by big ones. ``init_from`` continues from a version: same
classes (new ones appended), same feature standardisation, and the optimiser starts from its weights.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from tingyin.errors import InvalidRequest
from tingyin.sound.augment import AUDIO_AUGMENT_MAX_CLIPS, mixup_embeddings, random_audio_variant
from tingyin.sound.classifier import TrainedClassifier, embedder_identity, head_logits, softmax
from tingyin.sound.embeddings import Embedder, EmbeddingCache, embed_clips, get_embedder
from tingyin.sound.evaluation import EvaluationReport, evaluate_predictions
from tingyin.sound.types import LabeledClip, TrainingCancelled

__all__ = [
    "HeadConfig",
    "LabeledClip",
    "TrainingCancelled",
    "TrainingResult",
    "fit_head",
    "stratified_split",
    "train_classifier",
]

ProgressCallback = Callable[[float, str], None]
CancelCallback = Callable[[], bool]


@dataclass(frozen=True)
class HeadConfig:
    """The head and its regularisation. ``c`` plays the role of scikit-learn's C (larger: less L2)."""

    hidden: int = 0  # 0: logistic regression; > 0: one hidden ReLU layer of this width
    c: float = 0.05
    max_iter: int = 300
    mixup_ratio: float = 1.0  # mixed samples added per training sample
    held_out_fraction: float = 0.2
    audio_augment_max_clips: int = AUDIO_AUGMENT_MAX_CLIPS


@dataclass
class TrainingResult:
    classifier: TrainedClassifier
    report: EvaluationReport
    train_count: int  # distinct clips used for the final head
    held_out_count: int
    augmented_count: int  # audio-level variants embedded
    timings: dict[str, float] = field(default_factory=dict)


def stratified_split(
    labels: Sequence[int] | np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, held_out) indices: ``fraction`` of each class held out, at least one where a class has 2+."""
    rng = np.random.default_rng(seed)
    labels_array = np.asarray(labels)
    held: list[int] = []
    for label in np.unique(labels_array):
        members = np.flatnonzero(labels_array == label)
        if len(members) < 2:
            continue
        take = min(len(members) - 1, max(1, round(fraction * len(members))))
        held.extend(rng.choice(members, size=take, replace=False).tolist())
    held_out = np.asarray(sorted(held), dtype=np.int64)
    train = np.setdiff1d(np.arange(len(labels_array)), held_out)
    return train, held_out


def _pack(weights: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([w.ravel() for w in weights]).astype(np.float64)


def _unpack(flat: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    out, position = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(flat[position : position + size].reshape(shape))
        position += size
    return out


def fit_head(
    features: np.ndarray,
    targets: np.ndarray,
    sample_weights: np.ndarray,
    config: HeadConfig,
    *,
    init: list[np.ndarray] | None = None,
    seed: int = 0,
    cancel: CancelCallback | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Minimise weighted soft-target cross-entropy + L2 over standardised ``features`` (n, d)."""
    n, dim = features.shape
    classes = targets.shape[1]
    rng = np.random.default_rng(seed)
    if config.hidden > 0:
        shapes = [(dim, config.hidden), (config.hidden,), (config.hidden, classes), (classes,)]
        start = init or [
            rng.standard_normal(shapes[0]) * np.sqrt(2.0 / dim),
            np.zeros(shapes[1]),
            rng.standard_normal(shapes[2]) * np.sqrt(1.0 / config.hidden),
            np.zeros(shapes[3]),
        ]
    else:
        shapes = [(dim, classes), (classes,)]
        start = init or [np.zeros(shapes[0]), np.zeros(shapes[1])]
    l2 = 1.0 / (config.c * max(n, 1))
    weight_sum = float(sample_weights.sum())
    x = features.astype(np.float64)
    t = targets.astype(np.float64)
    sw = (sample_weights / weight_sum).astype(np.float64)[:, None]
    iterations = [0]

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        if cancel is not None and cancel():
            raise TrainingCancelled("training was cancelled")
        params = _unpack(flat, shapes)
        if config.hidden > 0:
            pre = x @ params[0] + params[1]
            hidden = np.maximum(pre, 0.0)
            logits = hidden @ params[2] + params[3]
        else:
            logits = x @ params[0] + params[1]
        probs = softmax(logits)
        loss = -float(np.sum(sw * t * np.log(np.clip(probs, 1e-12, None))))
        grad_logits = sw * (probs * t.sum(axis=1, keepdims=True) - t)
        if config.hidden > 0:
            grad_w2 = hidden.T @ grad_logits
            grad_b2 = grad_logits.sum(axis=0)
            grad_hidden = (grad_logits @ params[2].T) * (pre > 0)
            grads = [x.T @ grad_hidden, grad_hidden.sum(axis=0), grad_w2, grad_b2]
            penalised: tuple[int, ...] = (0, 2)
        else:
            grads = [x.T @ grad_logits, grad_logits.sum(axis=0)]
            penalised = (0,)
        for index in penalised:
            loss += 0.5 * l2 * float(np.sum(params[index] ** 2))
            grads[index] = grads[index] + l2 * params[index]
        return loss, _pack(grads)

    def on_iteration(_: np.ndarray) -> None:
        iterations[0] += 1
        if progress is not None:
            progress(iterations[0])

    # Small matrices: one BLAS thread is many times faster than two fighting over a busy CPU.
    with threadpool_limits(limits=1, user_api="blas"):
        result = minimize(
            objective,
            _pack([np.asarray(w, dtype=np.float64) for w in start]),
            jac=True,
            method="L-BFGS-B",
            callback=on_iteration,
            options={"maxiter": config.max_iter},
        )
    return [w.astype(np.float32) for w in _unpack(result.x, shapes)]


def _class_weights(labels: np.ndarray, classes: int) -> np.ndarray:
    """Per-class weights inversely proportional to frequency, mean 1 over present classes."""
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(classes)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return weights


def _resolve_classes(
    clips: Sequence[LabeledClip], classes: Sequence[str] | None, init_from: TrainedClassifier | None
) -> list[str]:
    if init_from is not None:
        resolved = list(init_from.classes)
        resolved += [name for name in (classes or []) if name not in resolved]
    elif classes is not None:
        resolved = list(dict.fromkeys(classes))
    else:
        resolved = sorted({clip.label for clip in clips})
    if len(resolved) < 2:
        raise InvalidRequest("training needs at least 2 classes")
    return resolved


def train_classifier(
    clips: Sequence[LabeledClip],
    *,
    classes: Sequence[str] | None = None,
    init_from: TrainedClassifier | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
    seed: int = 0,
    cache_dir: Path | None = None,
    embedder: Embedder | None = None,
    config: HeadConfig | None = None,
) -> TrainingResult:
    """Train a classifier on ``clips`` restricted to ``classes`` (default: every label present).

    Raises ``InvalidRequest`` for fewer than 2 classes or a class without clips, ``TrainingCancelled``
    when ``cancel()`` turns true, and the audio errors of ``tingyin.audio.decode`` for unreadable clips.
    """
    config = config or HeadConfig()
    started = time.perf_counter()
    class_names = _resolve_classes(clips, classes, init_from)
    index_of = {name: position for position, name in enumerate(class_names)}
    # One entry per distinct content: a duplicate must not sit on both sides of the split.
    unique: dict[str, LabeledClip] = {}
    for clip in clips:
        if clip.label in index_of:
            unique.setdefault(clip.content_hash, clip)
    chosen = list(unique.values())
    counts = Counter(clip.label for clip in chosen)
    empty = [
        name
        for name in class_names
        if counts[name] == 0 and (init_from is None or name not in init_from.classes)
    ]
    if empty:
        raise InvalidRequest(f"no clips for class(es): {', '.join(empty)}")
    if len([name for name in class_names if counts[name] > 0]) < 2:
        raise InvalidRequest("training needs clips of at least 2 classes")

    def report_progress(fraction: float, message: str) -> None:
        if progress is not None:
            progress(min(1.0, max(0.0, fraction)), message)

    if init_from is not None:
        embedder = embedder or init_from.embedder()
        if embedder_identity(embedder).model != init_from.embedder_model:
            raise InvalidRequest("a version can only iterate from one trained on the same embedder")
    embedder = embedder or get_embedder()
    cache = EmbeddingCache(cache_dir) if cache_dir is not None else None
    augment = len(chosen) <= config.audio_augment_max_clips
    embed_share = 0.45 if augment else 0.85
    report_progress(0.0, "computing embeddings")
    features = embed_clips(
        chosen,
        embedder=embedder,
        cache=cache,
        progress=lambda f, m: report_progress(embed_share * f, m),
        cancel=cancel,
    )
    embed_done = time.perf_counter()
    augmented = np.zeros((0, features.shape[1]), dtype=np.float32)
    if augment:

        def variant(audio: np.ndarray, index: int) -> np.ndarray:
            digest = int(chosen[index].content_hash[:16], 16)
            return random_audio_variant(audio, np.random.default_rng([digest, seed]))

        augmented = embed_clips(
            chosen,
            embedder=embedder,
            cache=cache,
            augmenter=variant,
            variant=f"aug{seed}",
            progress=lambda f, m: report_progress(0.45 + 0.4 * f, "augmenting: " + m),
            cancel=cancel,
        )
    augment_done = time.perf_counter()
    labels = np.asarray([index_of[clip.label] for clip in chosen], dtype=np.int64)

    if init_from is not None:
        mean, scale = init_from.mean, init_from.scale
    else:
        mean = features.mean(axis=0)
        scale = features.std(axis=0) + 1e-6
    standard = (features - mean) / scale
    standard_aug = (augmented - mean) / scale if len(augmented) else augmented
    eye = np.eye(len(class_names), dtype=np.float32)

    def initial_weights() -> list[np.ndarray] | None:
        if init_from is None:
            return None
        previous = [w.astype(np.float64) for w in init_from.weights]
        extra = len(class_names) - len(init_from.classes)
        if extra:
            previous[-2] = np.concatenate([previous[-2], np.zeros((previous[-2].shape[0], extra))], axis=1)
            previous[-1] = np.concatenate([previous[-1], np.zeros(extra)])
        return previous

    def fit(indices: np.ndarray, fit_seed: int, share: tuple[float, float]) -> list[np.ndarray]:
        rng = np.random.default_rng(fit_seed)
        x = standard[indices]
        y = eye[labels[indices]]
        if len(standard_aug):
            x = np.concatenate([x, standard_aug[indices]])
            y = np.concatenate([y, eye[labels[indices]]])
        mixed_x, mixed_y = mixup_embeddings(x, y, int(config.mixup_ratio * len(x)), rng)
        x = np.concatenate([x, mixed_x])
        y = np.concatenate([y, mixed_y])
        class_weight = _class_weights(labels[indices], len(class_names))
        sample_weight = y @ class_weight
        low, high = share
        return fit_head(
            x,
            y,
            sample_weight,
            config,
            init=initial_weights(),
            seed=fit_seed,
            cancel=cancel,
            progress=lambda it: report_progress(
                low + (high - low) * min(1.0, it / config.max_iter), "fitting"
            ),
        )

    train_idx, held_idx = stratified_split(labels, config.held_out_fraction, seed)
    fit_start = time.perf_counter()
    split_weights = fit(train_idx, seed, (0.85, 0.92))
    if len(held_idx):
        scores = softmax(head_logits(standard[held_idx], split_weights))
        predicted = [class_names[i] for i in scores.argmax(axis=1)]
        truth = [class_names[i] for i in labels[held_idx]]
        confidence = [float(v) for v in scores.max(axis=1)]
    else:
        predicted, truth, confidence = [], [], []
    report = evaluate_predictions(
        truth,
        predicted,
        class_names,
        {name: counts[name] for name in class_names},
        train_count=len(train_idx),
        clip_hashes=[chosen[i].content_hash for i in held_idx],
        scores=confidence,
    )
    final_weights = fit(np.arange(len(chosen)), seed + 1, (0.92, 1.0))
    finished = time.perf_counter()
    identity = embedder_identity(embedder)
    classifier = TrainedClassifier(
        classes=class_names,
        embedder_layers=identity.layers,
        quantized=identity.quantized,
        embedder_model=identity.model,
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        weights=final_weights,
        info={
            "trained_clips": len(chosen),
            "class_counts": {name: counts[name] for name in class_names},
            "head": "linear" if config.hidden == 0 else f"mlp{config.hidden}",
            "c": config.c,
            "seed": seed,
            "init_from": init_from.info.get("version") if init_from is not None else None,
        },
    )
    report_progress(1.0, "done")
    return TrainingResult(
        classifier=classifier,
        report=report,
        train_count=len(chosen),
        held_out_count=len(held_idx),
        augmented_count=len(augmented),
        timings={
            "embed_s": round(embed_done - started, 3),
            "augment_s": round(augment_done - embed_done, 3),
            "fit_s": round(finished - fit_start, 3),
            "total_s": round(finished - started, 3),
        },
    )
