"""The real Whisper-base recognizer, built once for the speech tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MODEL_CACHE
from tingyin.config import Settings
from tingyin.models import ModelStore
from tingyin.speech.recognizer import Recognizer
from tingyin.speech.zh_lm import load_language_model


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    home = tmp_path_factory.mktemp("speech-home")
    return ModelStore(Settings(home=home, models_dir=MODEL_CACHE))


@pytest.fixture(scope="session")
def recognizer(model_store: ModelStore) -> Iterator[Recognizer]:
    """Whisper base with Silero VAD and the Mandarin language model (when one is installed)."""
    yield Recognizer.from_whisper(
        model_store.path("whisper-base"),
        name="whisper-base",
        vad_model=model_store.path("silero-vad") / "model.onnx",
        cpu_threads=2,
        language_model=load_language_model(""),
    )


@pytest.fixture(scope="session")
def unigram_recognizer(recognizer: Recognizer) -> Recognizer:
    """The same model without a Mandarin language model: the unigram fallback."""
    return Recognizer(recognizer.runner, recognizer.vad)


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "speech"
