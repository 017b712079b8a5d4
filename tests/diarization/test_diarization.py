"""Diarization on real speech: AISHELL clips of two speakers joined into a conversation (fixtures),
plus the VAD, the speaker encoder and assigning ASR words to speakers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tingyin.audio import decode
from tingyin.errors import InvalidRequest
from tingyin.eval.diarization import diarization_error
from tingyin.models import get_manager
from tingyin.speech.diarization import SpeakerTurn, assign_speakers, diarize
from tingyin.speech.speaker_embedding import SpeakerEncoder, cosine_similarity, speaker_embedding
from tingyin.speech.types import Utterance, Word
from tingyin.speech.vad import SileroVad, speech_probabilities, speech_regions

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "diarization"
SPEAKER_A = ["BAC009S0150W0191", "BAC009S0150W0158", "BAC009S0150W0209"]
SPEAKER_B = ["BAC009S0252W0279", "BAC009S0252W0111", "BAC009S0252W0358"]
RATE = 16000


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    return {name: decode(FIXTURES / f"{name}.flac").samples for name in SPEAKER_A + SPEAKER_B}


@pytest.fixture(scope="module")
def conversation(clips: dict[str, np.ndarray]) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """A, B, A, B, A, B: six turns, with the clip boundaries as reference turns (seconds)."""
    order = [SPEAKER_A[0], SPEAKER_B[0], SPEAKER_A[1], SPEAKER_B[1], SPEAKER_A[2], SPEAKER_B[2]]
    turns, position = [], 0
    for name in order:
        length = clips[name].shape[0]
        turns.append((position / RATE, (position + length) / RATE, "A" if name in SPEAKER_A else "B"))
        position += length
    return np.concatenate([clips[name] for name in order]), turns


def test_two_speaker_conversation_gets_two_speakers_with_the_right_turns(
    home: Path, conversation: tuple[np.ndarray, list[tuple[float, float, str]]]
) -> None:
    audio, reference_turns = conversation
    turns = diarize(audio, RATE)
    assert {turn.speaker for turn in turns} == {1, 2}
    assert turns[0].speaker == 1  # numbered by first appearance
    assert all(turn.start_ms < turn.end_ms for turn in turns)
    # Every reference turn is covered (≥ 90 %) by one hypothesis speaker, alternating 1, 2, 1, 2...
    for index, (start, end, _) in enumerate(reference_turns):
        covered = {
            speaker: sum(
                max(0, min(end * 1000, t.end_ms) - max(start * 1000, t.start_ms))
                for t in turns
                if t.speaker == speaker
            )
            for speaker in (1, 2)
        }
        expected = 1 if index % 2 == 0 else 2
        assert covered[3 - expected] < 0.1 * (covered[expected] + 1), (index, covered, turns)
    reference: dict[str, list[tuple[float, float]]] = {}
    for start, end, name in reference_turns:
        reference.setdefault(name, []).append((start, end))
    hypothesis: dict[int, list[tuple[float, float]]] = {}
    for turn in turns:
        hypothesis.setdefault(turn.speaker, []).append((turn.start_ms / 1000, turn.end_ms / 1000))
    errors = diarization_error(reference, hypothesis, collar=0.25)
    # The reference counts the clips' leading/trailing silence as speech, so some "miss" is expected.
    assert errors.confusion == 0.0
    assert errors.der < 0.12


def test_the_recognisers_speech_map_stands_in_for_the_vad(
    home: Path, conversation: tuple[np.ndarray, list[tuple[float, float, str]]]
) -> None:
    """A recording that is transcribed and diarized runs the VAD once: diarization takes the recogniser's
    frame probabilities (the same Silero model) and finds the same turns."""
    audio, _ = conversation
    given = speech_probabilities(audio, RATE)
    assert diarize(audio, RATE, speech_probabilities=given) == diarize(audio, RATE)
    # Other scores give other regions: the given ones are what it uses.
    assert diarize(audio, RATE, speech_probabilities=np.zeros_like(given)) == []


def test_the_shared_models_count_as_in_use_while_a_diarization_uses_them(
    home: Path,
    conversation: tuple[np.ndarray, list[tuple[float, float, str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The model manager drops only models nobody uses: the VAD and the speaker encoder are held for as
    long as a diarization works with them (a long recording's outlasts the idle TTL), not only while it
    looks them up."""
    manager = get_manager()
    users: dict[str, list[int]] = {"vad": [], "features": [], "windows": []}
    probabilities, features, embed_windows = (
        SileroVad.probabilities,
        SpeakerEncoder.features,
        SpeakerEncoder.embed_windows,
    )

    def probabilities_seen(vad: SileroVad, *args: Any) -> Any:
        users["vad"].append(manager.users("vad:silero"))
        return probabilities(vad, *args)

    def features_seen(encoder: SpeakerEncoder, *args: Any) -> Any:
        users["features"].append(manager.users("speaker:dvector"))
        return features(encoder, *args)

    def embed_windows_seen(encoder: SpeakerEncoder, *args: Any) -> Any:
        users["windows"].append(manager.users("speaker:dvector"))
        return embed_windows(encoder, *args)

    monkeypatch.setattr(SileroVad, "probabilities", probabilities_seen)
    monkeypatch.setattr(SpeakerEncoder, "features", features_seen)
    monkeypatch.setattr(SpeakerEncoder, "embed_windows", embed_windows_seen)
    audio, _ = conversation
    assert {turn.speaker for turn in diarize(audio, RATE)} == {1, 2}
    assert users["vad"] == [1] and users["features"] == [1]
    assert users["windows"] and set(users["windows"]) == {1}
    assert manager.users("vad:silero") == manager.users("speaker:dvector") == 0  # given back


