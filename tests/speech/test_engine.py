"""The speech engine on real clips with the real Whisper-base model (loaded once for the module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tingyin.audio import decode
from tingyin.errors import InvalidRequest
from tingyin.eval.text import edit_counts, scoring_units
from tingyin.speech import HotWord, TranscribeOptions, detect_language, iter_utterances, transcribe
from tingyin.speech.types import Transcript

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "speech"

pytestmark = pytest.mark.slow


def _clip(name: str) -> np.ndarray:
    return decode(FIXTURES / f"{name}.flac").samples


def _cer(reference: str, hypothesis: str) -> float:
    counts = edit_counts(scoring_units(reference, "CER"), scoring_units(hypothesis, "CER"))
    return counts.errors / counts.reference_length


def _assert_timestamps_sane(transcript: Transcript) -> None:
    previous_end = 0
    previous_word_start = 0
    for utterance in transcript.utterances:
        assert previous_end <= utterance.start_ms <= utterance.end_ms <= transcript.duration_ms
        previous_end = utterance.end_ms
        for word in utterance.words:
            assert utterance.start_ms <= word.start_ms <= word.end_ms <= utterance.end_ms
            assert word.start_ms >= previous_word_start
            previous_word_start = word.start_ms


@pytest.fixture(scope="module")
def finance_zh() -> Transcript:
    return transcribe(_clip("BAC009S0252W0131"), TranscribeOptions(language="zh"))


def test_mandarin_transcript_is_close_to_the_reference(finance_zh: Transcript) -> None:
    assert _cer("金融系统似乎也在加大对房地产的投资力度", finance_zh.text) <= 0.15
    assert finance_zh.language == "zh"
    assert finance_zh.duration_ms == pytest.approx(5388, abs=5)


def test_character_timestamps_are_monotonic_and_inside_the_audio(finance_zh: Transcript) -> None:
    _assert_timestamps_sane(finance_zh)
    words = [w for u in finance_zh.utterances for w in u.words]
    assert len(words) >= 15  # one entry per Chinese character
    assert all(len(w.text) == 1 for w in words)
    # Aligned to speech: the clip starts with ~0.2 s of silence and the last character ends near the end.
    assert 100 <= words[0].start_ms <= 1200
    assert words[-1].end_ms >= 3500


def test_itn_switch_changes_number_form() -> None:
    audio = _clip("BAC009S0252W0396")  # 马龙以一百一十七比一百一十六收获前两局胜利
    with_itn = transcribe(audio, TranscribeOptions(language="zh", itn=True)).text
    without_itn = transcribe(audio, TranscribeOptions(language="zh", itn=False)).text
    assert "117" in with_itn and "116" in with_itn
    assert not any(ch.isdigit() for ch in without_itn)
    assert "一百一十七" in without_itn
    assert _cer("马龙以一百一十七比一百一十六收获前两局胜利", without_itn) <= 0.15


def test_punctuation_switch(finance_zh: Transcript) -> None:
    assert finance_zh.text.endswith("。")
    bare = transcribe(_clip("BAC009S0252W0131"), TranscribeOptions(language="zh", punctuation=False))
    assert bare.text and not any(ch in bare.text for ch in "。，？！,.?!")
    english = transcribe(_clip("LJ002-0114"), TranscribeOptions(language="en", punctuation=False))
    assert english.text.islower() or english.text[0].isupper()
    assert "." not in english.text and " " in english.text


def test_english_transcript_and_word_timestamps() -> None:
    transcript = transcribe(_clip("LJ002-0114"), TranscribeOptions(language="auto"))
    assert transcript.language == "en"
    reference = "and imprisonment for debt has almost entirely disappeared"
    counts = edit_counts(scoring_units(reference, "WER"), scoring_units(transcript.text, "WER"))
    assert counts.errors <= 1
    words = [w.text.lower() for u in transcript.utterances for w in u.words]
    assert "imprisonment" in words
    _assert_timestamps_sane(transcript)


def test_silence_and_noise_give_empty_text() -> None:
    silence = np.zeros(16000 * 5, dtype=np.float32)
    assert transcribe(silence, TranscribeOptions(language="zh")).text == ""
    noise = (np.random.default_rng(0).standard_normal(16000 * 5) * 0.003).astype(np.float32)
    result = transcribe(noise, TranscribeOptions(language="auto"))
    assert result.text == "" and result.utterances == []
    assert transcribe(np.zeros(0, dtype=np.float32)).text == ""


def test_hot_word_fixes_a_misspelt_name() -> None:
    audio = _clip("BAC009S0150W0016")  # 盛源生活广场; the plain model writes the name with other characters
    plain = transcribe(audio, TranscribeOptions(language="zh", punctuation=False)).text
    assert "盛源" not in plain
    biased = transcribe(
        audio, TranscribeOptions(language="zh", punctuation=False, hot_words=(HotWord("盛源", 8),))
    ).text
    assert "盛源生活广场" in biased


def test_vocabulary_phrase_comes_out_exactly_in_english() -> None:
    audio = _clip("LJ001-0126")  # "Most of Jenson's letters..."; the plain model writes "Jensen's"
    plain = transcribe(audio, TranscribeOptions(language="en")).text
    assert "Jenson" not in plain
    biased = transcribe(audio, TranscribeOptions(language="en", vocabulary=("Jenson",))).text
    assert "Jenson" in biased


def test_negative_weight_suppresses_a_word(finance_zh: Transcript) -> None:
    assert "房地产" in finance_zh.text
    suppressed = transcribe(
        _clip("BAC009S0252W0131"), TranscribeOptions(language="zh", hot_words=(HotWord("房地产", -10),))
    )
    assert "房地产" not in suppressed.text
    assert "金融" in suppressed.text


def test_generator_reports_progress_and_matches_transcribe(finance_zh: Transcript) -> None:
    seen: list[float] = []
    utterances = list(
        iter_utterances(_clip("BAC009S0252W0131"), TranscribeOptions(language="zh"), seen.append)
    )
    assert "".join(u.text for u in utterances) == finance_zh.text
    assert seen and seen[-1] == pytest.approx(1.0)
    assert seen == sorted(seen)


def test_long_audio_with_pauses_is_segmented() -> None:
    pause = np.zeros(16000 * 3, dtype=np.float32)
    audio = np.concatenate([_clip("BAC009S0252W0131"), pause, _clip("LJ002-0114")])
    transcript = transcribe(audio, TranscribeOptions(language="zh-en"))
    assert len(transcript.utterances) >= 2
    languages = {u.language for u in transcript.utterances}
    assert languages == {"zh", "en"}
    assert "房地产" in transcript.text and "disappeared" in transcript.text.lower()
    _assert_timestamps_sane(transcript)
    # Nothing is placed inside the 3 s pause.
    pause_start, pause_end = 5388 + 300, 5388 + 2700
    for utterance in transcript.utterances:
        assert utterance.end_ms <= pause_start or utterance.start_ms >= pause_end


def test_detect_language() -> None:
    assert detect_language(_clip("BAC009S0252W0131"))[0] == "zh"
    language, probability = detect_language(_clip("LJ002-0114"))
    assert language == "en" and 0.5 < probability <= 1.0


@pytest.mark.parametrize(
    "options",
    [
        TranscribeOptions(language="fr-xx"),
        TranscribeOptions(hot_words=(HotWord("股票", 11),)),
        TranscribeOptions(hot_words=(HotWord("股票", -10.5),)),
        TranscribeOptions(hot_words=(HotWord("  ", 3),)),
        TranscribeOptions(vocabulary=("",)),
        TranscribeOptions(extra={"beam_size": "zero"}),
    ],
)
def test_bad_options_raise_invalid_request(options: TranscribeOptions) -> None:
    with pytest.raises(InvalidRequest):
        transcribe(np.zeros(16000, dtype=np.float32), options)


def test_bad_audio_raises_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        transcribe(np.zeros((2, 3, 4), dtype=np.float32))
    with pytest.raises(InvalidRequest):
        transcribe(np.zeros(16000, dtype=np.int16))


def test_without_word_timestamps_utterances_still_span_the_speech(finance_zh: Transcript) -> None:
    plain = transcribe(_clip("BAC009S0252W0131"), TranscribeOptions(language="zh", word_timestamps=False))
    assert plain.text == finance_zh.text
    assert all(u.words == [] for u in plain.utterances)
    _assert_timestamps_sane(plain)
    assert plain.utterances[0].start_ms < 1000 and plain.utterances[-1].end_ms > 4000


def test_generator_checks_options_at_the_call() -> None:
    with pytest.raises(InvalidRequest):
        iter_utterances(np.zeros(16000, dtype=np.float32), TranscribeOptions(language="klingon"))
