"""Training on real ESC-10 clips through the frozen Whisper encoder: accuracy, feature selection,
calibration, open set, iteration, cancel, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tingyin.audio import decode, encode_wav
from tingyin.models import get_manager
from tingyin.sound.classifier import UNKNOWN, TrainedClassifier
from tingyin.sound.embeddings import SoundEmbedder, get_embedder
from tingyin.sound.evaluation import SMALL_CLASS_CAUTION_ZH
from tingyin.sound.features import CANDIDATES, DEFAULT_FEATURES, FeatureSpec, superset, whisper_columns
from tingyin.sound.training import (
    LabeledClip,
    TrainingCancelled,
    TrainingConfig,
    TrainingResult,
    choose_features,
    train_classifier,
    variant_passes,
)
from tingyin.sound.whisper_onnx import EmbedderSpec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sound"
CLASSES = ["dog_bark", "rain", "rooster"]
# One candidate and audio variants on: the same work whatever the machine's load (the budget decides
# otherwise, see test_selection_between_candidates).
FIXED = TrainingConfig(candidates=(DEFAULT_FEATURES,), augment=True)

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
        config=FIXED,
    )
    assert steps[0] == 0.0 and steps[-1] == 1.0 and steps == sorted(steps)
    return result


def test_leave_one_out_report_of_the_served_recipe(trained: TrainingResult) -> None:
    report = trained.report
    assert trained.classifier.classes == CLASSES
    assert report.held_out_count == 24  # every clip, each predicted without itself and its variant
    assert report.accuracy >= 0.8  # chance is 1/3
    assert sum(map(sum, report.confusion_matrix)) == report.held_out_count
    assert [m.support for m in report.per_class] == [8, 8, 8]
    assert report.method is not None and "leave-one-out" in report.method
    assert report.details["features"] == DEFAULT_FEATURES.key
    assert 0.0 <= report.details["expected_calibration_error"] <= 1.0
    # Every class has fewer than 100 clips: the seed's caution is attached.
    assert report.caution == SMALL_CLASS_CAUTION_ZH and report.small_classes == CLASSES
    json.dumps(report.to_dict())  # JSON-serialisable
    # Both kinds of variant were tried (augment=True); mix adds one variant per clip, speed two (one
    # faster, one slower).
    assert set(report.details["variant_checks"]) == {"none", "mix", "speed"}
    kept = report.details["variants"]
    assert kept and set(kept) <= {"mix", "speed"}
    assert trained.augmented_count == 24 * sum(len(variant_passes(kind)) for kind in kept)


def test_scores_are_calibrated_not_saturated(trained: TrainingResult) -> None:
    clip = sorted((FIXTURES / "rooster").glob("*.flac"))[0]
    scores = trained.classifier.classify(decode(clip).samples).scores
    # 24 clips cannot justify certainty: the smoothed temperature keeps the best score below 1.
    assert 0.5 < scores.max() < 0.9999 and abs(float(scores.sum()) - 1.0) < 1e-5


def test_unknown_answer_for_a_clip_unlike_every_class(trained: TrainingResult) -> None:
    rate = 16000
    time = np.arange(5 * rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * time)).astype(np.float32)  # a pure tone: no dog, rain or rooster
    classifier = trained.classifier
    assert classifier.open_set is not None and classifier.open_set.default_threshold == 0.05
    familiarity = classifier.classify(tone).familiarity
    assert familiarity is not None and familiarity < 0.05
    assert classifier.predict(tone, top_num=2, unknown_threshold="auto")[0][0] == UNKNOWN
    assert classifier.predict(tone, top_num=2)[0][0] in CLASSES  # off unless asked for
    rooster = decode(sorted((FIXTURES / "rooster").glob("*.flac"))[1]).samples
    assert classifier.predict(rooster, top_num=1, unknown_threshold="auto")[0][0] == "rooster"


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
        config=FIXED,
    )
    assert result.classifier.classes == CLASSES
    assert result.classifier.features == trained.classifier.features
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
            config=FIXED,
        )


def test_the_shared_embedder_counts_as_in_use_through_the_embedding_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A training's embedding pass holds the shared embedder (the model manager drops only models nobody
    uses, and a long pass outlasts the idle TTL), and gives it back at the end."""
    manager = get_manager()
    users: list[int] = []
    embed_batch = SoundEmbedder.embed_batch

    def embed_batch_seen(embedder: SoundEmbedder, *args: Any) -> Any:
        users.append(sum(manager.users(key) for key in manager.loaded() if key.startswith("sound-embedder:")))
        return embed_batch(embedder, *args)

    monkeypatch.setattr(SoundEmbedder, "embed_batch", embed_batch_seen)
    train_classifier(
        fixture_clips(CLASSES[:2]),
        cache_dir=tmp_path,  # nothing cached: every clip is embedded
        config=TrainingConfig(candidates=(DEFAULT_FEATURES,), augment=False),
    )
    assert users and set(users) == {1}
    assert all(manager.users(key) == 0 for key in manager.loaded())


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
        scores, familiarity = session.run(
            ["scores", "familiarity"], {"audio": audio[None].astype(np.float32)}
        )
        expected = trained.classifier.classify(audio)
        assert scores.shape == (1, 3) and familiarity.shape == (1,)
        assert scores[0] == pytest.approx(expected.scores, abs=1e-4)
        assert familiarity[0] == pytest.approx(expected.familiarity, abs=1.5 / 24)  # one calibration step


