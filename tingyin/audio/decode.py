"""Decode any audio container PyAV (FFmpeg) reads into 16 kHz float32, with typed errors.

Every entry point takes bytes, a path or a binary file object. Limits (bytes, seconds) are checked as
early as possible: the byte size before decoding, the duration from the container header before the
full decode when the header has one, and again while decoding for streams that do not say.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np

from tingyin.errors import InvalidRequest

TARGET_RATE = 16000
PCM16_SCALE = 32768.0  # 16-bit PCM decodes as integer / 32768 (and ``to_pcm16`` inverts it exactly)

AudioSource = bytes | bytearray | memoryview | str | Path | BinaryIO

# Containers/codecs we accept by name. The decoder reads more, but callers ask by these names.
KNOWN_FORMATS = frozenset(
    {"pcm", "raw", "wav", "amr", "mp3", "m4a", "aac", "mp4", "ogg", "opus", "flac", "webm", "mkv", "wma"}
)


class AudioError(InvalidRequest):
    """The audio cannot be used."""

    code = "audio_error"


class EmptyAudio(AudioError):
    """The audio data is empty."""

    code = "audio_empty"


class CorruptAudio(AudioError):
    """The audio data cannot be decoded."""

    code = "audio_corrupt"


class UnsupportedFormat(AudioError):
    """The audio format is not supported."""

    code = "audio_unsupported_format"


class AudioTooLong(AudioError):
    """The audio is longer than allowed."""

    code = "audio_too_long"


class AudioTooShort(AudioError):
    """The audio is shorter than allowed."""

    code = "audio_too_short"


class AudioTooLarge(AudioError):
    """The audio data is larger than allowed."""

    code = "audio_too_large"


class SampleRateMismatch(AudioError):
    """The audio's sample rate is not the one declared or required."""

    code = "audio_wrong_sample_rate"


class WrongEncoding(AudioError):
    """The audio is not encoded as declared (e.g. "wav" that is not 16-bit PCM WAV)."""

    code = "audio_wrong_encoding"


# What each declared format must turn out to be: (FFmpeg container names, codec names); None = any.
_DECLARED: dict[str, tuple[frozenset[str], frozenset[str] | None]] = {
    "wav": (frozenset({"wav"}), frozenset({"pcm_s16le"})),
    "amr": (frozenset({"amr"}), None),
    "mp3": (frozenset({"mp3"}), None),
    "m4a": (frozenset({"mov,mp4,m4a,3gp,3g2,mj2"}), None),
    "flac": (frozenset({"flac"}), None),
}


def check_declared_format(info: AudioInfo, declared: str) -> None:
    """Refuse audio whose container or codec differs from the format the caller declared."""
    expected = _DECLARED.get(declared.lower())
    if expected is None:
        return
    containers, codecs = expected
    if info.format not in containers or (codecs is not None and info.codec not in codecs):
        raise WrongEncoding(f"declared {declared}, but the data is {info.format}/{info.codec}")


@dataclass(frozen=True)
class AudioInfo:
    """What the container says about the audio, read without decoding it all."""

    format: str
    codec: str
    sample_rate: int
    channels: int
    duration_s: float | None


@dataclass(frozen=True)
class DecodedAudio:
    """Decoded audio. ``samples`` is float32 in [-1, 1]: shape (n,) when mono, (channels, n) otherwise."""

    samples: np.ndarray
    sample_rate: int
    source_rate: int
    source_channels: int
    format: str

    @property
    def duration_s(self) -> float:
        return float(self.samples.shape[-1]) / self.sample_rate

    @property
    def channels(self) -> int:
        return 1 if self.samples.ndim == 1 else int(self.samples.shape[0])

    def channel(self, index: int) -> np.ndarray:
        return self.samples if self.samples.ndim == 1 else self.samples[index]

    def mono(self) -> np.ndarray:
        return self.samples if self.samples.ndim == 1 else self.samples.mean(axis=0).astype(np.float32)


