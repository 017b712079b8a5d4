"""Typed errors of the speech core (adapters map them to their vendor's codes)."""

from __future__ import annotations

from tingyin.errors import EngineError, TingyinError


class RecognitionTimeout(EngineError):
    """Recognition took longer than allowed."""

    code = "recognition_timeout"

    def __init__(self, message: str, *, stage: str) -> None:
        super().__init__(message)
        self.stage = stage  # "decode" or "recognize"


class NoSpeech(TingyinError):
    """Nothing was recognised in the audio."""

    code = "no_speech"
    http_status = 422


__all__ = ["NoSpeech", "RecognitionTimeout"]
