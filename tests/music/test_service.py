"""The SAMI MusicTagging core: payload shape of seed 004, task types, limits and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.music.conftest import FIXTURES
from tingyin.audio import decode
from tingyin.audio.decode import AudioTooLong
from tingyin.errors import InvalidRequest
from tingyin.music.service import NotMusic, analyse_music, build_payload
from tingyin.music.tagger import EMBED_DIM, MTT_LABELS
from tingyin.music.taxonomy import SAMI_GENRE34, SAMI_LANG30, SAMI_MOOD10, TaskNotSupported

# The task list of the seed's own Python example request.
SEED_TASKS = [
    "MusicTaggingGenre17",
    "MusicTaggingMood10",
    "MusicTaggingTheme24",
    "MusicTaggingLang24",
    "MusicTaggingVocal",
    "MusicTaggingMTT",
]
# The documented task types this server answers, with their documented tag lists.
DOCUMENTED = {
    "MusicTaggingVocal": ("vocal", "non_vocal"),
    "MusicTaggingMood10": SAMI_MOOD10,
    "MusicTaggingGenre34": SAMI_GENRE34,
    "MusicTaggingLang30": SAMI_LANG30,
    "MusicTaggingMTT": MTT_LABELS,
}


def test_tasks_without_a_documented_answer_are_refused_by_name(electronic_loop: np.ndarray) -> None:
    """Genre17 and Lang24 have no published tag list, Theme24 and Theme(14) almost no scorable tag: an
    explicit error naming each, never a shorter list that shifts the labels."""
    with pytest.raises(TaskNotSupported) as caught:
        analyse_music(electronic_loop, task_types=SEED_TASKS)
    message = caught.value.message
    for task_type in ("MusicTaggingGenre17", "MusicTaggingTheme24", "MusicTaggingLang24"):
        assert task_type in message
    assert "MusicTaggingMood10" not in message and isinstance(caught.value, InvalidRequest)
    with pytest.raises(TaskNotSupported, match="MusicTaggingTheme "):
        analyse_music(electronic_loop, task_types=["MusicTaggingVocal", "MusicTaggingTheme"])


def test_every_tag_in_the_documented_order(home: Path, electronic_loop: np.ndarray) -> None:
    """With top_num at least a task's size, pred reads by position against the vendor's tag list."""
    payload = build_payload(electronic_loop, task_types=list(DOCUMENTED), top_num=100)
    assert set(payload) == {"pred", "task_flow"}  # no "embed" unless asked
    results = payload["task_flow"]["result"]
    assert [r["task_type"] for r in results] == list(DOCUMENTED)
    assert [r["pred_dim"] for r in results] == [2, 10, 34, 30, 50]
    assert len(payload["pred"]) == 2 + 10 + 34 + 30 + 50 and all(0.0 <= p <= 1.0 for p in payload["pred"])
    json.dumps(payload)  # plain JSON types only
    offsets = np.cumsum([0] + [r["pred_dim"] for r in results])
    preds = {}
    for index, result in enumerate(results):
        assert result["task_output"]["tags"] == list(DOCUMENTED[result["task_type"]])
        preds[result["task_type"]] = dict(
            zip(
                result["task_output"]["tags"],
                payload["pred"][offsets[index] : offsets[index + 1]],
                strict=True,
            )
        )
    by_type = {r["task_type"]: r["task_output"] for r in results}
    # Tags no model scores are named and are 0; the scored ones are not listed.
    mood_unscored = by_type["MusicTaggingMood10"]["unscored_tags"]
    assert set(mood_unscored) == {"cute", "dynamic", "tense", "excited", "angry", "romantic"}
    assert all(preds["MusicTaggingMood10"][tag] == 0.0 for tag in mood_unscored)
    assert "K_pop" in by_type["MusicTaggingGenre34"]["unscored_tags"]
    assert "electronic" not in by_type["MusicTaggingGenre34"]["unscored_tags"]
    assert {"bho", "minnan"} <= set(by_type["MusicTaggingLang30"]["unscored_tags"])
    assert "unscored_tags" not in by_type["MusicTaggingVocal"]
    genre = preds["MusicTaggingGenre34"]
    assert max(genre, key=lambda tag: genre[tag]) == "electronic"
    assert preds["MusicTaggingVocal"]["non_vocal"] > 0.5
    assert sum(preds["MusicTaggingVocal"].values()) == pytest.approx(1.0, abs=1e-6)
    # An instrumental loop has no language: every language tag scores 0.
    assert max(preds["MusicTaggingLang30"].values()) == 0.0


def test_top_num_defaults_to_one_and_offers_no_language_for_an_instrumental(
    home: Path, electronic_loop: np.ndarray
) -> None:
    analysis = analyse_music(
        electronic_loop, task_types=["MusicTaggingGenre34", "MusicTaggingVocal", "MusicTaggingLang30"]
    )
    genre, vocal, language = analysis.results
    assert genre.tags == ("electronic",) and genre.pred_dim == 1
    assert vocal.tags == ("non_vocal",)
    assert language.tags == () and language.pred_dim == 0  # not "en" with 0.0
    assert analysis.to_payload()["task_flow"]["result"][2]["task_output"] == {"tags": []}
    # A smaller top_num never offers a tag no model scored.
    mood = analyse_music(electronic_loop, task_types=["MusicTaggingMood10"], top_num=9).results[0]
    assert set(mood.tags) <= {"weird", "sorrow", "chill", "happy"} and len(mood.tags) == 4
    assert list(mood.pred) == sorted(mood.pred, reverse=True) and mood.unscored == ()


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


def test_a_long_track_is_tagged_from_a_spread_of_patches(
    home: Path, instrumental_track: np.ndarray, speech: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 4 patches allowed, a 45 s track (15 patches) is tagged from patches 0, 5, 9 and 14, and the
    language is found from the voice over its last 31 s: the sampled patches keep their places in the
    track (patches 1-3, where rows 1-3 would point otherwise, are instrumental)."""
    from tingyin.config import reset_settings

    monkeypatch.setenv("TINGYIN_MUSIC_MAX_PATCHES", "4")
    reset_settings()
    music = np.tile(instrumental_track, 4)[: 16000 * 45]
    voice_from = 16000 * 14
    voice = np.tile(speech, 6)[: len(music) - voice_from]
    gain = np.sqrt(np.mean(music**2) / np.mean(speech**2)) * 10 ** (-3 / 20)
    mixed = music.copy()
    mixed[voice_from:] += gain * voice
    mixed /= max(1.0, float(np.abs(mixed).max()))
    analysis = analyse_music(mixed, task_types=["MusicTaggingLang30"], top_num=1, refuse_non_music=False)
    assert analysis.language == "en"
    assert analysis.results[0].tags == ("en",)


