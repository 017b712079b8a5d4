"""The SAMI MusicTagging core: payload shape of seed 004, task types, limits and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tingyin.audio.decode import AudioTooLong
from tingyin.errors import InvalidRequest
from tingyin.music.service import NotMusic, analyse_music, build_payload
from tingyin.music.tagger import EMBED_DIM
from tingyin.music.taxonomy import SAMI_GENRE34, SAMI_LANG30, SAMI_MOOD10, SAMI_THEME24

# The task list of the seed's own Python example request.
SEED_TASKS = [
    "MusicTaggingGenre17",
    "MusicTaggingMood10",
    "MusicTaggingTheme24",
    "MusicTaggingLang24",
    "MusicTaggingVocal",
    "MusicTaggingMTT",
]


def test_payload_has_the_seed_shape(home: Path, electronic_loop: np.ndarray) -> None:
    """The seed example's six tasks (Lang24 reads the language list of the shared Whisper model)."""
    payload = build_payload(electronic_loop, task_types=SEED_TASKS)
    assert set(payload) == {"pred", "task_flow"}  # no "embed" unless asked
    results = payload["task_flow"]["result"]
    assert [r["task_type"] for r in results] == SEED_TASKS
    for result in results:
        assert set(result) == {"task_type", "pred_dim", "task_output"}
        assert len(result["task_output"]["tags"]) == result["pred_dim"]
    assert len(payload["pred"]) == sum(r["pred_dim"] for r in results)
    assert all(0.0 <= p <= 1.0 for p in payload["pred"])
    json.dumps(payload)  # plain JSON types only

    by_type = {r["task_type"]: r for r in results}
    assert set(by_type["MusicTaggingGenre17"]["task_output"]["tags"]) <= set(SAMI_GENRE34)
    assert set(by_type["MusicTaggingMood10"]["task_output"]["tags"]) <= set(SAMI_MOOD10)
    assert by_type["MusicTaggingTheme24"]["task_output"]["tags"] == ["dance"]
    assert set(by_type["MusicTaggingTheme24"]["task_output"]["tags"]) <= set(SAMI_THEME24)
    assert by_type["MusicTaggingVocal"]["task_output"]["tags"] == ["vocal", "non_vocal"]
    assert by_type["MusicTaggingMTT"]["pred_dim"] == 50
    assert "K_pop" not in by_type["MusicTaggingGenre17"]["task_output"]["tags"]  # not scored: omitted

    offsets = np.cumsum([0] + [r["pred_dim"] for r in results])
    preds = {r["task_type"]: payload["pred"][offsets[i] : offsets[i + 1]] for i, r in enumerate(results)}
    genre = dict(
        zip(by_type["MusicTaggingGenre17"]["task_output"]["tags"], preds["MusicTaggingGenre17"], strict=True)
    )
    assert max(genre, key=lambda tag: genre[tag]) == "electronic"
    vocal, non_vocal = preds["MusicTaggingVocal"]
    assert non_vocal > 0.5 and vocal + non_vocal == pytest.approx(1.0, abs=1e-6)
    # An instrumental loop has no language: every language tag scores 0.
    assert set(by_type["MusicTaggingLang24"]["task_output"]["tags"]) <= set(SAMI_LANG30)
    assert max(preds["MusicTaggingLang24"]) == 0.0
    lang_tags = by_type["MusicTaggingLang24"]["task_output"]["tags"]
    assert {"en", "cmn", "ja", "other"} <= set(lang_tags) and "minnan" not in lang_tags


def test_embed_and_top_num(instrumental_track: np.ndarray) -> None:
    analysis = analyse_music(
        instrumental_track,
        task_types=["MusicTaggingGenre34", "MusicTaggingVocal"],
        enable_embed=True,
        top_num=3,
    )
    payload = analysis.to_payload()
    assert [r["embed_dim"] for r in payload["task_flow"]["result"]] == [EMBED_DIM, EMBED_DIM]
    assert len(payload["embed"]) == 2 * EMBED_DIM
    genre = analysis.results[0]
    assert genre.pred_dim == 3 and list(genre.pred) == sorted(genre.pred, reverse=True)
    assert len(payload["pred"]) == 3 + 2


def test_enable_tag_false_leaves_out_the_tag_names(electronic_loop: np.ndarray) -> None:
    payload = build_payload(electronic_loop, task_types=["MusicTaggingMood10"], enable_tag=False)
    result = payload["task_flow"]["result"][0]
    assert result["task_output"] == {} and result["pred_dim"] == len(payload["pred"]) > 0


def test_speech_is_refused_as_not_music(speech: np.ndarray) -> None:
    with pytest.raises(NotMusic) as caught:
        analyse_music(speech, task_types=["MusicTaggingVocal"])
    assert isinstance(caught.value, InvalidRequest) and caught.value.code == "not_music"
    assert caught.value.decision is not None and not caught.value.decision.is_music


def test_request_errors() -> None:
    clip = np.zeros(16000 * 5, dtype=np.float32)
    with pytest.raises(InvalidRequest, match="unknown MusicTagging task_type"):
        analyse_music(clip, task_types=["MusicTaggingVocal", "MusicTaggingAnimals"])
    with pytest.raises(InvalidRequest):
        analyse_music(clip, task_types=[])
    with pytest.raises(InvalidRequest):
        analyse_music(clip, task_types=["MusicTaggingVocal"], top_num=0)
    with pytest.raises(AudioTooLong):
        analyse_music(np.zeros(16000 * 601, dtype=np.float32), task_types=["MusicTaggingVocal"])
    with pytest.raises(NotMusic):
        analyse_music(clip, task_types=["MusicTaggingVocal"])  # digital silence


def test_language_of_a_voice_over_music(
    home: Path, instrumental_track: np.ndarray, speech: np.ndarray
) -> None:
    """English speech over the instrumental: vocal, and Whisper hears English on the vocal parts."""
    music = instrumental_track[: len(speech)]
    gain = np.sqrt(np.mean(music**2) / np.mean(speech**2)) * 10 ** (-3 / 20)
    mixed = (music + gain * speech).astype(np.float32)
    mixed /= max(1.0, float(np.abs(mixed).max()))
    analysis = analyse_music(mixed, task_types=["MusicTaggingVocal", "MusicTaggingLang30"], top_num=1)
    assert analysis.vocal_probability > 0.5
    assert analysis.language == "en"
    language = analysis.results[1]
    assert language.tags == ("en",) and language.pred[0] > 0.5
