"""Pure logic of the sound head: exact leave-one-out ridge, feature planning and slicing, calibration,
open-set familiarity. No audio, no models: fast."""

from __future__ import annotations

import numpy as np
import pytest

from tingyin.errors import InvalidRequest
from tingyin.sound.augment import ENVELOPE_FRAME, change_speed, keep_envelope
from tingyin.sound.classifier import OpenSet
from tingyin.sound.features import CANDIDATES, FeatureSpec, superset, whisper_columns
from tingyin.sound.ridge import balanced_weights, ridge_loo
from tingyin.sound.training import (
    SPEED_MIN_SEMITONES,
    SPEED_SEMITONES,
    _variant_maker,
    choose_features,
    embedding_seconds,
    expected_calibration_error,
    fit_temperature,
    plan_candidates,
    variant_passes,
    variant_transfer_accuracy,
    variants_agree,
)
from tingyin.sound.types import LabeledClip
from tingyin.sound.whisper_onnx import MEL_LAYER, EmbedderSpec, embedder_dim


def blobs(
    n_per_class: int = 12, classes: int = 3, dim: int = 20, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 1.5
    labels = np.repeat(np.arange(classes), n_per_class)
    return (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32), labels


def refit_without(
    x: np.ndarray, labels: np.ndarray, left_out: np.ndarray, alpha: float, **kw: np.ndarray
) -> np.ndarray:
    keep = np.setdiff1d(np.arange(len(labels)), left_out)
    extra = {key: value[keep] for key, value in kw.items()}
    fit = ridge_loo(x[keep], labels[keep], 3, alphas=(alpha,), **extra)
    return x[left_out] @ fit.weights + fit.bias


def test_leave_one_out_equals_refitting_without_each_row() -> None:
    x, labels = blobs()
    weights = balanced_weights(labels, 3) * np.linspace(0.5, 1.5, len(labels))
    fit = ridge_loo(x, labels, 3, alphas=(1.0,), sample_weights=weights)
    # The penalty is relative to the Gram matrix's scale, which moves a little without a row: compare
    # decisions and values loosely, and exactly for the scale-free part below.
    for row in (0, 13, 35):
        refit = refit_without(x, labels, np.array([row]), 1.0, sample_weights=weights)[0]
        assert np.argmax(refit) == np.argmax(fit.loo_scores[row])
        np.testing.assert_allclose(fit.loo_scores[row], refit, atol=0.05)


def test_group_leave_out_equals_refitting_without_the_group() -> None:
    x, labels = blobs(n_per_class=6)
    rng = np.random.default_rng(1)
    # Each clip and a near-copy of it (its "audio variant") share a group.
    rows = np.concatenate([x, x + 0.05 * rng.normal(size=x.shape).astype(np.float32)])
    row_labels = np.concatenate([labels, labels])
    groups = np.concatenate([np.arange(len(labels)), np.arange(len(labels))])
    grouped = ridge_loo(rows, row_labels, 3, alphas=(0.5,), groups=groups)
    plain = ridge_loo(rows, row_labels, 3, alphas=(0.5,))
    for clip in (2, 9):
        members = np.flatnonzero(groups == clip)
        refit = refit_without(rows, row_labels, members, 0.5, groups=groups)
        np.testing.assert_allclose(grouped.loo_scores[members], refit, atol=0.05)
        # Without groups a clip's copy vouches for it: its leave-one-out value is more confident.
        own = row_labels[clip]
        assert plain.loo_scores[clip, own] > grouped.loo_scores[clip, own]


def test_offset_pulls_towards_the_previous_model() -> None:
    x, labels = blobs()
    previous = ridge_loo(x, labels, 3, alphas=(1.0,))
    offset = x @ previous.weights + previous.bias
    # With a huge penalty the residual fit is ~0: predictions stay the previous model's.
    again = ridge_loo(x, labels, 3, alphas=(1e6,), offset=offset)
    np.testing.assert_allclose(again.loo_scores, offset, atol=1e-3)


def test_balanced_weights_equalise_class_mass() -> None:
    labels = np.array([0] * 30 + [1] * 10 + [2] * 5)
    weights = balanced_weights(labels, 3)
    masses = [weights[labels == c].sum() for c in range(3)]
    assert masses == pytest.approx([masses[0]] * 3) and weights.mean() == pytest.approx(1.0)


def test_whisper_columns_slice_the_superset() -> None:
    specs = [spec.whisper for spec in CANDIDATES if spec.whisper is not None]
    full = superset(specs)
    assert full.layers == (MEL_LAYER, 1, 2, 3, 4, 5, 6) and full.poolings == ("mean", "max", "std")
    for spec in specs:
        columns = whisper_columns(full, spec)
        assert len(columns) == embedder_dim(spec) == len(set(columns.tolist()))
    # Layer 2's max block sits after mel (3 x 80), layer 1 (3 x 512) and layer 2's mean (512).
    start = whisper_columns(full, EmbedderSpec(layers=(2,), poolings=("max",)))[0]
    assert start == 3 * 80 + 3 * 512 + 512


def test_plan_keeps_what_the_budgets_allow() -> None:
    fast = FeatureSpec(EmbedderSpec(layers=(1,)))
    mid = FeatureSpec(EmbedderSpec(layers=(1, 2, 3)))
    slow = FeatureSpec(EmbedderSpec(layers=(1, 2, 3)), music="musicnn-mtt")
    assert plan_candidates([slow, mid, fast], 100.0, 60.0, 100.0) == [fast, mid]  # slow: too slow to serve
    assert plan_candidates([slow, mid, fast], 100.0, 60.0, 1000.0) == [fast, mid, slow]
    # 1,000 clips of 5 s: only what embeds in time stays; the cheapest always does.
    assert plan_candidates([mid, fast], 5000.0, 40.0, 100.0) == [fast]
    assert plan_candidates([mid, fast], 5000.0, 1.0, 100.0) == [fast]
    assert embedding_seconds([fast, mid], 5.0) == pytest.approx(mid.cost_ms / 1000)


def test_feature_spec_round_trip_and_keys() -> None:
    for spec in CANDIDATES:
        assert FeatureSpec.from_dict(spec.to_dict()) == spec
    assert CANDIDATES[2].key == "whisper-base-L1-2-3-int8"
    assert FeatureSpec(music="musicnn-mtt").dim == 200


def test_temperature_is_finite_when_every_clip_is_right() -> None:
    labels = np.arange(40) % 4
    logits = -np.ones((40, 4))
    logits[np.arange(40), labels] = 1.0
    temperature = fit_temperature(logits, labels)
    confidence = np.exp(2 / temperature) / (np.exp(2 / temperature) + 3)
    # Laplace smoothing: about 1 - 1/(n + 1) confident, not 1.0.
    assert 0.95 < confidence < 0.995


def test_temperature_calibrates_overconfident_logits() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 3000)
    truth = rng.normal(size=(3000, 3))
    truth[np.arange(3000), labels] += 1.0
    overconfident = 5.0 * truth  # the right scale is 1
    temperature = fit_temperature(overconfident, labels)
    assert 3.5 < temperature < 6.5
    scaled = np.exp(overconfident / temperature)
    probabilities = scaled / scaled.sum(axis=1, keepdims=True)
    assert expected_calibration_error(probabilities, labels) < 0.03


