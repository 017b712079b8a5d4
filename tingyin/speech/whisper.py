"""The one place a faster-whisper model is loaded, so ASR, language ID and embeddings share it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tingyin.config import get_settings
from tingyin.models import get_manager, get_store

if TYPE_CHECKING:
    from faster_whisper import WhisperModel


def load_whisper(name: str | None = None) -> WhisperModel:
    """The shared ``WhisperModel`` for ``name`` (default: the configured ASR model), loaded on first use."""
    settings = get_settings()
    model_name = name or settings.asr_model

    def loader() -> WhisperModel:
        from faster_whisper import WhisperModel

        path = get_store().path(model_name)
        return WhisperModel(
            str(path),
            device="cpu",
            compute_type=settings.compute_type,
            cpu_threads=settings.cpu_threads,
            num_workers=1,
        )

    return get_manager().get(f"whisper:{model_name}:{settings.compute_type}", loader)
