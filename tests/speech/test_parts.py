"""Fast checks of the speech core's pure parts: options, chunking, guards, coverage, timing, text."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from pydantic import ValidationError

from tingyin.errors import InvalidRequest
from tingyin.jobs.transcription import TranscriptionParams
from tingyin.speech import guards
from tingyin.speech.chunking import SAMPLE_RATE, Chunk, SpeechMap, make_chunks
from tingyin.speech.decoding import (
    decoding_stats,
    discarded,
    echoes,
    merge_patch,
    output_style,
    pad_seconds,
    skipped_islands,
    sparse_regions,
    speech_inside,
    spoken_units,
    swallowed,
    uncovered,
    without_stretched_end,
)
from tingyin.speech.hotwords import plan
from tingyin.speech.options import DecodeOptions, HotWord
from tingyin.speech.pipeline import RecordingOptions
from tingyin.speech.postprocess import DecodedChunk, punctuate_and_split, rewrite_text
from tingyin.speech.textnorm import strip_punctuation
from tingyin.speech.timing import TimedChar, monotonic, snap_to_speech
from tingyin.speech.types import DecodingStats, Utterance, UtteranceRecord, Word
from tingyin.speech.whisper import (
    FULL_WINDOW_FRAMES,
    ComputeSlots,
    Hypothesis,
    built_in_passing_thread,
    window_frames,
)

S = SAMPLE_RATE


def test_decode_options_are_validated_and_frozen() -> None:
    options = DecodeOptions.parse({"language": "zh", "beam_size": "4", "second_pass": "false"})
    assert options.beam_size == 4 and options.second_pass is False
    with pytest.raises(ValidationError):  # frozen
        options.beam_size = 3  # type: ignore[misc]
    assert options.with_changes(beam_size=2).beam_size == 2
    for bad in ({"language": "de"}, {"beam_size": 11}, {"vocabulary": ["x" * 51]}, {"typo_field": 1}):
        with pytest.raises(InvalidRequest):
            DecodeOptions.parse(bad)


def test_task_temperature_and_prompt_are_checked() -> None:
    options = DecodeOptions.parse({"task": "translate", "temperature": "0.4", "prompt": "  Jenson  "})
    assert options.translating and options.temperature == 0.4 and options.prompt == "Jenson"
    assert DecodeOptions(prompt="   ").prompt is None and not DecodeOptions().translating
    for bad in (
        {"task": "summarise"},
        {"temperature": 1.5},
        {"temperature": -0.1},
        {"temperature": "nan"},
        {"prompt": "x" * 1001},
    ):
        with pytest.raises(InvalidRequest):
            DecodeOptions.parse(bad)


def test_translation_output_is_english_text() -> None:
    translate = DecodeOptions(task="translate", language="zh")
    assert output_style("zh", "zh", translate) == ""  # no style prompt for Whisper base to repeat
    assert output_style("zh-en", "zh", DecodeOptions(language="zh-en")) == "zh-en"
    assert output_style("auto", "en", DecodeOptions()) == "en"
    chunk = Chunk(0, 3 * S, [(0, 3 * S)])
    item = DecodedChunk(
        chunk, "zh", "He won two games, one hundred and seventeen to one hundred and sixteen.", []
    )
    # The spoken language was Mandarin, the text is English: English punctuation and English numbers.
    text = rewrite_text(item, translate, plan((), ()), None)
    assert "117" in text and "116" in text and "，" not in text
    assert text == rewrite_text(
        item._replace(language="en"), DecodeOptions(language="en"), plan((), ()), None
    )
    chinese = rewrite_text(
        DecodedChunk(chunk, "zh", "他赢了, 两局", []), DecodeOptions(language="zh"), plan((), ()), None
    )
    assert "，" in chinese


def test_decoding_stats_are_whispers_window_figures() -> None:
    chunk = Chunk(2 * S, 5 * S, [(2 * S, 5 * S)])
    stats = decoding_stats(chunk, Hypothesis([1, 2, 3], "abc", -2.0), "hello hello", 0.4, 0.25)
    assert stats.seek == 200  # mel frames, 100 a second
    assert stats.avg_logprob == pytest.approx(-0.5)  # per token, the end token counted
    assert stats.temperature == 0.4 and stats.no_speech_prob == 0.25
    assert stats.compression_ratio == pytest.approx(guards.compression_ratio("hello hello"))
    item = DecodedChunk(Chunk(0, 10 * S, [(0, 10 * S)]), "en", "hello there", _chars("hello there", 0.5, 0.1))
    item = item._replace(decoding=stats)
    patch = DecodedChunk(Chunk(5 * S, 9 * S, [(5 * S, 9 * S)]), "en", "again", _chars("again", 5.5, 0.1))
    merged = merge_patch(item, patch)
    assert merged.decoding is not None and merged.decoding.seek == 200
    assert merged.decoding.compression_ratio == pytest.approx(guards.compression_ratio(merged.text))
    # Stored and read back with the utterance.
    utterance = Utterance("hello", 0, 500, [Word("hello", 0, 500)], "en", decoding=stats)
    record = UtteranceRecord.of(utterance)
    assert record.decoding is not None and record.decoding.seek == 200
    back = record.utterance().decoding
    assert isinstance(back, DecodingStats) and back.temperature == 0.4
    assert UtteranceRecord.of(utterance._replace(decoding=None)).utterance().decoding is None


def test_a_mandarin_request_gets_the_shorter_window() -> None:
    chunk = Chunk(0, int(4.5 * S), [(0, int(4.5 * S))])
    # 4.5 s of speech: 2 s of silence after it for Mandarin, 3 s otherwise, in whole seconds of 100 frames.
    assert window_frames([chunk], full_window=False, pad_s=pad_seconds("zh")) == 700
    for language in ("en", "auto", "zh-en", "yue"):
        assert window_frames([chunk], full_window=False, pad_s=pad_seconds(language)) == 800
    assert window_frames([chunk], full_window=True, pad_s=pad_seconds("zh")) == FULL_WINDOW_FRAMES


def test_hot_words_are_parsed_in_one_place() -> None:
    words = HotWord.parse_list("盛源:8, 股票:-3.5,证监会")
    assert [(w.text, w.weight) for w in words] == [("盛源", 8.0), ("股票", -3.5), ("证监会", 5.0)]
    assert HotWord.parse_list(None) == ()
    for bad in ("盛源:eleven", "盛源:11", " :3"):
        with pytest.raises(InvalidRequest):
            HotWord.parse_list(bad)


def test_recording_options_and_job_params_are_checked_at_submit() -> None:
    with pytest.raises(InvalidRequest):
        RecordingOptions.parse(num_speakers=9, max_speakers=8)
    with pytest.raises(InvalidRequest):
        RecordingOptions.parse(min_speakers=3, max_speakers=2)
    with pytest.raises(InvalidRequest):
        RecordingOptions.parse(num_speakers=2, min_speakers=3)
    assert RecordingOptions.parse(min_speakers=2, max_speakers=4).min_speakers == 2
    params = TranscriptionParams.parse(
        source={"url": "https://example.com/a.wav"}, audio={"pcm_rate": "8000"}
    )
    assert params.audio.pcm_rate == 8000
    for bad in (
        {"source": {}},
        {"source": {"url": "https://x/a.wav", "blob": "0" * 64}},
        {"source": {"blob": "../../etc/passwd"}},
        {"source": {"url": "https://x/a.wav"}, "audio": {"pcm_rate": "abc"}},
        {
            "source": {"url": "https://x/a.wav"},
            "recording": {"decode": {"hot_words": [{"text": "a", "weight": 20}]}},
        },
    ):
        with pytest.raises(InvalidRequest):
            TranscriptionParams.parse(bad)
    # Stored as JSON and read back by the worker unchanged.
    assert TranscriptionParams.parse(params.model_dump(mode="json")) == params


def test_chunks_merge_close_regions_up_to_the_target() -> None:
    from tingyin.speech.chunking import CHUNK_GAP_S, TARGET_CHUNK_S, TINY_GAP_S

    assert (TARGET_CHUNK_S, CHUNK_GAP_S, TINY_GAP_S) == (4.0, 1.0, 0.3)  # the figures below assume these

    def at(seconds: float) -> int:
        return int(seconds * S)

    regions = [
        (0, at(1.5)),
        (at(2.0), at(3.5)),  # a pause under 1 s and 3.5 s in all: merged
        (at(5.0), at(7.5)),  # a pause of 1.5 s: a chunk of its own
        (at(7.6), at(10.5)),  # a pause the VAD's padding nearly closes: merged past the target
        (at(11.0), at(12.0)),  # a short pause, but 7 s in all is past the target
    ]
    chunks = make_chunks(regions)
    assert [(c.start, c.end) for c in chunks] == [(0, at(3.5)), (at(5.0), at(10.5)), (at(11.0), at(12.0))]
    assert chunks[0].speech == [(0, at(1.5)), (at(2.0), at(3.5))]
    assert all(c.end - c.start <= 12 * S for c in make_chunks([(0, 30 * S)]))


def test_long_speech_is_split_at_its_least_speech_like_frame() -> None:
    frames = int(20 * S / 512)
    probabilities = np.full(frames, 0.95, dtype=np.float32)
    dip = int(9.0 * S / 512)
    probabilities[dip - 1 : dip + 2] = 0.2  # a short pause the VAD did not end the region for
    regions = SpeechMap(probabilities, frames * 512).regions()
    assert len(regions) == 2
    assert abs(regions[0][1] / S - 9.0) < 0.1
    assert regions[0][1] == regions[1][0]


def test_discarded_text_is_a_credit_or_the_style_prompt_of_its_language() -> None:
    assert discarded("英文是中英文。", "zh")  # the Mandarin prompt written back
    assert discarded("字幕由Amara.org社区提供", "zh")
    assert discarded("Thanks for watching!", "en")
    assert not discarded("英文是中英文。", "en")  # the English prompt is not what it echoes
    assert not discarded("看来三星的SAMSUNG PAY虽未能抢占先机", "zh")
    assert not discarded("", "zh")


def test_speech_the_vad_is_unsure_of_is_a_region_where_it_lies_apart() -> None:
    frame = 512 / S
    probabilities = np.zeros(int(10.0 / frame), dtype=np.float32)
    probabilities[int(1.0 / frame) : int(3.0 / frame)] = 0.9  # clear speech
    probabilities[int(0.7 / frame) : int(1.0 / frame)] = 0.4  # its uncertain onset
    probabilities[int(6.0 / frame) : int(6.6 / frame)] = 0.45  # a word on its own (a telephone line)
    probabilities[int(8.5 / frame) : int(8.6 / frame)] = 0.45  # too short to be speech
    regions = SpeechMap(probabilities, len(probabilities) * 512).regions()
    # The clear region keeps the extent the 0.5 threshold gives it (its onset is not pulled in); the
    # uncertain word is a region of its own; both padded by 0.25 s.
    expected = [(0.75, 3.25), (5.75, 6.85)]
    assert len(regions) == len(expected)
    for (start, end), (start_s, end_s) in zip(regions, expected, strict=True):
        assert abs(start / S - start_s) <= frame and abs(end / S - end_s) <= frame


def test_a_long_character_starts_after_the_last_pause_it_spans() -> None:
    frame = 512 / S
    probabilities = np.zeros(int(4.0 / frame), dtype=np.float32)
    probabilities[int(0.5 / frame) : int(1.5 / frame)] = 0.9  # the previous character's speech
    probabilities[int(2.1 / frame) : int(3.0 / frame)] = 0.9  # this one's, after a 0.6 s pause
    probabilities[int(2.5 / frame) : int(2.7 / frame)] = 0.1  # a dip inside it is no pause
    speech = SpeechMap(probabilities, len(probabilities) * 512)
    previous, spanning, short = snap_to_speech(
        [TimedChar("类", 0.2, 1.4), TimedChar("观", 1.3, 2.6), TimedChar("察", 2.6, 2.9)], speech
    )
    assert abs(previous.start - 0.5) < frame  # a chunk's first character: where its speech begins
    assert abs(spanning.start - 2.1) < frame and spanning.end == 2.6  # after the pause, not at its start
    assert short == TimedChar("察", 2.6, 2.9)  # short characters keep the alignment's times
    assert speech.last_onset(3.2, 3.9) is None


def test_an_utterance_without_duration_joins_its_neighbour() -> None:
    def utterance(text: str, start: int, end: int) -> Utterance:
        return Utterance(text, start, end, [Word(text, start, end, 0.9)], "zh")

    joined = monotonic(
        [utterance("宙前", 4000, 4400), utterance("宇的", 4300, 4350), utterance("约", 4500, 4800)], 0
    )
    assert [(u.text, u.start_ms, u.end_ms) for u in joined] == [("宙前宇的", 4000, 4400), ("约", 4500, 4800)]
    assert all(4000 <= w.start_ms <= w.end_ms <= 4400 for w in joined[0].words)
    # The first one inside the previous chunk's time joins the next; a lone one keeps a nominal millisecond.
    held = monotonic([utterance("宇", 3000, 3500), utterance("宙", 4100, 4400)], previous_end=4000)
    assert [(u.text, u.start_ms, u.end_ms) for u in held] == [("宇宙", 4000, 4400)]
    lone = monotonic([utterance("宇", 3000, 3500)], previous_end=4000)
    assert [(u.text, u.start_ms, u.end_ms) for u in lone] == [("宇", 4000, 4001)]


def test_short_unit_loops_are_loops() -> None:
    assert guards.is_loop("看来三星的４４４４４４４４４４４")
    assert not guards.is_loop("谢谢谢谢")
    assert not guards.is_loop("金融系统似乎也在加大对房地产的投资力度")


def test_a_phrase_or_digit_string_said_twice_in_a_row_repeats_itself() -> None:
    assert guards.repeats_itself("可穿戴设备可穿戴设备")
    assert guards.repeats_itself("but not always, but not always")
    # A phone number read once and written twice (三四九九四三二三 as 3499432334994323).
    assert guards.repeats_itself("3499432334994323。")
    assert guards.repeats_itself("拨打3499 4323 3499 4323")
    assert not guards.repeats_itself("88888888")  # one digit again and again is a number, not a repeat
    assert not guards.repeats_itself("1919102029")
    assert not guards.repeats_itself("2013年10月")


def test_the_style_prompt_written_back_is_an_echo_also_when_mangled() -> None:
    from tingyin.speech.decoding import STYLE_PROMPTS

    mandarin, cantonese = STYLE_PROMPTS["zh"], STYLE_PROMPTS["yue"]
    # What whisper-base wrote for a telephone-band "打开Let It Go", on two CPUs' int8 kernels.
    assert guards.echoes_prompt("英文是中英文。", mandarin)
    assert guards.echoes_prompt("英文是中央。", mandarin)
    assert guards.echoes_prompt("广东话嘅话嘅", cantonese)
    # A short answer that is one word of the prompt is speech; so is a sentence that shares a word with it.
    for speech in ("英文。", "以下", "保持", "以下是中国队的首发名单", "他的英文单词量不大"):
        assert not guards.echoes_prompt(speech, mandarin), speech
    # English prompts are never judged: three words of them in a row are common speech.
    assert not guards.echoes_prompt("This is a sentence", STYLE_PROMPTS["en"])


def test_stopped_early_and_empty_results_are_decoded_again() -> None:
    chunk = Chunk(0, 8 * S, [(0, 8 * S)])
    assert guards.needs_redecode("你好", chunk, "zh")
    assert guards.needs_redecode("", chunk, "zh")
    assert not guards.needs_redecode("金融系统似乎也在加大对房地产的投资力度", chunk, "zh")
    # A phone number read digit by digit is speech enough (it was decoded again with the full window).
    assert not guards.needs_redecode("13628066930", Chunk(0, 4 * S, [(0, 4 * S)]), "zh")
    assert guards.needs_redecode("1811", chunk, "en")
    assert guards.is_hallucination("字幕由Amara.org社区提供")
    assert not guards.is_hallucination("P M M")


def _chars(text: str, start: float, step: float) -> list[TimedChar]:
    return [TimedChar(ch, start + i * step, start + (i + 1) * step) for i, ch in enumerate(text)]


def test_speech_no_character_covers_is_found() -> None:
    frames = int(10 * S / 512)
    speech = SpeechMap(np.full(frames, 0.9, dtype=np.float32), frames * 512)
    chunk = Chunk(0, 10 * S, [(0, 10 * S)])
    # Characters cover 0.5-4.5 s; the speech goes on to 10 s: the tail is uncovered.
    item = DecodedChunk(chunk, "zh", "一二三四五六七八", _chars("一二三四五六七八", 0.5, 0.5))
    assert uncovered(item, speech) == [(4.5, 10.0)]
    # A character stretched over 4 s (the alignment parks skipped audio on it) is uncovered past 1 s.
    stretched = [*_chars("一二三", 0.2, 0.3), TimedChar("四", 1.1, 5.1), *_chars("五六七八九十", 5.1, 0.3)]
    item = DecodedChunk(chunk, "zh", "一二三四五六七八九十", stretched)
    found = uncovered(item, speech)
    assert found[0] == pytest.approx((2.1, 5.1))
    # Covered speech, or uncovered silence, is fine.
    silent = SpeechMap(np.zeros(frames, dtype=np.float32), frames * 512)
    item = DecodedChunk(chunk, "zh", "一二三四五六七八", _chars("一二三四五六七八", 0.5, 0.5))
    assert uncovered(item, silent) == []


def test_an_english_word_stretched_over_skipped_speech_is_uncovered() -> None:
    # Each letter of "the" holds 0.8 s, under the 1 s a unit may take, but the word holds 2.4 s: Whisper
    # skipped the words spoken there (a telephone-band clip came back as "In the 18th, printing ...").
    frames = int(6 * S / 512)
    speech = SpeechMap(np.full(frames, 0.9, dtype=np.float32), frames * 512)
    chunk = Chunk(0, 6 * S, [(0, 6 * S)])
    chars = [*_chars("In ", 0.2, 0.1), *_chars("the", 0.5, 0.8), *_chars(" 18th, printing", 2.9, 0.2)]
    item = DecodedChunk(chunk, "en", "In the 18th, printing", chars)
    assert [u.char for u in spoken_units(chars)] == ["In", "the", "1", "8", "th", "printing"]
    [(start, end)] = uncovered(item, speech)
    assert start == pytest.approx(1.5) and end == pytest.approx(2.9)


def test_a_patch_is_merged_in_time_order() -> None:
    chunk = Chunk(0, 10 * S, [(0, 10 * S)])
    item = DecodedChunk(chunk, "en", "hello there", _chars("hello there", 0.5, 0.1))
    patch = DecodedChunk(
        Chunk(5 * S, 9 * S, [(5 * S, 9 * S)]), "en", "general kenobi", _chars("general kenobi", 5.5, 0.1)
    )
    merged = merge_patch(item, patch)
    assert merged.text == "hello there general kenobi"
    assert [c.start for c in merged.chars] == sorted(c.start for c in merged.chars)


def test_a_patch_s_leading_space_does_not_land_inside_the_chunk_s_last_word() -> None:
    # The alignment put 巴 at 26.28 s; the English patch starts (its leading space) at 26.27 s, its first
    # letter at 26.73 s.
    own = [TimedChar("嘴", 26.04, 26.28), TimedChar("巴", 26.28, 26.52), TimedChar("。", 26.52, 26.52)]
    item = DecodedChunk(Chunk(int(24.8 * S), int(36.7 * S), []), "zh", "嘴巴。", own)
    patch_own = [TimedChar(" ", 26.27, 26.27), *_chars("In the", 26.73, 0.1)]
    patch = DecodedChunk(Chunk(int(26.27 * S), int(36.7 * S), []), "en", " In the", patch_own)
    assert merge_patch(item, patch).text == "嘴巴。 In the"


def test_a_patch_s_words_are_not_woven_into_the_chunk_s_words() -> None:
    # The patch starts (its margin) before the chunk's last word ends: sorted letter by letter this gave
    # "knee An loled d,are"; a word moves with its letters, punctuation with the word before it.
    own = [*_chars(" continues", 49.8, 0.06), *_chars(" kneeled", 50.41, 0.09), TimedChar(",", 51.13, 51.13)]
    item = DecodedChunk(Chunk(int(47 * S), int(58 * S), []), "en", " continues kneeled,", own)
    patch_own = [*_chars(" An old", 50.9, 0.1), *_chars(" are a watch house", 51.6, 0.1)]
    patch_chunk = Chunk(int(50.9 * S), int(53.9 * S), [])
    patch = DecodedChunk(patch_chunk, "en", " An old are a watch house", patch_own)
    assert merge_patch(item, patch).text == " continues kneeled, An old are a watch house"


def test_speech_swallowed_by_a_pause_and_a_stretched_word_is_found() -> None:
    frames = int(4.1 * S / 512)
    speech = SpeechMap(np.full(frames, 0.9, dtype=np.float32), frames * 512)
    chunk = Chunk(0, int(4.1 * S), [(0, int(4.1 * S))])
    # "We" holds 1.4 s after a 0.7 s pause: neither alone holds a second of uncovered speech, both do.
    chars = [*_chars("kneeled", 0.5, 0.09), *_chars(" We", 1.15, 0.7), *_chars(" are two", 3.3, 0.1)]
    item = DecodedChunk(chunk, "en", "kneeled We are two", chars)
    assert uncovered(item, speech) == []
    [(start, end)] = swallowed(item, speech)
    assert start == pytest.approx(1.13) and end == pytest.approx(3.25)
    # The same words with no speech in the pause: nothing was swallowed.
    quiet = np.full(frames, 0.9, dtype=np.float32)
    quiet[int(1.13 * S / 512) : int(1.85 * S / 512) + 1] = 0.0
    assert swallowed(item, SpeechMap(quiet, frames * 512)) == []


def test_a_word_stretched_over_a_second_of_skipped_speech_is_swallowed_too() -> None:
    # Inside a patch only `swallowed` searches (zh-en3-1: the patch's first word "We're", the said "where",
    # aligned over 2.4 s after 0.8 s of speech in the pause; "are a watch-house and a sentry-box" lay there).
    frames = int(5 * S / 512)
    speech = SpeechMap(np.full(frames, 0.9, dtype=np.float32), frames * 512)
    chunk = Chunk(0, 5 * S, [(0, 5 * S)])
    chars = [*_chars(" We're", 0.32, 0.48), *_chars(" two or more", 3.3, 0.1)]
    item = DecodedChunk(chunk, "en", "We're two or more", chars)
    [(start, end)] = swallowed(item, speech)
    assert start == 0.0 and end == pytest.approx(3.2)
    # Its second try leaves out the end of the stretched word, where the word itself was said.
    narrowed = without_stretched_end(chunk, start, end)
    assert narrowed is not None and narrowed.start == 0 and narrowed.end == pytest.approx(2.7 * S, abs=1)
    assert without_stretched_end(chunk, 2.0, 3.2) is None  # too little left


def test_pauses_inside_a_latin_word_or_number_get_no_comma_and_no_split() -> None:
    def timed(text: str, gaps: dict[int, float]) -> list[TimedChar]:
        chars, t = [], 0.0
        for k, char in enumerate(text):
            t += gaps.get(k, 0.0)
            chars.append(TimedChar(char, t, t + 0.1))
            t += 0.1
        return chars

    # "th|e" and "18|11" were stretched by the alignment over 0.5 s and 1 s; 好|的 is a real pause.
    pieces = punctuate_and_split(timed("In the 1811 好的", {5: 0.5, 9: 1.0, 13: 0.5}), True, True)
    assert ["".join(c.char for c in piece) for piece in pieces] == ["In the 1811 好，的"]


def test_a_patch_that_repeats_the_chunk_is_narrowed_to_the_skipped_speech() -> None:
    # A phone number (0.6-4.3 s) then "打开去大理" (5.4-7 s); Whisper wrote only the words, the alignment
    # stretched 打 over the digits, and the re-decode of 1.4-6.1 s wrote "打开" again.
    chunk = Chunk(int(0.6 * S), 7 * S, [(int(0.6 * S), int(4.3 * S)), (int(5.4 * S), 7 * S)])
    own = [TimedChar("打", 0.6, 5.9), *_chars("开去大理", 5.9, 0.25)]
    item = DecodedChunk(chunk, "zh", "打开去大理", own)
    gap = Chunk(int(1.4 * S), int(6.1 * S), [(int(1.4 * S), int(6.1 * S))])
    assert echoes(DecodedChunk(gap, "zh", "打开。", _chars("打开", 5.6, 0.2)), item)
    assert not echoes(DecodedChunk(gap, "zh", "打。", _chars("打", 5.6, 0.2)), item)  # one unit says little
    assert not echoes(DecodedChunk(gap, "zh", "开打", _chars("开打", 5.6, 0.2)), item)
    # Words, not letters, for other scripts: "on" is not inside "construction".
    english = DecodedChunk(
        chunk, "en", "the construction went on", _chars("the construction went on", 0.6, 0.2)
    )
    assert echoes(DecodedChunk(gap, "en", "Went on.", []), english)
    assert not echoes(DecodedChunk(gap, "en", "on the", []), english)
    # Only the speech region lying mostly inside the stretch (1.6-5.9 s) is decoded again.
    narrow = speech_inside(chunk, 1.6, 5.9, gap)
    assert narrow is not None and (narrow.start, narrow.end) == (int(0.6 * S), int(4.3 * S))
    assert speech_inside(chunk, 0.6, 7.0, Chunk(int(0.6 * S), 7 * S, [])) is None  # no narrower than the gap
    # Merged, the stretched character moves after the digits instead of standing before them.
    digits = DecodedChunk(narrow, "zh", "13996365239", _chars("13996365239", 0.7, 0.3))
    merged = merge_patch(item, digits, reseat=True)
    assert merged.text.strip() == "13996365239打开去大理"  # (a space keeps digits apart from a word before)
    assert [c.start for c in merged.chars] == sorted(c.start for c in merged.chars)


def test_a_sentence_whose_time_went_to_stretched_neighbours_is_found_and_decoded_again() -> None:
    # 查明原由后会公布于众 (0.0-3.2 s) skipped; 中 and 国 of the next sentence (4.0-8.0 s) were stretched over
    # it in two pieces, each too short for ``uncovered``.
    chunk = Chunk(0, 8 * S, [(0, int(3.2 * S)), (4 * S, 8 * S)])
    own = [TimedChar("中", 0.0, 2.3), TimedChar("国", 2.3, 4.5), *_chars("证监会召开新闻发布会", 4.5, 0.35)]
    item = DecodedChunk(chunk, "zh", "中国证监会召开新闻发布会", own)
    assert sparse_regions(item) == [(0.0, 3.2)]
    # A region as dense as speech is not sparse; one too short to judge is not either.
    assert (
        sparse_regions(item._replace(chars=_chars("查明原由后会公布于众中国证监会召开新闻发布会", 0.1, 0.5)))
        == []
    )
    short = Chunk(0, 8 * S, [(0, int(1.5 * S)), (4 * S, 8 * S)])
    assert sparse_regions(item._replace(chunk=short)) == []
    # The patch goes first, the stretched characters after it at the next speech region.
    patch = DecodedChunk(
        Chunk(0, int(3.2 * S), []), "zh", "查明原由后会公布于众", _chars("查明原由后会公布于众", 0.1, 0.3)
    )
    merged = merge_patch(item, patch, reseat=True)
    assert merged.text == "查明原由后会公布于众中国证监会召开新闻发布会"
    assert [c.start for c in merged.chars if c.char in "中国"] == [4.0, 4.0]
    # Stretched characters the patch says itself are not kept twice.
    again = patch._replace(
        text="查明原由后会公布于众中国", chars=_chars("查明原由后会公布于众中国", 0.1, 0.25)
    )
    assert merge_patch(item, again, reseat=True).text == "查明原由后会公布于众中国证监会召开新闻发布会"


def test_a_word_said_on_its_own_before_the_text_is_found_when_its_neighbour_was_stretched_over_it() -> None:
    # "Quote," (0.05-0.4 s), a 0.55 s pause, then "On the top of the jail" (0.95-2.2 s); Whisper skipped
    # "Quote" and the alignment started "On" inside it.
    frame = 512 / S
    probabilities = np.zeros(int(2.2 / frame), dtype=np.float32)
    probabilities[int(0.05 / frame) : int(0.4 / frame)] = 0.9
    probabilities[int(0.95 / frame) : int(2.2 / frame)] = 0.9
    probabilities[int(1.5 / frame) : int(1.7 / frame)] = 0.2  # a dip shorter than a pause
    speech = SpeechMap(probabilities, len(probabilities) * 512)
    islands = speech.islands(0.0, 2.2)
    assert len(islands) == 2 and islands[0] == pytest.approx((0.05, 0.4), abs=frame)
    assert islands[1] == pytest.approx((0.95, 2.2), abs=frame)
    chunk = Chunk(0, int(2.2 * S), [(0, int(2.2 * S))])
    chars = [*_chars("On", 0.34, 0.34), TimedChar(" ", 1.02, 1.02), *_chars("the", 1.06, 0.04)]
    item = DecodedChunk(
        chunk, "en", "On the jail", [*chars, TimedChar(" ", 1.2, 1.2), *_chars("jail", 1.85, 0.07)]
    )
    assert skipped_islands(item, speech) == [islands[0]]
    # Covered islands, and islands inside the text (``uncovered`` and ``sparse_regions`` look there), are not.
    covered = item._replace(chars=[*_chars("Quote", 0.05, 0.07), *item.chars])
    assert skipped_islands(covered, speech) == []
    inside = item._replace(chars=[TimedChar("W", 0.0, 0.04), *item.chars])
    assert skipped_islands(inside, speech) == []
    assert speech.islands(2.5, 3.0) == []


def test_thousands_separator_survives_stripping_punctuation() -> None:
    assert strip_punctuation("there were 114,300 people, he said") == "there were 114,300 people he said"
    assert strip_punctuation("1, 2, 3") == "1 2 3"


def test_the_token_cap_is_what_was_asked() -> None:
    """CTranslate2's Whisper generates at most min(max_length / 2, max_length - prompt) tokens: the
    max_length passed must be twice the tokens wanted (Whisper's 448 positions at most)."""
    from tingyin.speech.whisper import _lengths

    for wanted, prompt in ((98, 32), (40, 4), (154, 60), (224, 200)):
        total, generated = _lengths(wanted, prompt)
        assert generated == wanted and min(total // 2, total - prompt) == wanted
    assert _lengths(300, 32) == (448, 224)  # Whisper's own limit


def test_small_punctuation_forms_and_broken_characters_are_cleaned() -> None:
    from tingyin.speech.textnorm import clean, to_chinese_punctuation

    assert clean("今年3月3星公布了﹐S.A.M﹑P.A.Y\ufffd") == "今年3月3星公布了,S.A.M、P.A.Y"
    assert to_chinese_punctuation(clean("真的吗﹖好﹗")) == "真的吗？好！"


def test_models_are_built_in_a_thread_that_has_ended_and_their_errors_reach_the_caller() -> None:
    builders: list[threading.Thread] = []

    def build() -> str:
        builders.append(threading.current_thread())
        return "model"

    assert built_in_passing_thread(build) == "model"
    assert builders[0] is not threading.current_thread() and not builders[0].is_alive()

    def broken() -> str:
        raise InvalidRequest("no such model")

    with pytest.raises(InvalidRequest, match="no such model"):
        built_in_passing_thread(broken)


# ------------------------------------------------------------------------------ the widened pool


def test_digit_strings_count_arabic_and_chinese_digits_in_runs() -> None:
    from tingyin.speech.rescoring import digit_string_length

    assert digit_string_length("13473821368") == 11
    assert digit_string_length("一三四七三八二幺三六八") == 11
    assert digit_string_length("拨打13473 82368") == 10  # a space inside a number does not end it
    assert digit_string_length("968 785次") == 6
    assert digit_string_length("把面向全国的3D打印") == 0  # shorter than a digit string
    assert digit_string_length("而一向对新政") == 0


def test_widened_pool_adds_new_text_after_the_pool_but_no_shorter_digit_string() -> None:
    from tingyin.speech.rescoring import SecondPass

    pool = [Hypothesis([1], "打can because of you", -3.0), Hypothesis([2], "打看because of you", -4.0)]
    wide = [
        Hypothesis([3], "打can, because of you.", -2.0),  # the same text but for punctuation
        Hypothesis([4], "打开because of you", -2.5),
        Hypothesis([5], "", -1.0),
        Hypothesis([6], "哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈", -1.0),  # a loop
    ]
    assert [h.text for h in SecondPass.widened(pool, wide)] == [
        "打can because of you",
        "打看because of you",
        "打开because of you",
    ]
    assert len(pool) == 2  # the pool itself is left as it was

    numbers = [Hypothesis([1], "13473821368", -3.0)]
    wide = [Hypothesis([2], "1347382138", -2.0), Hypothesis([3], "一三四七三八二一三六八", -2.5)]
    assert [h.text for h in SecondPass.widened(numbers, wide)] == ["13473821368", "一三四七三八二一三六八"]


def test_a_runner_up_that_only_leaves_out_said_characters_is_no_candidate() -> None:
    from tingyin.speech.rescoring import SecondPass, leaves_out_speech

    assert leaves_out_speech("设定31度。", "设定31。")
    assert leaves_out_speech("她似乎不满足网友只发现到自己", "他似乎不满足网友只发现自己")  # and a change
    assert not leaves_out_speech("打开maps打开maps", "打开maps")  # a loop cut
    assert not leaves_out_speech("好的好的好的", "好的")
    assert not leaves_out_speech("设定31度", "设定32度")  # changed, none left out
    assert not leaves_out_speech("记者现场看到", "记者在现场就看到")  # longer
    assert not leaves_out_speech("记者在现场看到了", "记者再现场就看到")  # one out, another in
    assert not leaves_out_speech("你好。", "你好")  # punctuation only

    nbest = [
        Hypothesis([1], "记者在楼盘现场就看到", -3.0),
        Hypothesis([2], "记者在楼盘现场看到", -2.8),
        Hypothesis([3], "记者在楼盘现场就看到了", -3.4),
    ]
    second_pass = SecondPass(None, _Unchanged(), [])  # type: ignore[arg-type]
    pool = second_pass.pool(nbest, _CharTokens(), plan((), ()), nbest=3, rewrites=0)  # type: ignore[arg-type]
    assert [h.text for h in pool] == ["记者在楼盘现场就看到", "记者在楼盘现场就看到了"]
    wide = [Hypothesis([4], "记者楼盘现场就看到", -2.0), Hypothesis([5], "记者在楼盘现场就看到。", -2.5)]
    assert [h.text for h in SecondPass.widened(pool, wide)] == [h.text for h in pool]


class _Unchanged:
    def rewrites(self, text: str, limit: int = 4, keep: tuple[str, ...] = ()) -> list[str]:
        return []


class _CharTokens:
    def encode(self, text: str) -> list[int]:
        return [ord(ch) for ch in text]


def test_the_pool_keeps_no_runner_up_with_fewer_digits_than_the_beams_choice() -> None:
    from tingyin.speech.rescoring import SecondPass

    nbest = [
        Hypothesis([1], "13473821368", -3.0),
        Hypothesis([2], "一37 3821 368", -3.2),  # a digit lost
        Hypothesis([3], "13473821368。", -3.3),  # the same text
        Hypothesis([4], "一三四七三八二幺三六八", -3.4),
    ]
    second_pass = SecondPass(None, _Unchanged(), [])  # type: ignore[arg-type]
    pool = second_pass.pool(nbest, _CharTokens(), plan((), ()), nbest=4, rewrites=0)  # type: ignore[arg-type]
    assert [h.text for h in pool] == ["13473821368", "一三四七三八二幺三六八"]


def test_the_pool_keeps_a_runner_up_that_only_leaves_out_a_repeated_piece_of_the_digits() -> None:
    from tingyin.speech.rescoring import SecondPass

    # zh_dev BAC009S0252W0096, 七九幺零二零九九 said alone: the beam's choice says 19 twice.
    nbest = [
        Hypothesis([1], "1919102029", -4.9),
        Hypothesis([2], "持久102029", -5.9),  # two digits fewer, and not a repeat
        Hypothesis([3], "19102099", -5.6),  # without the repeat, one digit read otherwise
    ]
    second_pass = SecondPass(None, _Unchanged(), [])  # type: ignore[arg-type]
    pool = second_pass.pool(nbest, _CharTokens(), plan((), ()), nbest=4, rewrites=0)  # type: ignore[arg-type]
    assert [h.text for h in pool] == ["1919102029", "19102099"]


def test_a_shorter_digit_string_is_admitted_only_without_a_repeated_piece() -> None:
    from tingyin.speech.rescoring import drops_only_repeated_digits

    assert drops_only_repeated_digits("1919102029", "19102029")  # the copy of 19 left out
    assert drops_only_repeated_digits("三七三八八六六九九", "37388699")  # 6 said twice, across scripts
    assert drops_only_repeated_digits("1919102029", "19102099")  # one digit of eight read otherwise
    assert not drops_only_repeated_digits("1919102029", "19107799")  # three of eight: another number
    assert not drops_only_repeated_digits("13473821368", "1347382136")  # the last digit lost
    assert not drops_only_repeated_digits("13473821368", "13473821368")  # nothing left out
    assert not drops_only_repeated_digits("1919102029", "持久102029")  # 19 19 heard as a word
    assert not drops_only_repeated_digits("1919", "")


def test_text_scorers_see_numbers_read_out_digit_by_digit_in_arabic_digits() -> None:
    from tingyin.speech.rescoring import digits_as_arabic

    assert digits_as_arabic("九六八七七八五七") == "96877857"
    assert digits_as_arabic("拨打一三四七三八二幺三六八吧") == "拨打13473821368吧"
    assert digits_as_arabic("很多二三四线城市") == "很多二三四线城市"  # a word, not a number read out
    assert digits_as_arabic("一九九零年后") == "一九九零年后"  # a year: the trigram knows these
    assert digits_as_arabic("观察30年来") == "观察30年来"


def test_compute_slots_let_calls_share_the_cores_and_exclusive_work_wait() -> None:
    slots = ComputeSlots(2)
    claimed = threading.Event()

    def claim_every_slot() -> None:
        with slots.every_slot():
            claimed.set()
            assert slots.held_by_one()

    with slots.slot(), slots.slot():  # two calls at once
        claimer = threading.Thread(target=claim_every_slot)
        claimer.start()
        # Exclusive work waits for the calls that run, and only for them.
        assert not claimed.wait(0.2)
        assert not slots.held_by_one()
    claimer.join(timeout=10)
    assert claimed.is_set() and not slots.held_by_one()
    with slots.slot():  # and the slots are free again
        pass


def test_every_slot_if_free_takes_them_all_or_none_without_waiting() -> None:
    slots = ComputeSlots(2)
    with slots.every_slot_if_free() as alone:  # nothing runs: every slot
        assert alone and slots.held_by_one()
        got_one = threading.Event()

        def call() -> None:
            with slots.slot():
                got_one.set()

        caller = threading.Thread(target=call)
        caller.start()
        assert not got_one.wait(0.2)  # a call waits while they are held
    caller.join(timeout=10)
    assert got_one.is_set() and not slots.held_by_one()
    # A call runs: none, at once, and the free slot stays free.
    with slots.slot(), slots.every_slot_if_free() as alone:
        assert not alone and not slots.held_by_one()
        with slots.slot():
            pass
    with slots.every_slot(), slots.every_slot_if_free() as alone:  # another holds them all
        assert not alone
    with slots.every_slot_if_free() as alone:  # and all of them came back
        assert alone


def test_vad_frames_are_cut_per_call_as_the_whole_recording_framed_them() -> None:
    """Each VAD call's rows (512 samples led by the previous frame's last 64) are those a framing of the
    whole recording gives, across call boundaries and the zero-padded last frame."""
    from tingyin.speech.vad import _BATCH_FRAMES, _CONTEXT_SAMPLES, FRAME_SAMPLES, _framed

    audio = (
        np.random.default_rng(3).standard_normal(2 * _BATCH_FRAMES * FRAME_SAMPLES + 700).astype(np.float32)
    )
    frames = np.pad(audio, (0, (-audio.size) % FRAME_SAMPLES)).reshape(-1, FRAME_SAMPLES)
    context = np.roll(frames[:, -_CONTEXT_SAMPLES:], 1, axis=0)
    context[0] = 0.0
    whole = np.concatenate([context, frames], axis=1)
    step = _BATCH_FRAMES * FRAME_SAMPLES
    pieces = [_framed(audio, begin, begin + step) for begin in range(0, audio.size, step)]
    assert [p.shape[0] for p in pieces] == [_BATCH_FRAMES, _BATCH_FRAMES, 2]
    assert np.array_equal(np.concatenate(pieces), whole)