def test_open_set_familiarity_is_a_p_value() -> None:
    calibration = np.sort(np.random.default_rng(0).normal(size=200)).astype(np.float32)
    open_set = OpenSet(
        centroids=np.eye(2, 4, dtype=np.float32),
        logit_mean=0.0,
        logit_std=1.0,
        cosine_mean=0.0,
        cosine_std=1.0,
        calibration=calibration,
        default_threshold=0.05,
    )
    near = np.array([[1.0, 0.0, 0.0, 0.0]], dtype=np.float32)  # on a centroid
    far = np.array([[0.0, 0.0, 1.0, 0.0]], dtype=np.float32)  # orthogonal to both
    logits_near, logits_far = np.array([[1.0, -1.0]]), np.array([[-1.0, -1.0]])
    assert open_set.familiarity(near, logits_near)[0] > 0.8
    assert open_set.familiarity(far, logits_far)[0] < 0.2


def test_a_candidate_must_beat_the_reference_by_a_standard_error() -> None:
    cheap, reference, deep = CANDIDATES[0], CANDIDATES[2], CANDIDATES[4]
    specs = [cheap, reference, deep]
    # 400 clips at 95 %: one standard error is about 1.1 points.
    assert choose_features(specs, [0.955, 0.95, 0.955], 400) == reference  # ties and near-ties: reference
    assert choose_features(specs, [0.97, 0.95, 0.975], 400) == deep  # clearly better: the best
    assert choose_features(specs, [0.97, 0.95, 0.97], 400) == cheap  # equally better: the cheaper
    # Without the reference (a large dataset's plan), the cheapest is the reference.
    assert choose_features([cheap, deep], [0.90, 0.905], 1000) == cheap
    # At least one clip of margin when the reference is perfect.
    assert choose_features(specs, [1.0, 1.0, 1.0], 20) == reference


def test_ridge_breaks_accuracy_ties_by_squared_error() -> None:
    # Separable blobs: every penalty gets every clip right; the ridge's own leave-one-out squared error
    # still prefers a light penalty over the heaviest one.
    x, labels = blobs(dim=10)
    x = 3.0 * x
    heavy = ridge_loo(x, labels, 3, alphas=(300.0,))
    chosen = ridge_loo(x, labels, 3, alphas=(0.01, 1.0, 300.0))
    assert heavy.loo_accuracy == chosen.loo_accuracy == 1.0
    assert chosen.alpha < 300.0


