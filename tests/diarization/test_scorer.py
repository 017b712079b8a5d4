"""DER scorer on hand-made references: exact values worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from tingyin.eval.diarization import diarization_error, format_rttm, read_rttm, read_uem

REFERENCE = {"alice": [(0.0, 10.0), (20.0, 25.0)], "bob": [(10.0, 20.0)]}


def test_perfect_hypothesis_scores_zero() -> None:
    result = diarization_error(REFERENCE, REFERENCE, collar=0.25)
    assert result.der == 0.0
    assert result.reference == pytest.approx(25.0 - 0.25 * 2 * 4 + 0.25 * 2)  # collars at 0,10,20,25


def test_swapped_labels_score_zero() -> None:
    hypothesis = {"1": REFERENCE["bob"], "2": REFERENCE["alice"]}
    assert diarization_error(REFERENCE, hypothesis, collar=0.0).der == 0.0


def test_known_miss_false_alarm_and_confusion() -> None:
    hypothesis = {"x": [(0.0, 5.0), (20.0, 25.0)], "y": [(10.0, 20.0), (26.0, 28.0)]}
    result = diarization_error(REFERENCE, hypothesis, uem=[(0.0, 30.0)], collar=0.0)
    assert result.missed == pytest.approx(5.0)  # alice 5-10 unlabelled
    assert result.false_alarm == pytest.approx(2.0)  # y speaks 26-28 over silence
    assert result.confusion == pytest.approx(0.0)
    assert result.reference == pytest.approx(25.0)
    assert result.der == pytest.approx(7.0 / 25.0)

    one_label = {"x": [(0.0, 25.0)]}  # everything given to one speaker: bob's 10 s are confused
    confused = diarization_error(REFERENCE, one_label, collar=0.0)
    assert confused.confusion == pytest.approx(10.0)
    assert confused.missed == 0.0 and confused.false_alarm == 0.0


def test_collar_forgives_boundary_errors_and_uem_limits_scoring() -> None:
    late = {"a": [(0.2, 10.2), (20.2, 25.0)], "b": [(10.2, 20.2)]}
    assert diarization_error(REFERENCE, late, collar=0.25).der == 0.0
    assert diarization_error(REFERENCE, late, collar=0.0).der > 0.0
    only_first = diarization_error(REFERENCE, {"a": [(0.0, 10.0)]}, uem=[(0.0, 10.0)], collar=0.0)
    assert only_first.der == 0.0 and only_first.reference == pytest.approx(10.0)


def test_overlapping_reference_speech_counts_once_per_speaker() -> None:
    reference = {"a": [(0.0, 4.0)], "b": [(2.0, 6.0)]}
    single = {"1": [(0.0, 4.0)], "2": [(4.0, 6.0)]}
    result = diarization_error(reference, single, collar=0.0)
    assert result.reference == pytest.approx(8.0)
    assert result.missed == pytest.approx(2.0)  # b's 2-4 is under a's speech
    assert result.confusion == 0.0
    without_overlap = diarization_error(reference, single, collar=0.0, skip_overlap=True)
    assert without_overlap.der == 0.0 and without_overlap.reference == pytest.approx(4.0)


def test_rttm_and_uem_round_trip(tmp_path: Path) -> None:
    rttm = tmp_path / "clip.rttm"
    rttm.write_text(format_rttm("clip", REFERENCE) + "SPEAKER other 1 0.000 1.000 <NA> <NA> zed <NA> <NA>\n")
    assert read_rttm(rttm, "clip") == {"alice": [(0.0, 10.0), (20.0, 25.0)], "bob": [(10.0, 20.0)]}
    assert set(read_rttm(rttm)) == {"alice", "bob", "zed"}
    uem = tmp_path / "clip.uem"
    uem.write_text("clip 1 0.000 30.000\n")
    assert read_uem(uem, "clip") == [(0.0, 30.0)]
