"""The recording benchmark's pure logic: assembly, coverage and drops, alignment, scoring, the report."""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from tingyin import audio
from tingyin.audio import encode_wav
from tingyin.eval.live import RssSampler, looped_wav, process_tree, rss_mb, sami_wav
from tingyin.eval.recordings import (
    DROP_THRESHOLD,
    EN_SPEAKER,
    PAUSE_RANGE_S,
    RATE,
    ZH_SPEAKERS,
    Clip,
    ClipPicker,
    Normaliser,
    Recording,
    Segment,
    Sentence,
    align,
    assemble,
    build_recordings,
    coverage,
    degrade_recordings,
    format_drops_table,
    percentile,
    plan_recording,
    score_recording,
    speaker_order,
    speakers_spanned,
    speech_bounds,
    telephone_band,
    with_noise,
)


def sentence(
    start: float, end: float, text: str = "你好", speaker: str = "S0150", sid: str = "a"
) -> Sentence:
    return Sentence(sid, text, speaker, "zh", start, end, start, end)


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1]


# ---------------------------------------------------------------- coverage


def test_coverage_is_the_union_of_overlaps_with_text() -> None:
    target = sentence(10.0, 20.0)
    assert coverage(target, []) == 0.0
    assert coverage(target, [Segment(0.0, 9.9, "x"), Segment(20.1, 30.0, "y")]) == 0.0
    assert coverage(target, [Segment(8.0, 13.0, "x")]) == pytest.approx(0.3)
    # Two utterances over the same stretch count once; a gap between them is not covered.
    assert coverage(
        target, [Segment(10.0, 14.0, "x"), Segment(12.0, 15.0, "y"), Segment(18.0, 25.0, "z")]
    ) == (pytest.approx(0.7))
    # Utterances without text do not cover anything.
    assert coverage(target, [Segment(0.0, 30.0, "  ")]) == 0.0
    assert coverage(target, [Segment(0.0, 30.0, "好")]) == 1.0


def test_a_sentence_split_into_small_pieces_is_not_dropped() -> None:
    target = sentence(0.0, 10.0)
    pieces = [Segment(0.0, 2.5, "a"), Segment(2.5, 5.0, "b")]
    assert all(coverage(target, [p]) < DROP_THRESHOLD for p in pieces)
    assert coverage(target, pieces) == pytest.approx(0.5)


def test_speakers_spanned_needs_half_a_second_of_each() -> None:
    sentences = [sentence(0, 3, speaker="S0150"), sentence(3.5, 6, speaker="S0252")]
    assert speakers_spanned(Segment(0.0, 3.8, "x"), sentences) == {"S0150"}
    assert speakers_spanned(Segment(1.0, 4.5, "x"), sentences) == {"S0150", "S0252"}


# ---------------------------------------------------------------- alignment


def test_align_marks_matched_reference_units() -> None:
    errors, matched, heard = align(list("abcdef"), list("abxdf"))
    assert errors == 2
    assert matched == [True, True, False, True, False, True]
    assert heard == [True, True, True, True, False, True]  # c was misheard as x, e was lost
    assert align([], list("ab")) == (2, [], [])
    assert align(list("ab"), []) == (2, [False, False], [False, False])


def test_align_counts_the_minimum_edits() -> None:
    rng = random.Random(3)
    for _ in range(200):
        ref = [rng.choice("abc") for _ in range(rng.randint(0, 12))]
        hyp = [rng.choice("abcd") for _ in range(rng.randint(0, 12))]
        errors, matched, heard = align(ref, hyp)
        assert errors == edit_distance(ref, hyp)
        assert all(h or not m for m, h in zip(matched, heard, strict=True))
        # Deletions (units not heard) plus the substitutions and insertions make the edits.
        assert heard.count(False) + (sum(heard) - sum(matched)) + (len(hyp) - sum(heard)) == errors
        # Matched units are an increasing common subsequence, so at most the hypothesis's length.
        assert sum(matched) <= len(hyp)
        assert errors >= len(ref) - sum(matched)


# ---------------------------------------------------------------- building


