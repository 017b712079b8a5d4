"""Sound classification figures on ESC-10: 5-fold accuracy, time to import + train 1,000 clips, latency.

Everything goes through the platform's own code: ``train_classifier`` (with its automatic held-out split
and final fit on all training clips), ``TrainedClassifier.predict``, and ``import_zip`` for the timing run.

The 1,000-clip timing set is synthesised from the manifest's clips: every original clip plus random
variants (time shift, ±6 dB gain, 10-30 dB SNR noise; distinct bytes, so nothing is deduplicated or
cached) until there are 1,000 clips of 5 s, zipped as WAV one folder per class. The timer covers
import (streamed checks + decoding every file) and training from an empty embedding cache.
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tingyin.audio import decode, encode_wav
from tingyin.errors import InvalidRequest
from tingyin.sound.augment import random_audio_variant
from tingyin.sound.dataset_zip import directory_writer, import_zip
from tingyin.sound.training import LabeledClip, TrainingConfig, train_classifier


@dataclass
class FoldResult:
    fold: int
    accuracy: float
    train_clips: int
    test_clips: int
    train_seconds: float


@dataclass
class SoundEvalResult:
    folds: list[FoldResult]
    mean_accuracy: float
    embedder: str
    head: str
    timing_clips: int = 0
    import_seconds: float = 0.0
    train_seconds: float = 0.0  # embed + fit of the timing run
    inference_p50_ms: float = 0.0
    inference_p90_ms: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class _Row:
    path: Path
    label: str
    fold: int


def _read_manifest(manifest: Path) -> list[_Row]:
    if not manifest.is_file():
        raise InvalidRequest(f"manifest {manifest} does not exist")
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = [
            _Row(manifest.parent / record["path"], record["label"], int(record["fold"]))
            for record in csv.DictReader(handle)
        ]
    if not rows:
        raise InvalidRequest(f"manifest {manifest} lists no clips")
    return rows


def _say(log: Callable[[str], None] | None, message: str) -> None:
    if log is not None:
        log(message)


def evaluate_esc10(
    manifest: Path,
    *,
    folds: Sequence[int] | None = None,
    cache_dir: Path | None = None,
    timing_clips: int = 1000,
    latency_runs: int = 30,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
    config: TrainingConfig | None = None,
) -> SoundEvalResult:
    """Train on the other folds and test on each fold in turn; then the timing and latency runs.

    ``cache_dir`` keeps embeddings between folds (and runs); ``timing_clips=0`` skips the timing run.
    """
    rows = _read_manifest(manifest)
    all_folds = sorted({row.fold for row in rows})
    test_folds = list(folds) if folds else all_folds
    with tempfile.TemporaryDirectory(prefix="tingyin-sound-eval-") as scratch:
        cache = cache_dir or Path(scratch) / "cache"
        clips = {row.path: LabeledClip.from_path(row.path, row.label) for row in rows}
        fold_results: list[FoldResult] = []
        classifier = None
        for fold in test_folds:
            train = [clips[row.path] for row in rows if row.fold != fold]
            test = [row for row in rows if row.fold == fold]
            started = time.perf_counter()
            result = train_classifier(train, seed=seed, cache_dir=cache, config=config)
            elapsed = time.perf_counter() - started
            classifier = result.classifier
            embedder = classifier.embedder()
            from tingyin.sound.embeddings import EmbeddingCache, embed_clips

            test_embeddings = embed_clips(
                [clips[row.path] for row in test], embedder=embedder, cache=EmbeddingCache(cache)
            )
            scores = classifier.scores_from_embeddings(test_embeddings)
            predicted = [classifier.classes[i] for i in scores.argmax(axis=1)]
            accuracy = float(np.mean([p == row.label for p, row in zip(predicted, test, strict=True)]))
            fold_results.append(
                FoldResult(fold, round(accuracy, 4), len(train), len(test), round(elapsed, 1))
            )
            _say(
                log,
                f"fold {fold}: accuracy {accuracy:.4f} ({len(test)} clips), trained in {elapsed:.1f} s, "
                f"features {classifier.features.key}",
            )
        assert classifier is not None
        mean = float(np.mean([f.accuracy for f in fold_results]))
        evaluation = SoundEvalResult(
            folds=fold_results,
            mean_accuracy=round(mean, 4),
            embedder=classifier.features.key,
            head=str(classifier.info.get("head")),
        )
        evaluation.notes.append(
            "test-fold clips are embedded with the same cached embedder; predictions via the trained head"
        )
        latencies = _latency(classifier, rows, latency_runs)
        evaluation.inference_p50_ms = round(float(np.percentile(latencies, 50)), 1)
        evaluation.inference_p90_ms = round(float(np.percentile(latencies, 90)), 1)
        _say(log, f"inference p50 {evaluation.inference_p50_ms} ms, p90 {evaluation.inference_p90_ms} ms")
        if timing_clips > 0:
            seconds_import, seconds_train = _timing_run(rows, timing_clips, Path(scratch), seed, config)
            evaluation.timing_clips = timing_clips
            evaluation.import_seconds = round(seconds_import, 1)
            evaluation.train_seconds = round(seconds_train, 1)
            _say(log, f"{timing_clips} clips: import {seconds_import:.1f} s, train {seconds_train:.1f} s")
    return evaluation


def _latency(classifier: object, rows: Sequence[_Row], runs: int) -> list[float]:
    """Milliseconds of ``predict`` (embedding included) on 5 s clips, after one warm-up call."""
    from tingyin.sound.classifier import TrainedClassifier

    assert isinstance(classifier, TrainedClassifier)
    audios = [decode(row.path).samples for row in rows[: max(1, runs)]]
    classifier.predict(audios[0], top_num=6)
    latencies = []
    for audio in audios[:runs]:
        started = time.perf_counter()
        classifier.predict(audio, top_num=6)
        latencies.append(1000 * (time.perf_counter() - started))
    return latencies


def _timing_run(
    rows: Sequence[_Row], count: int, scratch: Path, seed: int, config: TrainingConfig | None
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    archive_path = scratch / "timing.zip"
    with zipfile.ZipFile(archive_path, "w", compression=zipfile.ZIP_STORED) as archive:
        for index in range(count):
            row = rows[index % len(rows)]
            audio = decode(row.path).samples
            if index >= len(rows):
                audio = random_audio_variant(audio, rng)
            archive.writestr(f"{row.label}/{index:05d}.wav", encode_wav(audio))
    started = time.perf_counter()
    report = import_zip(archive_path, directory_writer(scratch / "timing-dataset"))
    imported = time.perf_counter()
    clips = [
        LabeledClip(scratch / "timing-dataset" / clip.file_name, clip.label, clip.content_hash)
        for clip in report.accepted
    ]
    train_classifier(clips, seed=seed, cache_dir=scratch / "tcache", config=config)
    trained = time.perf_counter()
    return imported - started, trained - imported


def format_sound_report(result: SoundEvalResult) -> str:
    lines = [f"ESC-10, official folds, features of the last fold {result.embedder}, head {result.head}"]
    for fold in result.folds:
        lines.append(
            f"  fold {fold.fold}: accuracy {fold.accuracy:.2%}  (train {fold.train_clips}, "
            f"test {fold.test_clips}, {fold.train_seconds:.1f} s)"
        )
    target = "met" if result.mean_accuracy >= 0.97 else "NOT met"
    lines.append(f"  mean accuracy {result.mean_accuracy:.2%}  (target >= 97%: {target})")
    lines.append(
        f"  inference on a 5 s clip: p50 {result.inference_p50_ms:.0f} ms, "
        f"p90 {result.inference_p90_ms:.0f} ms "
        f"(target p50 <= 100 ms: {'met' if result.inference_p50_ms <= 100 else 'NOT met'})"
    )
    if result.timing_clips:
        total = result.import_seconds + result.train_seconds
        lines.append(
            f"  {result.timing_clips} clips of 5 s: import {result.import_seconds:.0f} s + train "
            f"{result.train_seconds:.0f} s = {total:.0f} s "
            f"(target <= 60 s: {'met' if total <= 60 else 'NOT met'})"
        )
    lines.extend(f"  note: {note}" for note in result.notes)
    lines.append(f"  load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return "\n".join(lines)
