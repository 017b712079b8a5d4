"""Encode test signals into real files of every container the server accepts (PyAV's FFmpeg)."""

from __future__ import annotations

import io

import av
import numpy as np

# (container, codec, sample format, rate the codec needs or None)
FORMATS: dict[str, tuple[str, str, str, int | None]] = {
    "wav": ("wav", "pcm_s16le", "s16", None),
    "flac": ("flac", "flac", "s16", None),
    "mp3": ("mp3", "libmp3lame", "s16p", None),
    "m4a": ("ipod", "aac", "fltp", None),
    "mp4": ("mp4", "aac", "fltp", None),
    "ogg": ("ogg", "libopus", "s16", 48000),
    "opus": ("opus", "libopus", "s16", 48000),
    "amr": ("amr", "libopencore_amrnb", "s16", 8000),
}


def tone(seconds: float = 1.0, rate: int = 16000, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono * (0.5 + 0.5 * c) for c in range(channels)])


def encode(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    """``samples`` float32 (n,) or (channels, n) at ``rate``, encoded as ``fmt`` (see FORMATS)."""
    container_name, codec, sample_format, codec_rate = FORMATS[fmt]
    if codec_rate is not None and codec_rate != rate:
        from tingyin.audio import resample

        samples, rate = resample(samples, rate, codec_rate), codec_rate
    data = samples[None, :] if samples.ndim == 1 else samples
    channels = data.shape[0]
    if codec == "libopencore_amrnb" and channels > 1:
        data, channels = data.mean(axis=0, keepdims=True), 1
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_name) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono" if channels == 1 else "stereo"
        if codec == "libopencore_amrnb":
            stream.bit_rate = 12200
        ints = np.clip(data, -1, 1)
        frame_size = stream.codec_context.frame_size or 1024
        for start in range(0, ints.shape[1], frame_size):
            block = ints[:, start : start + frame_size]
            if sample_format == "s16":
                array = (block.T.reshape(1, -1) * 32767).astype(np.int16)
            elif sample_format == "s16p":
                array = (block * 32767).astype(np.int16)
            else:
                array = block.astype(np.float32)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(array),
                format=sample_format,
                layout="mono" if channels == 1 else "stereo",
            )
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


# Everyday Cantonese (colloquial characters: 哋, 嘅, 咗, 唔), read by espeak-ng's yue voice. No recording of
# real Cantonese speech is available offline; synthetic speech at least exercises the Cantonese path.
CANTONESE_SENTENCES = (
    "今日天氣好好，我哋去飲茶啦。",
    "你食咗飯未呀？",
    "呢個係我嘅朋友。",
    "我唔識講普通話。",
    "佢哋聽日返學。",
    "香港嘅嘢食好好味。",
)


def cantonese_speech(text: str, words_per_minute: int = 130) -> bytes | None:
    """WAV bytes of ``text`` read by espeak-ng's Cantonese voice; None where espeak-ng is not installed."""
    import shutil
    import subprocess

    if shutil.which("espeak-ng") is None:
        return None
    return subprocess.run(
        ["espeak-ng", "-v", "yue", "-s", str(words_per_minute), "--stdout", text],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