def test_speaker_orders() -> None:
    rng = random.Random(1)
    two = speaker_order("zh2", 9, rng)
    assert set(two) == set(ZH_SPEAKERS) and all(a != b for a, b in itertools.pairwise(two))
    assert speaker_order("en", 4, rng) == [EN_SPEAKER] * 4
    for count in (9, 12, 15):
        three = speaker_order("zh-en3", count, rng)
        assert len(three) == count and all(a != b for a, b in itertools.pairwise(three))
        assert all(three.count(s) >= 2 for s in (*ZH_SPEAKERS, EN_SPEAKER))
    with pytest.raises(ValueError):
        speaker_order("fr", 3, rng)


def tone(seconds: float, lead: float = 0.0, tail: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    body = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return np.concatenate(
        [np.zeros(int(lead * RATE), np.float32), body, np.zeros(int(tail * RATE), np.float32)]
    )


def test_speech_bounds_trim_silence() -> None:
    start, end = speech_bounds(tone(2.0, lead=0.4, tail=0.6))
    assert start == pytest.approx(0.4, abs=0.02) and end == pytest.approx(2.4, abs=0.02)
    assert speech_bounds(np.zeros(RATE, np.float32)) == (0.0, 1.0)


def test_assemble_places_every_sentence() -> None:
    clips = [
        Clip("a", Path("a"), "一", "S0150", "zh", 1.0),
        Clip("b", Path("b"), "two", "LJ", "en", 2.0),
        Clip("c", Path("c"), "三", "S0252", "zh", 1.5),
    ]
    audio = {"a": tone(1.0), "b": tone(1.6, lead=0.2, tail=0.2), "c": tone(1.5)}
    samples, placed = assemble(clips, [0.5, 1.25], lambda path: audio[str(path)], lead_s=0.5, tail_s=0.5)
    assert samples.shape[0] == round((0.5 + 1.0 + 0.5 + 2.0 + 1.25 + 1.5 + 0.5) * RATE)
    assert [s.id for s in placed] == ["a", "b", "c"]
    assert [s.clip_start_s for s in placed] == [0.5, 2.0, 5.25]
    assert placed[1].start_s == pytest.approx(2.2, abs=0.02) and placed[1].end_s == pytest.approx(
        3.8, abs=0.02
    )
    assert placed[1].speaker == "LJ" and placed[1].language == "en" and placed[1].text == "two"
    for item in placed:  # the audio at each sentence's speech is the clip's
        assert np.abs(samples[int(item.start_s * RATE) + 100 : int(item.end_s * RATE) - 100]).max() > 0.1
    with pytest.raises(ValueError):
        assemble(clips, [0.5], lambda path: audio[str(path)])


def fake_testdata(root: Path) -> Path:
    """A testdata folder shaped like ../shared/testdata, with tones for speech."""
    rng = random.Random(5)
    for set_name, ids in (
        ("zh_dev", [f"BAC009{s}W{n:04d}" for s in ZH_SPEAKERS for n in range(60)]),
        ("en_dev", [f"LJ001-{n:04d}" for n in range(60)]),
    ):
        audio_dir = root / set_name / "audio"
        audio_dir.mkdir(parents=True)
        with (root / set_name / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "path", "text", "duration_s"])
            for clip_id in ids:
                seconds = round(rng.uniform(1.0, 3.0), 2)
                (audio_dir / f"{clip_id}.wav").write_bytes(encode_wav(tone(seconds)))
                writer.writerow([clip_id, f"audio/{clip_id}.wav", f"text of {clip_id}", seconds])
    return root


def test_build_recordings_is_deterministic_and_reuses_files(tmp_path: Path) -> None:
    data = fake_testdata(tmp_path / "testdata")
    first = build_recordings(data, tmp_path / "one", seed=4, long_seconds=60.0)
    assert [r.kind for r in first] == ["zh2"] * 4 + ["zh-en3"] * 3 + ["en"] * 3 + ["zh-long"]
    scored = first[:-1]
    for recording in scored:
        assert 8 <= len(recording.sentences) <= 15
        assert recording.metric == ("WER" if recording.kind == "en" else "CER")
        gaps = [b.clip_start_s - a.clip_end_s for a, b in itertools.pairwise(recording.sentences)]
        assert all(PAUSE_RANGE_S[0] - 0.01 <= g <= PAUSE_RANGE_S[1] + 0.01 for g in gaps)
        assert recording.path is not None and recording.path.is_file()
    ids = [s.id for r in scored for s in r.sentences]
    assert len(ids) == len(set(ids)), "no clip is used twice in the scored set"
    assert {s.speaker for s in first[4].sentences} == {*ZH_SPEAKERS, EN_SPEAKER}
    assert first[-1].duration_s >= 60.0
    # Same seed elsewhere: same recordings; a subset is a prefix; a second build keeps the files.
    again = build_recordings(data, tmp_path / "two", seed=4, include=("set",), limit=2, long_seconds=60.0)
    assert [r.sentences for r in again] == [r.sentences for r in first[:2]]
    assert again[0].path is not None and first[0].path is not None
    assert again[0].path.read_bytes() == first[0].path.read_bytes()
    stamp = first[0].path.stat().st_mtime_ns
    assert build_recordings(data, tmp_path / "one", seed=4, long_seconds=60.0) == first
    assert first[0].path.stat().st_mtime_ns == stamp
    index = json.loads((tmp_path / "one" / "recordings.json").read_text(encoding="utf-8"))
    assert Recording.from_dict(index["recordings"][0]) == first[0]
    other = build_recordings(data, tmp_path / "three", seed=5, include=("set",), limit=1)
    assert [s.id for s in other[0].sentences] != [s.id for s in first[0].sentences]