def test_one_speaker_gets_one_speaker(home: Path, clips: dict[str, np.ndarray]) -> None:
    audio = np.concatenate([clips[name] for name in SPEAKER_B])
    turns = diarize(audio, RATE)
    assert turns and {turn.speaker for turn in turns} == {1}
    speech_ms = sum(turn.end_ms - turn.start_ms for turn in turns)
    assert 0.7 * audio.shape[0] / RATE * 1000 < speech_ms <= audio.shape[0] / RATE * 1000


def test_forced_speaker_count_and_bad_input(home: Path, clips: dict[str, np.ndarray]) -> None:
    audio = np.concatenate([clips[SPEAKER_A[0]], clips[SPEAKER_B[0]]])
    turns = diarize(audio, RATE, num_speakers=2)
    assert [turn.speaker for turn in turns] == [1, 2]
    boundary_ms = clips[SPEAKER_A[0]].shape[0] * 1000 / RATE
    assert turns[0].end_ms <= boundary_ms + 300 and turns[1].start_ms >= boundary_ms - 300
    assert diarize(np.zeros(RATE * 3, dtype=np.float32), RATE) == []
    with pytest.raises(InvalidRequest):
        diarize(np.zeros((2, RATE), dtype=np.float32), RATE)
    with pytest.raises(InvalidRequest):
        diarize(audio, RATE, num_speakers=0)


def test_speaker_count_bounds(
    home: Path, clips: dict[str, np.ndarray], conversation: tuple[np.ndarray, list]
) -> None:
    audio, _ = conversation
    assert {turn.speaker for turn in diarize(audio, RATE, max_speakers=1)} == {1}
    one_speaker = np.concatenate([clips[name] for name in SPEAKER_B])
    # Told there are at least two, the clustering is cut at two instead of stopping at its threshold.
    turns = diarize(one_speaker, RATE, min_speakers=2)
    assert {turn.speaker for turn in turns} == {1, 2}
    assert {turn.speaker for turn in diarize(audio, RATE, min_speakers=2, max_speakers=2)} == {1, 2}
    with pytest.raises(InvalidRequest):
        diarize(audio, RATE, min_speakers=3, max_speakers=2)
    with pytest.raises(InvalidRequest):
        diarize(audio, RATE, min_speakers=0)


def test_speaker_embeddings_separate_the_two_speakers(home: Path, clips: dict[str, np.ndarray]) -> None:
    a1, a2 = (speaker_embedding(clips[name]) for name in SPEAKER_A[:2])
    b1 = speaker_embedding(clips[SPEAKER_B[0]])
    assert a1.shape == (256,) and np.linalg.norm(a1) == pytest.approx(1.0, abs=1e-4)
    assert cosine_similarity(a1, a2) > cosine_similarity(a1, b1) + 0.1
    # Input at another rate is resampled to 16 kHz first and gives nearly the same d-vector.
    from tingyin.audio import resample

    at_32k = resample(clips[SPEAKER_A[0]], RATE, 32000)
    assert cosine_similarity(speaker_embedding(at_32k, 32000), a1) > 0.95


