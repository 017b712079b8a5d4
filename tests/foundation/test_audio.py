"""Audio intake: every accepted container decodes to 16 kHz mono; each kind of bad file gets a typed error."""

from __future__ import annotations

import io
import time
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from tests.audiofactory import FORMATS, encode, tone
from tingyin import audio
from tingyin.audio.decode import PCM_BLOCK_SAMPLES, _frame_to_float


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_container_decodes_to_16k_mono(fmt: str) -> None:
    data = encode(tone(2.0, 16000, 440.0), 16000, fmt)
    decoded = audio.decode(data)
    assert decoded.sample_rate == 16000
    assert decoded.samples.ndim == 1 and decoded.samples.dtype == np.float32
    assert abs(decoded.duration_s - 2.0) < 0.15, decoded.duration_s
    # The tone survives the codec: its spectrum peaks at 440 Hz.
    spectrum = np.abs(np.fft.rfft(decoded.samples[4000:20000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) < 5


def test_raw_pcm_with_declared_rate_and_channels() -> None:
    stereo = tone(1.0, 8000, 300.0, channels=2)
    raw = (stereo.T.reshape(-1) * 32767).astype("<i2").tobytes()
    decoded = audio.decode(raw, format="pcm", pcm_rate=8000, pcm_channels=2, mono=False)
    assert decoded.channels == 2 and decoded.source_rate == 8000
    assert abs(decoded.duration_s - 1.0) < 0.01
    assert audio.probe(raw, format="pcm", pcm_rate=8000, pcm_channels=2).duration_s == pytest.approx(1.0)


def test_stereo_channels_kept_apart_or_mixed() -> None:
    left = tone(1.0, 16000, 300.0)
    right = tone(1.0, 16000, 1200.0)
    wav = audio.encode_wav(np.stack([left, right]))
    both = audio.decode(wav, mono=False)
    assert both.channels == 2
    assert np.argmax(np.abs(np.fft.rfft(both.channel(0)))) == pytest.approx(300, abs=3)
    assert np.argmax(np.abs(np.fft.rfft(both.channel(1)))) == pytest.approx(1200, abs=3)
    assert audio.decode(wav).channels == 1


def test_8khz_is_resampled_and_reported() -> None:
    decoded = audio.decode(encode(tone(1.0, 8000, 500.0), 8000, "wav"))
    assert decoded.source_rate == 8000 and decoded.sample_rate == 16000
    assert decoded.samples.shape[0] == pytest.approx(16000, abs=2)


def test_required_rate_refuses_other_rates() -> None:
    with pytest.raises(audio.SampleRateMismatch):
        audio.decode(encode(tone(1.0, 8000), 8000, "wav"), required_rate=16000)
    with pytest.raises(audio.SampleRateMismatch):
        audio.decode(b"\x00\x01" * 8000, format="pcm", pcm_rate=8000, required_rate=16000)


def test_zero_bytes_is_empty() -> None:
    with pytest.raises(audio.EmptyAudio):
        audio.decode(b"")
    with pytest.raises(audio.EmptyAudio):
        audio.decode(b"\x01", format="pcm")


def test_text_renamed_wav_is_corrupt(tmp_path: Path) -> None:
    fake = tmp_path / "notes.wav"
    fake.write_text("these are meeting notes, not audio\n" * 20)
    with pytest.raises(audio.CorruptAudio):
        audio.decode(fake)


def test_truncated_file_keeps_what_decodes_or_fails_cleanly() -> None:
    mp3 = encode(tone(3.0), 16000, "mp3")
    half = audio.decode(mp3[: len(mp3) // 2])
    assert 0.8 < half.duration_s < 2.2
    with pytest.raises(audio.AudioError):
        audio.decode(mp3[:40])


def test_wrong_header_rate_is_believed_then_checked() -> None:
    """A WAV whose header claims 8 kHz holding 16 kHz data decodes at the header's rate (the only
    information there is) and is refused where 16 kHz is required."""
    samples = (tone(1.0, 16000) * 32767).astype("<i2").tobytes()
    import io

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(8000)
        handle.writeframes(samples)
    decoded = audio.decode(buffer.getvalue())
    assert decoded.source_rate == 8000 and decoded.duration_s == pytest.approx(2.0, abs=0.01)
    with pytest.raises(audio.SampleRateMismatch):
        audio.decode(buffer.getvalue(), required_rate=16000)


def test_unsupported_format_name() -> None:
    with pytest.raises(audio.UnsupportedFormat):
        audio.decode(b"abc", format="midi")


def test_two_hours_of_silence_refused_from_the_header_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(1)
        handle.setframerate(8000)
        block = b"\x80" * 8000 * 60
        for _ in range(120):
            handle.writeframes(block)
    assert audio.probe(path).duration_s == pytest.approx(7200, abs=1)
    started = time.perf_counter()
    with pytest.raises(audio.AudioTooLong):
        audio.decode(path, max_seconds=60)
    assert time.perf_counter() - started < 5  # refused from the header, not after decoding 2 h


def test_too_large_before_decoding() -> None:
    with pytest.raises(audio.AudioTooLarge):
        audio.decode(b"\x00" * 2048, format="pcm", max_bytes=1024)


def test_too_short() -> None:
    with pytest.raises(audio.AudioTooShort):
        audio.decode(audio.encode_wav(tone(0.05)), min_seconds=0.1)


def test_headerless_stream_too_long_stops_while_decoding() -> None:
    mp3 = encode(tone(8.0), 16000, "mp3")
    with pytest.raises(audio.AudioTooLong):
        audio.decode(mp3, max_seconds=3)


def test_wav_encoding_inverts_16_bit_decoding() -> None:
    """Audio decoded from 16-bit PCM encodes back to the same integers (the evaluation clients send the
    dataset's clips through the APIs this way; a one-step change moved the words Whisper heard)."""
    integers = np.array([-32768, -32767, -12345, -1, 0, 1, 2, 12345, 32766, 32767], dtype="<i2")
    decoded = audio.decode(integers.tobytes(), format="pcm")
    again = audio.decode(audio.encode_wav(decoded.samples))
    assert np.array_equal(again.samples, decoded.samples)
    assert np.array_equal(audio.to_pcm16(decoded.samples), integers)
    # Out of range is clipped, not wrapped; in between rounds to the nearest step.
    assert audio.to_pcm16(np.array([1.5, -1.5, 0.4 / 32768, 0.6 / 32768])).tolist() == [32767, -32768, 0, 1]


def _one_shot(samples: np.ndarray, rate: int) -> np.ndarray:
    """What decoding did before it streamed: the whole (channels, n) array mixed down, then one soxr call."""
    import soxr

    return soxr.resample(samples.mean(axis=0), rate, 16000).astype(np.float32)


@pytest.mark.parametrize("fmt", ["wav", "mp3", "m4a", "ogg"])
def test_decoding_in_blocks_gives_the_whole_arrays_samples(fmt: str) -> None:
    """Decoded frames are mixed down and resampled one by one; the result is bit for bit the mix-down and
    one-shot resampling of the whole decoded array (soxr's stream and its one-shot call agree)."""
    rate = 48000 if fmt == "ogg" else 44100
    data = encode(tone(6.0, rate, 440.0, channels=2), rate, fmt)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [_frame_to_float(frame) for frame in container.decode(stream)]
    assert len(frames) > 10
    expected = _one_shot(np.concatenate(frames, axis=1), rate)
    decoded = audio.decode(data)
    assert decoded.source_rate == rate and decoded.source_channels == 2
    assert np.array_equal(decoded.samples, expected)
    kept = audio.decode(data, mono=False)
    assert kept.channels == 2 and kept.samples.shape[1] == expected.shape[0]


def test_long_headerless_pcm_is_read_in_blocks() -> None:
    """Raw PCM longer than a read block (several blocks and an incomplete last sample) decodes to what the
    whole buffer did."""
    stereo = tone(20.0, 44100, 300.0, channels=2)
    raw = (stereo.T.reshape(-1) * 32767).astype("<i2").tobytes() + b"\x01"
    assert len(raw) > 3 * PCM_BLOCK_SAMPLES * 4
    decoded = audio.decode(raw, format="pcm", pcm_rate=44100, pcm_channels=2)
    whole = np.frombuffer(raw[:-1], dtype="<i2").astype(np.float32).reshape(-1, 2).T / 32768.0
    assert np.array_equal(decoded.samples, _one_shot(whole, 44100))

    class Trickling(io.BytesIO):
        """A stream whose reads stop short, inside a sample (as a raw or network stream may)."""

        def read(self, size: int | None = -1) -> bytes:
            return super().read(min(size if size is not None and size >= 0 else 1 << 30, 1001))

    trickled = audio.decode(Trickling(raw), format="pcm", pcm_rate=44100, pcm_channels=2)
    assert np.array_equal(trickled.samples, decoded.samples)


def test_a_long_recording_is_never_held_at_its_source_rate(tmp_path: Path) -> None:
    """Two minutes of 48 kHz stereo are 46 MB of float32 at the source rate and 7.7 MB as 16 kHz mono:
    decoding allocates about twice the latter (the blocks, then their concatenation), never the former."""
    import tracemalloc

    path = tmp_path / "long.wav"
    block = (tone(10.0, 48000, 440.0, channels=2).T.reshape(-1) * 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(2)
        handle.setsampwidth(2)
        handle.setframerate(48000)
        for _ in range(12):
            handle.writeframes(block)
    tracemalloc.start()
    try:
        decoded = audio.decode(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded.duration_s == pytest.approx(120.0, abs=0.01)
    source_rate_array = 120 * 48000 * 2 * 4
    assert peak < 0.5 * source_rate_array, f"peak {peak / 1e6:.1f} MB"
