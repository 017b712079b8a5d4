"""Speech recognition: one engine (VAD + batched Whisper) behind every ASR API."""

from tingyin.speech.engine import detect_language, iter_utterances, transcribe, validate_options
from tingyin.speech.types import LANGUAGES, HotWord, TranscribeOptions, Transcript, Utterance, Word

__all__ = [
    "LANGUAGES",
    "HotWord",
    "TranscribeOptions",
    "Transcript",
    "Utterance",
    "Word",
    "detect_language",
    "iter_utterances",
    "transcribe",
    "validate_options",
]