def test_selection_between_candidates(cache_dir: Path) -> None:
    # Two candidates: layer 1 alone, and layers 1-3 (the reference); both are scored in the report.
    first = FeatureSpec(EmbedderSpec(layers=(1,)))
    result = train_classifier(
        fixture_clips(),
        cache_dir=cache_dir,
        config=TrainingConfig(candidates=(DEFAULT_FEATURES, first), augment=False),
    )
    tried = {entry["features"]: entry["loo_accuracy"] for entry in result.selection}
    assert set(tried) == {first.key, DEFAULT_FEATURES.key}
    expected = choose_features([first, DEFAULT_FEATURES], [tried[first.key], tried[DEFAULT_FEATURES.key]], 24)
    assert result.classifier.features == expected and result.augmented_count == 0
    # The chosen features' sub-graph gives the same embedding as the columns sliced from the superset.
    audio = decode(sorted((FIXTURES / "rain").glob("*.flac"))[0]).samples
    whole = get_embedder(superset([first.whisper, DEFAULT_FEATURES.whisper])).embed(audio)  # type: ignore[list-item]
    for spec in (first, DEFAULT_FEATURES):
        assert spec.whisper is not None
        own = get_embedder(spec.whisper).embed(audio)
        sliced = whole[whisper_columns(superset([first.whisper, DEFAULT_FEATURES.whisper]), spec.whisper)]  # type: ignore[list-item]
        np.testing.assert_allclose(own, sliced, rtol=1e-3, atol=1e-3)


def test_speed_variants_are_dropped_where_pitch_is_the_class(cache_dir: Path, tmp_path: Path) -> None:
    # Harmonic tones 3 semitones apart: a speed change of up to 7 semitones turns one class into the
    # other. Heads fitted on the clips beside their speed variants still get every clip right, so only
    # heads trained on the variants alone show the contradiction.
    rng = np.random.default_rng(0)
    rate, clips = 16000, []
    time = np.arange(rate) / rate
    for label, pitch in (("low", 300.0), ("high", 357.0)):
        for index in range(16):
            f0 = pitch * 2 ** (rng.uniform(-0.5, 0.5) / 12)
            tone = sum(0.3 / k * np.sin(2 * np.pi * k * f0 * time + rng.uniform(0, 6)) for k in (1, 2, 3))
            tone = tone + 0.01 * rng.standard_normal(rate)
            path = tmp_path / f"{label}{index}.wav"
            path.write_bytes(encode_wav(np.asarray(tone, dtype=np.float32)))
            clips.append(LabeledClip.from_path(path, label))
    result = train_classifier(
        clips, cache_dir=cache_dir, config=TrainingConfig(candidates=(DEFAULT_FEATURES,), augment=True)
    )
    checks = result.report.details["variant_checks"]
    assert result.report.details["variants"] == ["mix"] and result.augmented_count == len(clips)
    assert checks["mix"] >= 0.9 and checks["speed"] < checks["mix"] - 0.2
    assert result.report.accuracy >= 0.9


