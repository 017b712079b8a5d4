"""Audio intake: decode anything PyAV reads, resample to 16 kHz, validate, probe duration."""

from tingyin.audio.decode import (
    TARGET_RATE,
    AudioError,
    AudioInfo,
    AudioTooLarge,
    AudioTooLong,
    AudioTooShort,
    CorruptAudio,
    DecodedAudio,
    EmptyAudio,
    SampleRateMismatch,
    UnsupportedFormat,
    decode,
    encode_wav,
    iter_chunks,
    probe,
    resample,
)

__all__ = [
    "TARGET_RATE",
    "AudioError",
    "AudioInfo",
    "AudioTooLarge",
    "AudioTooLong",
    "AudioTooShort",
    "CorruptAudio",
    "DecodedAudio",
    "EmptyAudio",
    "SampleRateMismatch",
    "UnsupportedFormat",
    "decode",
    "encode_wav",
    "iter_chunks",
    "probe",
    "resample",
]