def test_rendered_instruments_are_tagged(rendered: dict[str, np.ndarray]) -> None:
    """Solo instruments (the ones a customer's catalogue was refused for) and ensembles are music."""
    for name, clip in rendered.items():
        analysis = analyse_music(clip, task_types=["MusicTaggingVocal", "MusicTaggingMTT"], top_num=100)
        assert analysis.decision.is_music and analysis.decision.verdict == "music", (name, analysis.decision)


def test_refusals_say_why(speech: np.ndarray, mandarin_speech: np.ndarray) -> None:
    for clip in (speech, mandarin_speech):
        with pytest.raises(NotMusic, match="speech without music") as caught:
            analyse_music(clip, task_types=["MusicTaggingVocal"])
        assert caught.value.decision is not None and caught.value.decision.verdict == "speech"
    rain = decode(FIXTURES.parent / "esc10" / "rain__1-17367-A.flac").mono()
    with pytest.raises(NotMusic, match="noise or environmental sound") as caught:
        analyse_music(rain, task_types=["MusicTaggingVocal"])
    assert caught.value.decision is not None and caught.value.decision.verdict == "noise"
    with pytest.raises(NotMusic, match="silence") as caught:
        analyse_music(np.zeros(16000 * 3, dtype=np.float32), task_types=["MusicTaggingVocal"])
    assert caught.value.decision is not None and caught.value.decision.verdict == "silence"


@pytest.mark.parametrize("voice_to_music_db", [-6.0, 0.0, 6.0])
def test_speech_over_instruments_is_vocal_music(
    rendered: dict[str, np.ndarray], speech: np.ndarray, mandarin_speech: np.ndarray, voice_to_music_db: float
) -> None:
    """A voice over instruments is a song's shape, not speech: tagged, and vocal."""
    for music_name, voice in (
        ("string_quartet", speech),
        ("jazz_combo", mandarin_speech),
        ("nylon_guitar", speech),
    ):
        music = rendered[music_name]
        length = min(len(music), len(voice))
        gain = np.sqrt(np.mean(music[:length] ** 2) / np.mean(voice[:length] ** 2)) * 10 ** (
            voice_to_music_db / 20
        )
        mixed = (music[:length] + gain * voice[:length]).astype(np.float32)
        mixed /= max(1.0, float(np.abs(mixed).max()))
        analysis = analyse_music(mixed, task_types=["MusicTaggingVocal"])
        assert analysis.decision.is_music, (music_name, voice_to_music_db, analysis.decision.reason)


def test_tag_anyway_setting(home: Path, speech: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """TINGYIN_MUSIC_NON_MUSIC=tag: the operator's "tag anyway"; the verdict stays on the analysis."""
    from tingyin.config import reset_settings

    monkeypatch.setenv("TINGYIN_MUSIC_NON_MUSIC", "tag")
    reset_settings()
    analysis = analyse_music(speech, task_types=["MusicTaggingVocal", "MusicTaggingGenre34"])
    assert not analysis.decision.is_music and analysis.decision.verdict == "speech"
    assert analysis.results[0].tags == ("vocal",)
    with pytest.raises(NotMusic):  # an explicit choice of the caller wins over the setting
        analyse_music(speech, task_types=["MusicTaggingVocal"], refuse_non_music=True)