def test_fold_evaluation_script_on_fixture_manifest(cache_dir: Path) -> None:
    from tingyin.eval.sound import evaluate_esc10, format_sound_report

    result = evaluate_esc10(
        FIXTURES / "manifest.csv",
        folds=[1],
        cache_dir=cache_dir,
        timing_clips=0,
        latency_runs=3,
        log=None,
        config=FIXED,
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


@pytest.mark.parametrize("music", [None, "musicnn-mtt"])
def test_export_of_every_feature_kind_matches_serving(tmp_path: Path, music: str | None) -> None:
    """Whatever training chooses (log-mel statistics with Whisper layers, a musicnn part next to them),
    the export is one graph that onnxruntime alone runs, scores and familiarity equal to serving."""
    import onnxruntime as ort

    from tingyin.sound.classifier import OpenSet
    from tingyin.sound.whisper_onnx import MEL_LAYER

    features = FeatureSpec(EmbedderSpec(layers=(MEL_LAYER, 1), poolings=("mean", "std")), music=music)
    rng = np.random.default_rng(0)
    dim = features.dim
    classifier = TrainedClassifier(
        classes=CLASSES,
        features=features,
        mean=rng.normal(size=dim).astype(np.float32),
        scale=(np.abs(rng.normal(size=dim)) + 0.5).astype(np.float32),
        weights=[0.05 * rng.normal(size=(dim, 3)).astype(np.float32), np.zeros(3, np.float32)],
        temperature=0.5,
        normalize_rows=True,
        open_set=OpenSet(
            centroids=np.eye(3, dim, dtype=np.float32),
            logit_mean=0.0,
            logit_std=1.0,
            cosine_mean=0.0,
            cosine_std=0.1,
            calibration=np.sort(rng.normal(size=40)).astype(np.float32),
            default_threshold=0.05,
        ),
    )
    onnx_path, _ = classifier.export_onnx(tmp_path)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for label in CLASSES:
        audio = decode(sorted((FIXTURES / label).glob("*.flac"))[0]).samples
        scores, familiarity = session.run(["scores", "familiarity"], {"audio": audio[None]})
        served = classifier.classify(audio)
        np.testing.assert_allclose(scores[0], served.scores, atol=1e-4)
        assert familiarity[0] == pytest.approx(served.familiarity, abs=1.5 / 40)


def test_features_with_a_musicnn_part_train_with_audio_variants(cache_dir: Path) -> None:
    """The combined candidate (Whisper layers and musicnn, chosen where the prediction budget affords
    it) caches its variants' embeddings under its own name: a '+' in it was refused as a file name."""
    combined = next(spec for spec in CANDIDATES if spec.music is not None and spec.whisper is not None)
    result = train_classifier(
        fixture_clips(CLASSES[:2]),
        cache_dir=cache_dir,
        config=TrainingConfig(candidates=(combined,), augment=True, predict_budget_ms=1000.0),
    )
    assert result.classifier.features == combined and "+" in combined.key
    assert result.augmented_count > 0 and result.report.details["variants"][0] == "mix"
    rain = decode(sorted((FIXTURES / "rain").glob("*.flac"))[0]).samples
    assert result.classifier.predict(rain, 1)[0][0] == "rain"


def test_embedding_cache_names_files_only_from_plain_names(tmp_path: Path) -> None:
    from tingyin.sound.embeddings import EmbeddingCache

    cache = EmbeddingCache(tmp_path)
    key = "ab" * 32
    assert cache.path(key, "whisper-base-L1-2-3-int8+musicnn-mtt").parent.parent.parent == tmp_path
    for encoder, content in (("../escape", key), ("a/b", key), ("whisper", "../" + key), ("x y", key)):
        with pytest.raises(ValueError):
            cache.path(content, encoder)