def _as_stream(source: AudioSource) -> tuple[BinaryIO, int]:
    """A seekable binary stream and its size in bytes."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return io.BytesIO(data), len(data)
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            size = path.stat().st_size
            return path.open("rb"), size
        except FileNotFoundError as exc:
            raise AudioError("the audio file is missing") from exc
    stream = source
    position = stream.tell()
    stream.seek(0, io.SEEK_END)
    size = stream.tell() - position
    stream.seek(position)
    return stream, size


def _reason(exc: BaseException) -> str:
    """FFmpeg's and the OS's reason without the file name they add (a server path)."""
    reason = getattr(exc, "strerror", None)
    return str(reason) if reason else str(exc)


def _normalise_format(fmt: str | None) -> str | None:
    if fmt is None:
        return None
    fmt = fmt.strip().lower().lstrip(".")
    if fmt in ("s16le", "raw"):
        return "pcm"
    if fmt not in KNOWN_FORMATS:
        raise UnsupportedFormat(f"unsupported audio format: {fmt!r}")
    return fmt


def _check_size(size: int, max_bytes: int | None) -> None:
    if size == 0:
        raise EmptyAudio("audio data is empty")
    if max_bytes is not None and size > max_bytes:
        raise AudioTooLarge(f"audio is {size} bytes, more than the limit of {max_bytes}")


def _check_duration(duration_s: float | None, max_seconds: float | None) -> None:
    if duration_s is not None and max_seconds is not None and duration_s > max_seconds + 0.05:
        raise AudioTooLong(f"audio lasts {duration_s:.1f} s, more than the limit of {max_seconds:g} s")


PCM_BITS = (8, 16, 24, 32)


def _pcm_to_float(data: bytes, channels: int, bits: int = 16) -> np.ndarray:
    """Headerless little-endian PCM as float32: signed 16, 24 or 32 bit, or unsigned 8 bit (as in WAV)."""
    width = bits // 8
    usable = len(data) - len(data) % (width * channels)
    if usable <= 0:
        raise EmptyAudio("pcm data holds no complete sample")
    raw = data[:usable]
    if bits == 8:
        ints = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif bits == 16:
        ints = np.frombuffer(raw, dtype="<i2").astype(np.float32) / PCM16_SCALE
    elif bits == 24:
        triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        values = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        values = np.where(values >= 1 << 23, values - (1 << 24), values)
        ints = values.astype(np.float32) / float(1 << 23)
    else:
        ints = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    if channels > 1:
        return ints.reshape(-1, channels).T.copy()
    return ints


def resample(samples: np.ndarray, source_rate: int, target_rate: int = TARGET_RATE) -> np.ndarray:
    """Band-limited resampling (soxr, high quality). Works on (n,) or (channels, n) arrays."""
    if source_rate == target_rate:
        return samples.astype(np.float32, copy=False)
    import soxr

    if samples.ndim == 1:
        return soxr.resample(samples, source_rate, target_rate).astype(np.float32)
    return np.stack([soxr.resample(ch, source_rate, target_rate) for ch in samples]).astype(np.float32)


def probe(
    source: AudioSource,
    *,
    format: str | None = None,
    pcm_rate: int = TARGET_RATE,
    pcm_channels: int = 1,
    pcm_bits: int = 16,
) -> AudioInfo:
    """Read format, rate, channels and (when the header says) duration without a full decode."""
    fmt = _normalise_format(format)
    stream, size = _as_stream(source)
    _check_size(size, None)
    if fmt == "pcm":
        _check_pcm(pcm_rate, pcm_channels, pcm_bits)
        codec = "pcm_u8" if pcm_bits == 8 else f"pcm_s{pcm_bits}le"
        return AudioInfo(
            "pcm", codec, pcm_rate, pcm_channels, size / (pcm_bits // 8 * pcm_rate * pcm_channels)
        )
    try:
        with av.open(stream, mode="r", format=_container_hint(fmt)) as container:
            if not container.streams.audio:
                raise CorruptAudio("no audio stream in the data")
            audio_stream = container.streams.audio[0]
            return AudioInfo(
                format=container.format.name,
                codec=audio_stream.codec_context.name,
                sample_rate=int(audio_stream.codec_context.sample_rate or 0),
                channels=int(audio_stream.codec_context.channels or 0),
                duration_s=_header_duration(container, audio_stream),
            )
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, IndexError) as exc:
        raise CorruptAudio(f"cannot read the audio: {_reason(exc)}") from exc


def _check_pcm(rate: int, channels: int, bits: int) -> None:
    if rate <= 0 or channels <= 0:
        raise InvalidRequest("pcm needs a positive rate and channel count")
    if bits not in PCM_BITS:
        raise InvalidRequest(f"pcm samples must be {', '.join(map(str, PCM_BITS))} bits wide")


def _container_hint(fmt: str | None) -> str | None:
    # FFmpeg guesses most containers from the first bytes; only headerless ones need a name.
    return {"amr": "amr", "aac": "aac", "mp3": "mp3"}.get(fmt or "")


def _header_duration(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream
) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    return None


def decode(
    source: AudioSource,
    *,
    format: str | None = None,
    pcm_rate: int = TARGET_RATE,
    pcm_channels: int = 1,
    pcm_bits: int = 16,
    target_rate: int = TARGET_RATE,
    mono: bool = True,
    max_bytes: int | None = None,
    max_seconds: float | None = None,
    min_seconds: float | None = None,
    required_rate: int | None = None,
) -> DecodedAudio:
    """Decode ``source`` to float32 at ``target_rate``.

    ``format`` names the container when known ("pcm" means headerless little-endian samples of
    ``pcm_bits`` at ``pcm_rate``, 16-bit signed unless said otherwise);
    ``required_rate`` rejects audio whose own sample rate differs (vendors that only take 16 kHz);
    ``mono=False`` keeps channels apart (call-centre stereo puts each party on its own channel).
    """
    fmt = _normalise_format(format)
    stream, size = _as_stream(source)
    try:
        _check_size(size, max_bytes)
        if fmt == "pcm":
            _check_pcm(pcm_rate, pcm_channels, pcm_bits)
            _check_duration(size / (pcm_bits // 8 * pcm_rate * pcm_channels), max_seconds)
            if required_rate is not None and pcm_rate != required_rate:
                raise SampleRateMismatch(f"sample rate {pcm_rate} Hz, only {required_rate} Hz is accepted")
            collected = _Collected(pcm_rate, target_rate, mono)
            _read_pcm(stream, pcm_channels, pcm_bits, collected)
            fmt_name = "pcm"
        else:
            collected, fmt_name = _decode_container(
                stream, fmt, max_seconds, required_rate, target_rate, mono
            )
    finally:
        if isinstance(source, str | Path):
            stream.close()
    samples = collected.samples()
    source_rate, source_channels = collected.source_rate, collected.source_channels
    if samples.shape[-1] == 0:
        raise EmptyAudio("the audio holds no samples")
    if not np.all(np.isfinite(samples)):
        raise CorruptAudio("the audio holds non-finite samples")
    decoded = DecodedAudio(samples, target_rate, source_rate, source_channels, fmt_name)
    _check_duration(decoded.duration_s, max_seconds)
    if min_seconds is not None and decoded.duration_s < min_seconds:
        raise AudioTooShort(f"audio lasts {decoded.duration_s:.2f} s, less than {min_seconds:g} s")
    return decoded


def _decode_container(
    stream: BinaryIO,
    fmt: str | None,
    max_seconds: float | None,
    required_rate: int | None,
    target_rate: int,
    mono: bool,
) -> tuple[_Collected, str]:
    try:
        container = av.open(stream, mode="r", format=_container_hint(fmt))
    except av.error.FFmpegError as exc:
        raise CorruptAudio(f"not a readable audio file: {_reason(exc)}") from exc
    with container:
        if not container.streams.audio:
            raise CorruptAudio("no audio stream in the data")
        audio_stream = container.streams.audio[0]
        rate = int(audio_stream.codec_context.sample_rate or 0)
        if rate <= 0:
            raise CorruptAudio("the audio stream has no sample rate")
        _check_duration(_header_duration(container, audio_stream), max_seconds)
        if required_rate is not None and rate != required_rate:
            raise SampleRateMismatch(f"sample rate {rate} Hz, only {required_rate} Hz is accepted")
        collected = _Collected(rate, target_rate, mono)
        limit = None if max_seconds is None else math.ceil((max_seconds + 0.05) * rate)
        try:
            for frame in container.decode(audio_stream):
                collected.add(_frame_to_float(frame))
                if limit is not None and collected.source_samples > limit:
                    raise AudioTooLong(f"audio is longer than the limit of {max_seconds:g} s")
        except av.error.FFmpegError as exc:
            if not collected.source_samples:
                raise CorruptAudio(f"cannot decode the audio: {_reason(exc)}") from exc
            # A truncated tail still yields what came before it; keep that like FFmpeg's CLI does.
        if not collected.source_samples:
            raise CorruptAudio("the audio stream decoded to nothing")
        return collected, container.format.name


PCM_BLOCK_SAMPLES = 1 << 18  # per channel, per read of headerless PCM (0.5-1 MiB of 16-bit mono)


def _read_pcm(stream: BinaryIO, channels: int, bits: int, collected: _Collected) -> None:
    """Headerless PCM read in blocks into ``collected``. A read may end inside a sample (a stream may
    return fewer bytes than asked before its end): those bytes lead the next block; an incomplete
    last sample is dropped."""
    sample_bytes = channels * (bits // 8)
    pending = b""
    while block := stream.read(PCM_BLOCK_SAMPLES * sample_bytes):
        data = pending + block if pending else block
        whole = len(data) - len(data) % sample_bytes
        pending = data[whole:]
        if whole:
            samples = _pcm_to_float(data[:whole], channels, bits)
            collected.add(samples if samples.ndim == 2 else samples[np.newaxis])
    if not collected.source_samples:
        raise EmptyAudio("pcm data holds no complete sample")


class _Collected:
    """Decoded audio gathered block by block, brought to mono (when asked) and to the target rate as it
    arrives, so a long recording is never held whole at its source rate: ten minutes of 44.1 kHz stereo are
    210 MB of float32 there, 38 MB as 16 kHz mono (before, the whole source-rate array, its concatenation
    and its mix-down were alive at once, about 500 MB per 100 MB file). soxr's streaming resampler gives
    the very samples its one-shot call does, and a block's mix-down is the whole array's, element by
    element, so the result is what decoding it whole gave."""

    def __init__(self, source_rate: int, target_rate: int, mono: bool) -> None:
        self.source_rate = source_rate
        self.target_rate = target_rate
        self.mono = mono
        self.source_channels = 0
        self.source_samples = 0  # per channel
        self._streams: list[Any] = []  # a soxr.ResampleStream per kept channel (none at the same rate)
        self._parts: list[np.ndarray] = []  # (kept channels, n) at the target rate

    def add(self, block: np.ndarray) -> None:
        """One block of float32 (channels, n) at the source rate."""
        if block.shape[1] == 0:
            return
        if not self.mono and self.source_channels and block.shape[0] != self.source_channels:
            raise CorruptAudio("the number of channels changes within the stream")
        self.source_channels = block.shape[0]
        self.source_samples += block.shape[1]
        if self.mono and block.shape[0] > 1:
            block = block.mean(axis=0, keepdims=True)
        self._parts.append(self._resampled(np.ascontiguousarray(block, dtype=np.float32), last=False))

    def samples(self) -> np.ndarray:
        """Everything added, at the target rate: (n,) when mono or a single channel, else (channels, n)."""
        if self._streams:
            self._parts.append(self._resampled(None, last=True))
        self._streams = []
        parts = [part for part in self._parts if part.shape[1]]
        self._parts = []
        if not parts:
            return np.zeros(0, dtype=np.float32)
        joined = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        return joined[0] if joined.shape[0] == 1 else joined

    def _resampled(self, block: np.ndarray | None, *, last: bool) -> np.ndarray:
        if self.source_rate == self.target_rate:
            assert block is not None
            return block
        import soxr

        if block is None:  # the end: what the resamplers still hold
            return np.stack(
                [s.resample_chunk(np.zeros(0, dtype=np.float32), last=True) for s in self._streams]
            )
        if not self._streams:
            self._streams = [
                soxr.ResampleStream(self.source_rate, self.target_rate, 1, dtype="float32")
                for _ in range(block.shape[0])
            ]
        return np.stack(
            [s.resample_chunk(channel, last=last) for s, channel in zip(self._streams, block, strict=True)]
        )


def _frame_to_float(frame: av.AudioFrame) -> np.ndarray:
    """A frame as float32 (channels, n), whatever its sample format."""
    array = frame.to_ndarray()
    fmt = frame.format
    channels = len(frame.layout.channels)
    if not fmt.is_planar:
        array = array.reshape(-1, channels).T
    if array.dtype == np.int16:
        return array.astype(np.float32) / PCM16_SCALE
    if array.dtype == np.int32:
        return array.astype(np.float32) / 2147483648.0
    if array.dtype == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    return array.astype(np.float32)


def iter_chunks(samples: np.ndarray, chunk_s: float, rate: int = TARGET_RATE) -> Iterator[np.ndarray]:
    """Consecutive windows of ``chunk_s`` seconds (the last may be shorter)."""
    step = max(1, int(chunk_s * rate))
    for start in range(0, samples.shape[-1], step):
        yield samples[..., start : start + step]


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples as little-endian 16-bit integers: the inverse of decoding (integer / 32768), so audio
    decoded from 16-bit PCM goes back to the very integers it came from. Rounded to the nearest step and
    clipped to the range. (Scaling by 32767 and truncating, as this did before, moved almost every sample
    of such audio one step towards zero: zh_dev clips sent that way through the Baidu API came back with
    other words on 27 of the 300.)"""
    scaled = np.rint(np.asarray(samples, dtype=np.float64) * PCM16_SCALE)
    return np.clip(scaled, -PCM16_SCALE, PCM16_SCALE - 1).astype("<i2")


def encode_wav(samples: np.ndarray, rate: int = TARGET_RATE) -> bytes:
    """16-bit PCM WAV bytes of mono or (channels, n) float samples (``to_pcm16``)."""
    import wave

    channels = 1 if samples.ndim == 1 else samples.shape[0]
    interleaved = samples if samples.ndim == 1 else samples.T.reshape(-1)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(to_pcm16(interleaved).tobytes())
    return buffer.getvalue()
