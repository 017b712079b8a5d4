"""Tagging, embedding and the music detector on real clips."""

from __future__ import annotations

import numpy as np
import pytest

from tingyin.errors import InvalidRequest
from tingyin.music.detector import is_music
from tingyin.music.tagger import EMBED_DIM, music_embedding, run_tagger, tag_music
from tingyin.music.taxonomy import vocal_probability


def test_electronic_loop_gets_electronic_tags(electronic_loop: np.ndarray) -> None:
    mtt = tag_music(electronic_loop)
    top_mtt = [tag for tag, _ in mtt.top(3)]
    assert "techno" in top_mtt and "electronic" in top_mtt
    assert mtt["techno"] > 0.5 and mtt["classical"] < 0.1
    msd = tag_music(electronic_loop, "MSD_musicnn")
    assert msd.top(1)[0][0] == "electronic"
    assert all(0.0 <= value <= 1.0 for value in msd.as_dict().values())


def test_long_audio_is_pooled_over_three_second_patches(instrumental_track: np.ndarray) -> None:
    output = run_tagger(instrumental_track)
    assert output.taggram.shape == (4, 50)  # 12 s -> four whole 3 s patches
    np.testing.assert_allclose(output.scores, output.taggram.mean(axis=0), rtol=1e-6)


def test_embedding_is_the_pooled_penultimate_layer(instrumental_track: np.ndarray) -> None:
    embedding = music_embedding(instrumental_track)
    assert embedding.shape == (EMBED_DIM,)
    assert embedding.dtype == np.float32 and np.all(np.isfinite(embedding))
    other = music_embedding(instrumental_track[: 16000 * 6])
    similarity = embedding @ other / (np.linalg.norm(embedding) * np.linalg.norm(other))
    assert similarity > 0.8  # two parts of one track lie close in embedding space


def test_bad_input_raises_typed_errors() -> None:
    with pytest.raises(InvalidRequest):
        tag_music(np.zeros((2, 16000), dtype=np.float32))
    with pytest.raises(InvalidRequest):
        tag_music(np.zeros(16000, dtype=np.float32), model="MSD_vgg")


def test_detector_accepts_music(electronic_loop: np.ndarray, instrumental_track: np.ndarray) -> None:
    for clip in (electronic_loop, instrumental_track):
        decision = is_music(clip)
        assert decision.is_music, decision.reason
        assert decision.score >= 0.5


def test_detector_refuses_speech_and_silence(speech: np.ndarray) -> None:
    decision = is_music(speech)
    assert not decision.is_music and decision.score < 0.5
    silent = is_music(np.zeros(16000 * 5, dtype=np.float32))
    assert not silent.is_music and "silence" in silent.reason


def test_vocal_decision(instrumental_track: np.ndarray, speech: np.ndarray) -> None:
    assert vocal_probability(tag_music(instrumental_track)) < 0.5
    assert vocal_probability(tag_music(speech)) > 0.5