def test_variants_are_kept_unless_they_contradict_the_labels() -> None:
    # At 100 % the standard error vanishes: the tolerance (5 points) keeps a kind that moves timbre a little.
    assert variants_agree(0.975, 1.0, 200)
    assert variants_agree(0.95, 1.0, 200)
    assert not variants_agree(0.94, 1.0, 200)
    # Pitch-shifted voices as classes (77 % against 98 %) and tones 3 semitones apart stay refused.
    assert not variants_agree(0.77, 0.98, 90)
    assert not variants_agree(0.56, 1.0, 32)
    # 20 clips at 75 %: two standard errors (19 points) are wider than the tolerance.
    assert variants_agree(0.6, 0.75, 20)
    assert not variants_agree(0.5, 0.75, 20)
    assert variants_agree(1.0, 0.95, 50)  # better is always fine


def test_speed_variants_come_one_faster_and_one_slower() -> None:
    assert variant_passes("mix") == ("mix",)
    assert variant_passes("speed") == ("faster", "slower")
    with pytest.raises(InvalidRequest):
        variant_passes("reverb")
    rate = 16000
    clips = [LabeledClip.from_bytes(bytes([index]), "a") for index in range(12)]
    audio = np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32)
    shortest, longest = rate * 2 ** (-SPEED_SEMITONES / 12), rate * 2 ** (-SPEED_MIN_SEMITONES / 12)
    for index in range(len(clips)):
        faster = _variant_maker(clips, 0, "faster")(audio, index)
        slower = _variant_maker(clips, 0, "slower")(audio, index)
        assert shortest - 2 <= len(faster) <= longest + 2
        assert rate * rate / longest - 2 <= len(slower) <= rate * rate / shortest + 2
        # The same clip and seed give the same variant (the embedding cache relies on it).
        np.testing.assert_array_equal(faster, _variant_maker(clips, 0, "faster")(audio, index))


def test_speed_change_moves_pitch_and_length_together() -> None:
    rate = 16000
    tone = np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32)
    faster = change_speed(tone, 12.0)  # an octave up: half as long, twice the frequency
    assert abs(len(faster) - rate // 2) <= 2
    spectrum = np.abs(np.fft.rfft(faster))
    assert abs(np.argmax(spectrum) * rate / len(faster) - 880) < 5


def test_kept_envelope_returns_the_resonance_and_keeps_the_new_pitch() -> None:
    rate, f0 = 16000, 220.0
    t = np.arange(rate) / rate
    # A note whose harmonics are loudest around a resonance at 1 kHz (an instrument's body, a formant).
    harmonics = np.arange(1, int(7000 / f0))
    loudness = np.exp(-((((harmonics * f0) - 1000.0) / 300.0) ** 2)) + 0.01
    note = sum(a * np.sin(2 * np.pi * k * f0 * t) for k, a in zip(harmonics, loudness, strict=True))
    note = (0.3 * note / np.abs(note).max()).astype(np.float32)

    def loudest_hz(audio: np.ndarray) -> float:
        return float(np.argmax(np.abs(np.fft.rfft(audio))) * rate / len(audio))

    faster = change_speed(note, 7.0)  # the note and its resonance both move up by half
    kept = keep_envelope(faster, note)
    new_f0 = f0 * 2 ** (7 / 12)
    assert loudest_hz(faster) > 1400
    assert abs(loudest_hz(kept) - 1000.0) < new_f0  # the harmonic nearest the old resonance
    # Still a harmonic of the new pitch: the notes are not moved back.
    harmonic = loudest_hz(kept) / new_f0
    assert abs(harmonic - round(harmonic)) < 0.05
    assert len(kept) == len(faster) and kept.dtype == np.float32
    short = faster[: ENVELOPE_FRAME - 1]
    np.testing.assert_array_equal(keep_envelope(short, note), short)


def test_transfer_accuracy_of_heads_trained_on_variants_only() -> None:
    x, labels = blobs(n_per_class=10)
    weights = np.ones(len(labels))
    rng = np.random.default_rng(1)
    faithful = x + 0.1 * rng.normal(size=x.shape).astype(np.float32)
    assert variant_transfer_accuracy(x, [faithful], labels, 3, weights, 1.0) == 1.0
    # Variants that look like the next class: heads trained on them alone get the clips wrong.
    misleading = x[(np.arange(len(labels)) + 10) % len(labels)]
    assert variant_transfer_accuracy(x, [misleading], labels, 3, weights, 1.0) < 0.2
