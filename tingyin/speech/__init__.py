"""Speech recognition: one ``Recognizer`` per model and one recording pipeline behind every ASR API."""

from tingyin.speech.errors import NoSpeech, RecognitionTimeout
from tingyin.speech.models import SpeechModels, speech_models
from tingyin.speech.options import LANGUAGES, DecodeOptions, HotWord
from tingyin.speech.pipeline import RecordingOptions, RecordingResult, transcribe_recording
from tingyin.speech.recognizer import Recognizer
from tingyin.speech.types import Transcript, Utterance, Word

__all__ = [
    "LANGUAGES",
    "DecodeOptions",
    "HotWord",
    "NoSpeech",
    "RecognitionTimeout",
    "Recognizer",
    "RecordingOptions",
    "RecordingResult",
    "SpeechModels",
    "Transcript",
    "Utterance",
    "Word",
    "speech_models",
    "transcribe_recording",
]