def test_vad_finds_speech_between_silences(home: Path, clips: dict[str, np.ndarray]) -> None:
    silence = np.zeros(RATE, dtype=np.float32)
    speech = clips[SPEAKER_A[0]]
    regions = speech_regions(np.concatenate([silence, speech, silence]), RATE)
    assert regions
    assert regions[0][0] >= RATE and regions[-1][1] <= 2 * RATE + speech.shape[0]
    assert sum(end - start for start, end in regions) > 0.6 * speech.shape[0]
    assert speech_regions(silence, RATE) == []
    assert speech_regions(np.zeros(0, dtype=np.float32), RATE) == []


def _word(text: str, start: int, end: int) -> Word:
    return Word(text, start, end)


def test_assign_speakers_by_overlap_and_splits_at_speaker_changes() -> None:
    turns = [SpeakerTurn(0, 2000, 1), SpeakerTurn(2100, 4000, 2), SpeakerTurn(4200, 6000, 1)]
    whole = Utterance("你好", 100, 900, [_word("你", 100, 400), _word("好", 400, 900)], "zh")
    spanning = Utterance(
        "请问 有什么 可以 帮您",
        1200,
        3800,
        [
            _word("请问", 1200, 1800),
            _word(" 有什么", 2200, 2800),
            _word(" 可以", 2800, 3300),
            _word(" 帮您", 3300, 3800),
        ],
        "zh",
    )
    no_words = Utterance("嗯", 4500, 5000, [], "zh")
    in_gap = Utterance("啊", 2000, 2080, [], "zh")
    result = assign_speakers([whole, spanning, no_words, in_gap], turns)
    assert [u.speaker for u in result] == [1, 1, 2, 1, 1]
    assert result[0] == whole._replace(speaker=1)
    assert (result[1].text, result[1].start_ms, result[1].end_ms) == ("请问", 1200, 1800)
    assert (result[2].text, result[2].start_ms, result[2].end_ms) == ("有什么 可以 帮您", 2200, 3800)
    assert [w.text for w in result[2].words] == [" 有什么", " 可以", " 帮您"]
    assert assign_speakers([whole], []) == [whole]


def test_english_words_keep_their_spaces_when_split() -> None:
    turns = [SpeakerTurn(0, 1000, 1), SpeakerTurn(1000, 3000, 2)]
    words = [
        _word(" Hello", 0, 400),
        _word(" there.", 400, 900),
        _word(" Hi", 1200, 1500),
        _word(" Bob.", 1500, 1900),
    ]
    result = assign_speakers([Utterance("Hello there. Hi Bob.", 0, 1900, words, "en")], turns)
    assert [(u.text, u.speaker) for u in result] == [("Hello there.", 1), ("Hi Bob.", 2)]


def test_words_without_duration_never_make_an_empty_utterance() -> None:
    turns = [SpeakerTurn(0, 1000, 1), SpeakerTurn(1000, 3000, 2)]
    words = [
        _word("宇", 900, 1400),
        _word("的", 1400, 1400),  # clamped to an instant under speaker 2, between speakers 1 and 3
        _word("宙", 1400, 1400),
        _word("前", 1500, 2000),
    ]
    clamped = Utterance("宇的宙前", 900, 2000, words, "zh")
    three = [SpeakerTurn(0, 1350, 1), SpeakerTurn(1350, 1450, 2), SpeakerTurn(1450, 3000, 3)]
    result = assign_speakers([clamped], three)
    assert all(u.end_ms > u.start_ms for u in result)
    assert [(u.text, u.speaker) for u in result] == [("宇的宙", 1), ("前", 3)]
    at_start = Utterance("的前", 1000, 2000, [_word("的", 1000, 1000), _word("前", 1000, 2000)], "zh")
    assert [(u.text, u.speaker) for u in assign_speakers([at_start], turns)] == [("的前", 2)]


def test_evaluation_on_the_shared_meeting_clips(home: Path, shared_testdata: Path) -> None:
    from tingyin.eval.diarization import evaluate_diarization, format_diarization_report

    result = evaluate_diarization(shared_testdata / "diarization" / "manifest.csv", limit=2)
    assert [clip.id for clip in result.clips] == ["pyannote_debug_trn00", "pyannote_debug_trn01"]
    assert all(0.0 <= clip.der <= 1.0 and clip.errors.reference > 0 for clip in result.clips)
    assert result.rtf > 0
    report = format_diarization_report(result)
    assert "pyannote_debug_trn00" in report and "overall DER" in report
