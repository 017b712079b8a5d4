"""The recording pipeline on a real two-speaker conversation with short pauses (the case that lost
sentences): every sentence comes back, utterances never span two speakers, options are echoed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tingyin.audio import DecodedAudio, decode
from tingyin.eval.text import edit_counts, scoring_units
from tingyin.speech import DecodeOptions, Recognizer, RecordingOptions, transcribe_recording
from tingyin.speech.errors import NoSpeech

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RATE = 16000
# (fixture, speaker, reference): two AISHELL speakers taking turns, as in a call.
SENTENCES = [
    ("diarization/BAC009S0150W0191", "A", "从政策实施的难易程度上来说"),
    ("diarization/BAC009S0252W0279", "B", "可穿戴设备主要分为两大类"),
    ("diarization/BAC009S0150W0158", "A", "观察三十年来的新增人口曲线"),
    ("speech/BAC009S0252W0131", "B", "金融系统似乎也在加大对房地产的投资力度"),
    ("diarization/BAC009S0150W0209", "A", "加大对中小企业的扶持力度"),
    ("diarization/BAC009S0252W0358", "B", "关注和喜欢这项运动的青少年在减少"),
    ("speech/BAC009S0150W0016", "A", "盛源生活广场"),
    ("speech/BAC009S0252W0179", "B", "公积金首套房二套房首付分别降至二成三成"),
]
PAUSES_S = [0.5, 0.3, 0.6, 0.5, 0.4, 0.7, 0.5]

pytestmark = pytest.mark.slow


def _cer(reference: str, hypothesis: str) -> float:
    counts = edit_counts(scoring_units(reference, "CER"), scoring_units(hypothesis, "CER"))
    return counts.errors / counts.reference_length


@pytest.fixture(scope="module")
def conversation() -> tuple[DecodedAudio, list[tuple[float, float, str, str]]]:
    pieces, spans, position = [], [], 0
    for index, (name, speaker, text) in enumerate(SENTENCES):
        clip = decode(FIXTURES / f"{name}.flac").samples
        spans.append((position / RATE, (position + len(clip)) / RATE, speaker, text))
        pieces.append(clip)
        position += len(clip)
        if index < len(PAUSES_S):
            pause = np.zeros(int(PAUSES_S[index] * RATE), dtype=np.float32)
            pieces.append(pause)
            position += len(pause)
    samples = np.concatenate(pieces)
    return DecodedAudio(samples, RATE, RATE, 1, "wav"), spans


def test_no_sentence_is_lost_and_speakers_never_share_an_utterance(
    recognizer: Recognizer, conversation: tuple[DecodedAudio, list[tuple[float, float, str, str]]]
) -> None:
    audio, spans = conversation
    options = RecordingOptions(decode=DecodeOptions(language="zh", punctuation=False), diarize=True)
    result = transcribe_recording(audio, options, recognizer)
    utterances = result.utterance_list()
    assert result.options == options and result.speakers == [1, 2]
    for start, end, _, reference in spans:
        heard = "".join(
            u.text for u in utterances if min(end, u.end_ms / 1000) - max(start, u.start_ms / 1000) > 0.3
        )
        assert _cer(reference, heard) <= 0.35, (reference, heard)
    # Each utterance lies inside one sentence (give or take the VAD's padding), so inside one speaker's turn.
    for u in utterances:
        inside = [s for s in spans if u.start_ms / 1000 >= s[0] - 0.35 and u.end_ms / 1000 <= s[1] + 0.35]
        assert inside, f"utterance {u.text!r} ({u.start_ms}-{u.end_ms} ms) spans two sentences"
    # Speakers alternate like the reference: one hypothesis speaker per reference speaker.
    label_of: dict[str, set[int | None]] = {"A": set(), "B": set()}
    for u in utterances:
        middle = (u.start_ms + u.end_ms) / 2000
        owner = next(s for s in spans if s[0] - 0.35 <= middle <= s[1] + 0.35)
        label_of[owner[2]].add(u.speaker)
    assert len(label_of["A"]) == 1 and len(label_of["B"]) == 1 and label_of["A"] != label_of["B"]
    # Words carry the decoder's probabilities now, not a constant.
    probabilities = {w.probability for u in utterances for w in u.words}
    assert len(probabilities) > 5 and all(0.0 < p <= 1.0 for p in probabilities)


def test_mandarin_with_english_words_keeps_them_in_latin_letters(recognizer: Recognizer) -> None:
    audio = decode(FIXTURES / "speech" / "BAC009S0252W0131.flac")
    english = decode(FIXTURES / "speech" / "LJ002-0114.flac").samples
    pause = np.zeros(RATE // 2, dtype=np.float32)
    mixed = DecodedAudio(np.concatenate([audio.samples, pause, english]), RATE, RATE, 1, "wav")
    result = transcribe_recording(mixed, RecordingOptions(decode=DecodeOptions(language="zh")), recognizer)
    assert "房地产" in result.text
    assert "imprisonment" in result.text.lower()


def test_silence_is_no_speech_unless_the_caller_accepts_it(recognizer: Recognizer) -> None:
    silence = DecodedAudio(np.zeros(RATE * 3, dtype=np.float32), RATE, RATE, 1, "wav")
    with pytest.raises(NoSpeech):
        transcribe_recording(silence, RecordingOptions(), recognizer)
    empty = transcribe_recording(silence, RecordingOptions(require_speech=False), recognizer)
    assert empty.text == "" and empty.utterances == [] and empty.duration_ms == 3000


def test_stereo_channels_are_transcribed_apart(recognizer: Recognizer) -> None:
    left = decode(FIXTURES / "speech" / "BAC009S0252W0131.flac").samples
    right = decode(FIXTURES / "speech" / "LJ002-0114.flac").samples
    length = max(len(left), len(right))
    stereo = np.zeros((2, length), dtype=np.float32)
    stereo[0, : len(left)] = left
    stereo[1, : len(right)] = right
    audio = DecodedAudio(stereo, RATE, RATE, 2, "wav")
    result = transcribe_recording(
        audio, RecordingOptions(decode=DecodeOptions(language="auto"), split_channels=True), recognizer
    )
    assert result.channels == 2
    by_channel = {u.channel: u for u in result.utterance_list()}
    assert "房地产" in by_channel[0].text and by_channel[0].speaker == 1
    assert "disappeared" in by_channel[1].text.lower() and by_channel[1].speaker == 2
