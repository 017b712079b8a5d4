"""Which ASR models a request may use, and the loaded ``Recognizer`` of each.

The operator enables models (``TINGYIN_ASR_MODEL`` and ``TINGYIN_ASR_MODELS``); a request may only pick one of
their names. Clients never pass a path or a hub id, and no error text shows one: an operator's
``alias=/srv/models/x`` is known to clients as ``alias`` only. Recognizers live in the process's model
manager,
held (``with speech_models().use(name) as recognizer``) for the length of the work, so an idle model is
unloaded only when nobody uses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tingyin.config import Settings, get_settings
from tingyin.errors import InvalidRequest
from tingyin.models import ModelManager, ModelStore, get_manager, get_store
from tingyin.speech.neural_lm import NeuralLanguageModel
from tingyin.speech.recognizer import Recognizer


def _language_model(settings: Settings) -> object | None:
    """The Mandarin word trigram of the second pass, or None (the unigram fallback) when it is off or
    cannot be read (said once in the log)."""
    from tingyin.speech.zh_lm import load_language_model

    return load_language_model(settings.zh_lm)


def _neural_lm(settings: Settings, store: ModelStore) -> NeuralLanguageModel:
    """The accurate mode's language model, loaded (weights joined by the store) on its first request."""

    def load() -> object:
        from tingyin.speech.neural_lm import MODEL_NAME, GgufScorer

        # Every core: the recognizer scores under the Whisper runner's lock, so llama.cpp never shares the
        # cores with Whisper in this process (zh_dev, 40 clips, quiet 2 cores: RTF 0.342 with 1 thread,
        # 0.246 with 2, same transcripts).
        return GgufScorer(store.path(MODEL_NAME) / "model.gguf", threads=settings.cpu_threads)

    return NeuralLanguageModel(load)


@dataclass(frozen=True)
class SpeechModels:
    """The enabled ASR models of this process and their loaded recognizers."""

    settings: Settings
    manager: ModelManager
    store: ModelStore

    def enabled(self) -> dict[str, str]:
        """Client-visible name → the store reference it loads (a builtin name, a directory, a hub id)."""
        entries = {self.settings.asr_model: self.settings.asr_model}
        for item in self.settings.asr_models.split(","):
            item = item.strip()
            if not item:
                continue
            alias, _, reference = item.partition("=")
            entries[alias.strip()] = (reference or alias).strip()
        return entries

    def resolve(self, name: str | None) -> str:
        """The enabled model a request asked for (None: the default); ``InvalidRequest`` otherwise."""
        if name is None or name == "":
            return self.settings.asr_model
        enabled = self.enabled()
        if name not in enabled:
            raise InvalidRequest(
                f"model {name!r} is not enabled on this server; choose one of: {', '.join(enabled)}"
            )
        return name

    def loaded(self) -> set[str]:
        """The enabled models whose recognizer is loaded in this process."""
        keys = self.manager.loaded()
        return {alias for alias in self.enabled() if any(k.startswith(f"asr:{alias}:") for k in keys)}

    @contextmanager
    def use(self, name: str | None = None) -> Iterator[Recognizer]:
        """The recognizer of an enabled model, held for the ``with`` block."""
        alias = self.resolve(name)
        reference = self.enabled()[alias]
        settings = self.settings
        key = f"asr:{alias}:{reference}:{settings.compute_type}:{settings.zh_lm}:{settings.asr_accuracy}"

        def load() -> Recognizer:
            recognizer = Recognizer.from_whisper(
                self.store.path(reference),
                name=alias,
                vad_model=self.store.path("silero-vad") / "model.onnx",
                compute_type=settings.compute_type,
                cpu_threads=settings.cpu_threads,
                lone_request_copy=settings.asr_lone_request_copy,
                language_model=_language_model(settings),  # type: ignore[arg-type]
                neural_lm=_neural_lm(settings, self.store),
                default_accuracy=settings.asr_accuracy,
            )
            return recognizer

        with self.manager.use(key, load) as recognizer:
            yield recognizer


def speech_models() -> SpeechModels:
    """The enabled models as this process's settings configure them."""
    return SpeechModels(get_settings(), get_manager(), get_store())


__all__ = ["SpeechModels", "speech_models"]
