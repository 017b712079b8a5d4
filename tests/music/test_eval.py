"""The evaluation helpers on the fixture clips (full figures: ``python -m tingyin.music.eval``)."""

from __future__ import annotations

import numpy as np

from tingyin.music.detector import CONTOUR_FEATURES, contour_features
from tingyin.music.eval import Clip, evaluate_music_detector


def test_evaluate_music_detector_counts_per_group(
    electronic_loop: np.ndarray, instrumental_track: np.ndarray, speech: np.ndarray
) -> None:
    clips = [
        Clip("loop_garzul", "sonic_pi", electronic_loop, True),
        Clip("morning_coffee", "moh", instrumental_track, True),
        Clip("LJ001-0182", "en_dev", speech, False),
        Clip("digital_silence", "silence", np.zeros(16000 * 4, dtype=np.float32), False),
    ]
    report = evaluate_music_detector(clips)
    assert report.n == 4 and report.accuracy == 1.0 and report.errors == []
    assert report.per_group == {"sonic_pi": (1, 1), "moh": (1, 1), "en_dev": (1, 1), "silence": (1, 1)}


def test_speech_pauses_more_than_music(instrumental_track: np.ndarray, speech: np.ndarray) -> None:
    music = dict(zip(CONTOUR_FEATURES, contour_features(instrumental_track), strict=True))
    talk = dict(zip(CONTOUR_FEATURES, contour_features(speech), strict=True))
    assert talk["quiet_25db_share"] > music["quiet_25db_share"]
    assert talk["frame_db_std"] > music["frame_db_std"]