def _tone(hertz: float, seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hertz * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)


def _level(samples: np.ndarray, rate: int, hertz: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples)) / samples.shape[0]
    frequencies = np.fft.rfftfreq(samples.shape[0], 1.0 / rate)
    return float(spectrum[np.argmin(np.abs(frequencies - hertz))])


def test_telephone_band_keeps_300_to_3400_hz_at_8_khz() -> None:
    line = telephone_band(_tone(100) + _tone(1000) + _tone(6000))
    assert line.shape == (8000,) and line.dtype == np.float32
    assert _level(line, 8000, 1000) > 0.1  # a 0.3 sine's bin holds 0.15
    assert _level(line, 8000, 100) < 0.01
    # 6 kHz does not fold back to 2 kHz: it was removed before the rate was halved
    assert _level(line, 8000, 2000) < 0.01
    # mu-law: a quiet sound keeps its shape (no 8-bit linear floor)
    quiet = telephone_band(_tone(1000, amplitude=0.003))
    assert 0.001 < _level(quiet, 8000, 1000) < 0.002


def test_noise_is_mixed_at_the_asked_level_and_repeats_to_cover() -> None:
    speech = np.zeros(3 * RATE, dtype=np.float32)
    speech[RATE : 2 * RATE] = _tone(440, amplitude=0.1)  # one second of "speech", silence around it
    noises = [np.random.default_rng(k).standard_normal(RATE // 2).astype(np.float32) for k in range(2)]
    mixed = with_noise(speech, noises, random.Random(0), snr_db=10.0)
    assert mixed.shape == speech.shape
    background = mixed - speech
    speech_rms = 0.1 / np.sqrt(2)
    assert 20 * np.log10(speech_rms / np.sqrt(np.mean(background.astype(np.float64) ** 2))) == pytest.approx(
        10.0, abs=0.1
    )
    assert np.abs(background[-RATE:]).max() > 0  # the 1 s of noise repeats over the 3 s
    assert np.array_equal(mixed, with_noise(speech, noises, random.Random(0), snr_db=10.0))


def test_degraded_recordings_keep_their_sentences(tmp_path: Path) -> None:
    original = tmp_path / "zh2-1.wav"
    original.write_bytes(encode_wav(_tone(500, seconds=2.0)))
    sentence = Sentence("S1", "你好", "S0150", "zh", 0.5, 1.5, 0.0, 1.0)
    recording = Recording("zh2-1", "zh2", "zh", "CER", 2.0, (sentence,), original)
    esc = tmp_path / "esc10"
    (esc / "audio").mkdir(parents=True)
    (esc / "audio" / "rain.wav").write_bytes(encode_wav(_tone(2000, seconds=0.5)))
    (esc / "manifest.csv").write_text("id,path,label,fold\nr1,audio/rain.wav,rain,1\n", encoding="utf-8")
    assert degrade_recordings([recording], "clean", tmp_path, tmp_path, 11) == [recording]
    for condition, rate in (("telephone", 8000), ("noise", 16000)):
        [copy] = degrade_recordings([recording], condition, tmp_path, tmp_path, 11)
        assert copy.path == tmp_path / condition / "zh2-1.wav"
        assert copy.sentences == recording.sentences and copy.duration_s == recording.duration_s
        with wave.open(str(copy.path)) as wav:
            assert wav.getframerate() == rate and wav.getnframes() == 2 * rate
    with pytest.raises(ValueError, match="unknown condition"):
        degrade_recordings([recording], "underwater", tmp_path, tmp_path, 11)
    with pytest.raises(FileNotFoundError, match="ESC-10"):
        degrade_recordings([recording], "noise", tmp_path / "elsewhere", tmp_path, 11)


def test_clip_picker_uses_every_clip_before_repeating() -> None:
    pool = [Clip(str(n), Path(str(n)), "", "S0150", "zh", 1.0) for n in range(5)]
    picker = ClipPicker({"S0150": pool}, random.Random(2))
    taken = [picker.take("S0150").id for _ in range(10)]
    assert sorted(taken[:5]) == sorted(taken[5:]) == [c.id for c in pool]
    with pytest.raises(ValueError):
        picker.take("S0252")


def test_long_plan_reaches_its_length() -> None:
    pools = {s: [Clip(f"{s}-{n}", Path(str(n)), "", s, "zh", 4.0) for n in range(50)] for s in ZH_SPEAKERS}
    rng = random.Random(9)
    clips, pauses = plan_recording("zh-long", ClipPicker(pools, rng), rng, min_seconds=120.0)
    total = sum(c.duration_s for c in clips) + sum(pauses)
    assert 120.0 <= total < 120.0 + 4.0 + PAUSE_RANGE_S[1]
    assert len(pauses) == len(clips) - 1
    assert all(a.speaker != b.speaker for a, b in itertools.pairwise(clips))


# ---------------------------------------------------------------- scoring


def recording_of(sentences: list[Sentence], metric: str = "CER") -> Recording:
    return Recording("r", "zh2", "zh" if metric == "CER" else "en", metric, 30.0, tuple(sentences))


def test_score_recording_finds_dropped_sentences_both_ways() -> None:
    rec = recording_of(
        [
            sentence(1.0, 3.0, "北湖公园", "S0150", "s1"),
            sentence(4.0, 6.0, "南桥", "S0252", "s2"),
            sentence(7.0, 10.0, "人员伤亡", "S0150", "s3"),
        ]
    )
    segments = [Segment(0.9, 3.1, "北湖公园。"), Segment(4.0, 5.0, "可难求"), Segment(7.2, 9.0, "人员上网")]
    score = score_recording("ours", rec, segments, "北湖公园。可难求？人员上网。", Normaliser(None))
    assert score.reference_units == 10
    assert score.errors == edit_distance(list("北湖公园南桥人员伤亡"), list("北湖公园可难求人员上网"))
    assert [s.coverage for s in score.sentences] == [1.0, 0.5, pytest.approx(0.6)]
    assert score.dropped == []
    assert score.text_dropped == ["s2"]  # time-covered, but none of its words came out right
    assert score.lost == []  # ... yet something was said in its place
    assert [s.matched for s in score.sentences] == [1.0, 0.0, 0.5]
    assert score.multi_speaker_segments == 0
    # The same text, one utterance over everything: nothing is dropped by time, it spans two speakers.
    merged = score_recording(
        "x", rec, [Segment(0.0, 10.0, "北湖公园可难求人员上网")], score.hypothesis, Normaliser(None)
    )
    assert merged.dropped == [] and merged.multi_speaker_segments == 1
    # No output at all: everything dropped both ways, every unit an error.
    empty = score_recording("x", rec, [], "", Normaliser(None), failure="1013 no speech")
    assert empty.dropped == empty.text_dropped == empty.lost == ["s1", "s2", "s3"]
    assert empty.error_rate == 1.0 and empty.as_dict()["failure"] == "1013 no speech"


def test_english_scoring_counts_words() -> None:
    rec = recording_of(
        [sentence(0, 2, "Hello there, world.", "LJ", "e1"), sentence(3, 5, "Good night.", "LJ", "e2")], "WER"
    )
    score = score_recording(
        "ours", rec, [Segment(0, 2, "hello there world")], "hello there world", Normaliser(None)
    )
    assert score.reference_units == 5 and score.errors == 2
    assert score.text_dropped == score.dropped == score.lost == ["e2"]


def shared_scorer() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared" / "eval" / "score.py"


def test_shared_scorer_normalisation() -> None:
    path = shared_scorer()
    if not path.is_file():
        pytest.skip("../shared/eval/score.py is absent")
    pytest.importorskip("cn2an")
    normaliser = Normaliser(path)
    assert normaliser.source == str(path)
    # Digits and numerals, Traditional and Simplified, spelled-out and written Latin agree.
    assert normaliser.units("看来三星的S A M S U N G P A Y", "CER") == normaliser.units(
        "看來三星的Samsung Pay。", "CER"
    )
    assert normaliser.units("一九九零年后", "CER") == normaliser.units("1990年后", "CER")
    assert normaliser.units("by eighteen eleven, Mr. Neild", "WER") == normaliser.units(
        "By 1811 mister Neild", "WER"
    )


def test_fallback_normalisation_without_the_shared_scorer(tmp_path: Path) -> None:
    normaliser = Normaliser(tmp_path / "missing.py")
    assert normaliser.source == "tingyin.eval.text"
    assert normaliser.units("北湖，公园！", "CER") == list("北湖公园")
    assert normaliser.units("Hello, World", "WER") == ["hello", "world"]


def test_table_flags_recordings_where_ours_is_worse_or_drops() -> None:
    good = recording_of([sentence(0, 2, "你好", sid="g")])
    good = Recording("good", "zh2", "zh", "CER", 5.0, good.sentences)
    bad = Recording("bad", "zh2", "zh", "CER", 5.0, good.sentences)
    normaliser = Normaliser(None)
    ours = {
        "good": score_recording("ours", good, [Segment(0, 2, "你好")], "你好", normaliser),
        "bad": score_recording("ours", bad, [], "", normaliser),
    }
    batched = {
        name: score_recording("batched", good, [Segment(0, 2, "你好")], "你好", normaliser) for name in ours
    }
    table = format_drops_table([good, bad], ours, batched).splitlines()
    good_line = next(line for line in table if line.startswith("good"))
    bad_line = next(line for line in table if line.startswith("bad"))
    assert not good_line.endswith("<<") and bad_line.endswith("<<")
    assert any(
        "ours: pooled error 50.00% (2/4), 1 dropped (time), 1 dropped (text), 1 lost" in line
        for line in table
    )


def test_percentile() -> None:
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.9) == pytest.approx(3.7)
    assert percentile([5.0], 0.9) == 5.0


# ---------------------------------------------------------------- helpers of the live parts


def test_looped_wav_has_the_asked_size() -> None:
    data = looped_wav(tone(0.3), 100_044)
    assert len(data) == 100_044 and data[:4] == b"RIFF"


def test_sami_uploads_stay_within_samis_duration() -> None:
    """Up to 600 s of 16 kHz mono the upload is that; a larger one is CD audio, which SAMI takes up to
    100 MB (a 100 MB file at 16 kHz mono would last 55 minutes and be refused)."""
    small = audio.probe(sami_wav(tone(0.3), 11 * 1024 * 1024))
    assert (small.sample_rate, small.channels) == (16000, 1)
    big_size = 30 * 1024 * 1024
    big = audio.probe(sami_wav(tone(0.3), big_size))
    assert (big.sample_rate, big.channels) == (44100, 2)
    assert big.duration_s == pytest.approx((big_size - 44) / (4 * 44100), abs=0.01)
    assert big.duration_s < 600


def test_process_tree_rss_includes_children() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; x = bytearray(60_000_000); x[::4096] = b'1' * len(x[::4096]); time.sleep(30)",
        ]
    )
    try:
        for _ in range(100):
            if rss_mb(os.getpid()) - rss_mb(child.pid) > 0 and rss_mb(child.pid) > 50:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        assert child.pid in process_tree(os.getpid())
        assert rss_mb(child.pid) > 50
        assert rss_mb(os.getpid()) >= rss_mb(child.pid) + 10
    finally:
        child.kill()
        child.wait()


def test_rss_sampler_keeps_the_peak_and_acts_at_its_limit() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; x = bytearray(80_000_000); x[::4096] = b'1' * len(x[::4096]); time.sleep(60)",
        ]
    )
    sampler = RssSampler(child.pid, interval_s=0.05, limit_mb=60.0, on_limit=child.kill)
    try:
        sampler.start()
        child.wait(timeout=30)  # killed by the sampler once the child passes 60 MB
        assert sampler.limit_hit is not None and sampler.limit_hit > 60.0
        assert sampler.take_peak_mb() >= sampler.limit_hit
    finally:
        sampler.stop()
        if child.poll() is None:
            child.kill()
            child.wait()
