"""The evaluation helpers on the fixture clips (full figures: ``python -m tingyin.music.eval``)."""

from __future__ import annotations

import numpy as np
import pytest

from tingyin.music.detector import CONTOUR_FEATURES, TONAL_FEATURES, contour_features, tonal_features
from tingyin.music.eval import Clip, analyse_clip, evaluate, roc_auc


def test_evaluate_counts_refusals_per_group(
    electronic_loop: np.ndarray, rendered: dict[str, np.ndarray], speech: np.ndarray
) -> None:
    clips = [
        Clip("loop_garzul", "sonic_pi", electronic_loop, "music", vocal=False),
        Clip("violin", "render:violin", rendered["violin"], "music", vocal=False),
        Clip("quartet", "render:string_quartet", rendered["string_quartet"], "music", vocal=False),
        Clip("LJ001-0182", "en_dev", speech, "speech"),
        Clip("digital_silence", "silence", np.zeros(16000 * 4, dtype=np.float32), "noise"),
    ]
    report = evaluate(clips, [analyse_clip(clip.audio) for clip in clips])
    assert report.wrong == []
    assert report.refused == {
        "sonic_pi": (0, 1),
        "render:violin": (0, 1),
        "render:string_quartet": (0, 1),
        "en_dev": (1, 1),
        "silence": (1, 1),
    }
    assert report.figures["refused share: instrumental renders"] == 0.0
    assert report.figures["instrumental arrangements"] == 2
    assert report.figures["refused share: speech (zh_dev, en_dev)"] == 1.0


def test_roc_auc() -> None:
    assert roc_auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert roc_auc([0.1], [0.9]) == 0.0
    assert roc_auc([0.5, 0.9], [0.5, 0.1]) == pytest.approx(0.875)


def test_speech_pauses_more_than_music(instrumental_track: np.ndarray, speech: np.ndarray) -> None:
    music = dict(zip(CONTOUR_FEATURES, contour_features(instrumental_track), strict=True))
    talk = dict(zip(CONTOUR_FEATURES, contour_features(speech), strict=True))
    assert talk["quiet_25db_share"] > music["quiet_25db_share"]
    assert talk["frame_db_std"] > music["frame_db_std"]


def test_instruments_hold_notes_speech_glides_noise_has_none(
    rendered: dict[str, np.ndarray], speech: np.ndarray
) -> None:
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(16000 * 4) * 0.05).astype(np.float32)
    t = np.arange(16000 * 4) / 16000
    # A 440 Hz tone, then 660 Hz: two held notes.
    tone = (0.2 * np.sin(2 * np.pi * np.where(t < 2, 440, 660) * t)).astype(np.float32)
    clips = {"violin": rendered["violin"], "speech": speech, "noise": noise, "tone": tone}
    named = {
        name: dict(zip(TONAL_FEATURES, tonal_features(audio), strict=True)) for name, audio in clips.items()
    }
    assert named["tone"]["held_frame_share"] > 0.95 and named["tone"]["flatness"] < 0.01
    assert named["violin"]["held_frame_share"] > 0.8 > 0.3 > named["speech"]["held_frame_share"]
    assert named["noise"]["held_frame_share"] < 0.05 and named["noise"]["flatness"] > 0.5
    # Speech pauses are silent; the quieter frames of an instrument still hold a note.
    assert named["violin"]["quiet_held_share"] > 0.5 > named["speech"]["quiet_held_share"]
    drums = dict(zip(TONAL_FEATURES, tonal_features(rendered["jazz_combo"]), strict=True))
    assert drums["beat_strength"] > named["noise"]["beat_strength"]
