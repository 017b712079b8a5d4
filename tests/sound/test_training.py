"""Training on real ESC-10 clips through the frozen Whisper encoder: accuracy, iteration, cancel, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tingyin.audio import decode
from tingyin.sound.classifier import TrainedClassifier
from tingyin.sound.evaluation import SMALL_CLASS_CAUTION_ZH
from tingyin.sound.training import LabeledClip, TrainingCancelled, TrainingResult, train_classifier

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sound"
CLASSES = ["dog_bark", "rain", "rooster"]

pytestmark = pytest.mark.slow


def fixture_clips(classes: list[str] = CLASSES) -> list[LabeledClip]:
    return [
        LabeledClip.from_path(path, label)
        for label in classes
        for path in sorted((FIXTURES / label).glob("*.flac"))
    ]


def assert_same_ranking(got: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    """Same labels in the same order, scores equal within float tolerance (``approx`` takes no nested
    data since pytest 9.2, so labels and scores are compared apart)."""
    assert [label for label, _ in got] == [label for label, _ in expected]
    assert [score for _, score in got] == pytest.approx([score for _, score in expected])


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture(scope="module")
def trained(cache_dir: Path) -> TrainingResult:
    steps: list[float] = []
    result = train_classifier(
        fixture_clips(),
        classes=None,
        init_from=None,
        progress=lambda f, _: steps.append(f),
        cancel=None,
        seed=0,
        cache_dir=cache_dir,
    )
    assert steps[0] == 0.0 and steps[-1] == 1.0 and steps == sorted(steps)
    return result


def test_held_out_accuracy_well_above_chance(trained: TrainingResult) -> None:
    report = trained.report
    assert trained.classifier.classes == CLASSES
    assert report.held_out_count == 6  # 20 % of 8 clips per class, stratified
    assert report.accuracy >= 0.8  # chance is 1/3
    assert sum(map(sum, report.confusion_matrix)) == report.held_out_count
    assert [m.support for m in report.per_class] == [2, 2, 2]
    # Every class has fewer than 100 clips: the seed's caution is attached.
    assert report.caution == SMALL_CLASS_CAUTION_ZH and report.small_classes == CLASSES
    json.dumps(report.to_dict())  # JSON-serialisable
    assert trained.augmented_count == 24  # small dataset: one audio variant per clip


def test_predict_sorted_and_right_on_training_clips(trained: TrainingResult) -> None:
    clip = sorted((FIXTURES / "rooster").glob("*.flac"))[0]
    result = trained.classifier.predict(decode(clip).samples, top_num=2)
    assert len(result) == 2 and result[0][0] == "rooster"
    assert result[0][1] >= result[1][1]
    full = trained.classifier.predict(decode(clip).samples, top_num=10)
    assert len(full) == 3 and abs(sum(score for _, score in full) - 1.0) < 1e-4


def test_long_and_short_clips_are_handled(trained: TrainingResult) -> None:
    rain = decode(sorted((FIXTURES / "rain").glob("*.flac"))[0]).samples
    long_clip = np.tile(rain, 8)  # 40 s: two 30 s windows, pooled
    assert trained.classifier.predict(long_clip, top_num=1)[0][0] == "rain"
    short = trained.classifier.predict(rain[:4000], top_num=3)  # 0.25 s: padded to 1 s
    assert len(short) == 3


def test_save_load_round_trip(trained: TrainingResult, tmp_path: Path) -> None:
    trained.classifier.save(tmp_path / "v1")
    loaded = TrainedClassifier.load(tmp_path / "v1")
    assert loaded.classes == trained.classifier.classes
    audio = decode(sorted((FIXTURES / "dog_bark").glob("*.flac"))[0]).samples
    assert_same_ranking(loaded.predict(audio, 3), trained.classifier.predict(audio, 3))


def test_iterate_from_version_keeps_classes(trained: TrainingResult, cache_dir: Path) -> None:
    # V2 from V1 on a subset of the data with one class missing: V1's classes and order stay.
    subset = [clip for clip in fixture_clips() if clip.label != "rain"]
    result = train_classifier(
        subset,
        classes=None,
        init_from=trained.classifier,
        progress=None,
        cancel=None,
        seed=1,
        cache_dir=cache_dir,
    )
    assert result.classifier.classes == CLASSES
    assert result.classifier.mean == pytest.approx(trained.classifier.mean)
    rain = decode(sorted((FIXTURES / "rain").glob("*.flac"))[0]).samples
    assert len(result.classifier.predict(rain, 6)) == 3


def test_cancel_raises_typed_error(cache_dir: Path) -> None:
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(TrainingCancelled):
        train_classifier(
            fixture_clips(),
            classes=None,
            init_from=None,
            progress=None,
            cancel=cancel,
            seed=0,
            cache_dir=cache_dir,
        )


def test_fewer_than_two_classes_is_refused(cache_dir: Path) -> None:
    from tingyin.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        train_classifier(
            fixture_clips(["rain"]),
            classes=None,
            init_from=None,
            progress=None,
            cancel=None,
            cache_dir=cache_dir,
        )


def test_onnx_export_runs_in_onnxruntime_and_matches(trained: TrainingResult, tmp_path: Path) -> None:
    import onnxruntime as ort

    onnx_path, labels_path = trained.classifier.export_onnx(tmp_path / "export")
    labels = labels_path.read_text(encoding="utf-8").split()
    assert labels == CLASSES
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    for label in CLASSES:
        audio = decode(sorted((FIXTURES / label).glob("*.flac"))[-1]).samples
        (scores,) = session.run(["scores"], {"audio": audio[None].astype(np.float32)})
        expected = dict(trained.classifier.predict(audio, top_num=3))
        assert scores.shape == (1, 3)
        assert scores[0] == pytest.approx([expected[name] for name in labels], abs=1e-4)


def test_fold_evaluation_script_on_fixture_manifest(cache_dir: Path) -> None:
    from tingyin.eval.sound import evaluate_esc10, format_sound_report

    result = evaluate_esc10(
        FIXTURES / "manifest.csv", folds=[1], cache_dir=cache_dir, timing_clips=0, latency_runs=3, log=None
    )
    assert [fold.fold for fold in result.folds] == [1]
    assert result.folds[0].test_clips == sum(1 for _ in (FIXTURES).glob("*/1-*.flac"))
    assert result.mean_accuracy >= 0.6
    assert result.inference_p50_ms > 0
    text = format_sound_report(result)
    assert "fold 1" in text and "mean accuracy" in text


def test_stereo_input_is_mixed_down(trained: TrainingResult) -> None:
    rain = decode(sorted((FIXTURES / "rain").glob("*.flac"))[1]).samples
    stereo = np.stack([rain, rain])
    assert_same_ranking(trained.classifier.predict(stereo, 3), trained.classifier.predict(rain, 3))
