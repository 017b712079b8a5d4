"""The reference system of the recording benchmark: faster-whisper's own ``BatchedInferencePipeline``
(batch 8, its defaults otherwise: Silero VAD, beam 5) on the weights tingyin serves (the model store's
whisper-base directory), int8, with the server's thread count and the recording's language."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tingyin.eval.live import Transcription
from tingyin.eval.recordings import Recording, Segment


class BatchedReference:
    """Loads the model once; :meth:`transcribe` times the decoding only (the audio is decoded first)."""

    def __init__(
        self,
        models_dir: Path | None,
        *,
        threads: int,
        model: str = "whisper-base",
        compute_type: str = "int8",
        batch_size: int = 8,
    ) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        from tingyin.config import Settings
        from tingyin.models.registry import ModelStore
        from tingyin.speech.whisper import built_in_passing_thread

        settings = Settings(models_dir=models_dir) if models_dir else Settings()
        self.model_dir = ModelStore(settings).path(model)
        self.model_name, self.compute_type, self.threads, self.batch_size = (
            model,
            compute_type,
            threads,
            batch_size,
        )
        # Built as ours is (whisper.py), so neither pipeline pays for the thread it was built in.
        self._model = built_in_passing_thread(
            lambda: WhisperModel(
                str(self.model_dir),
                device="cpu",
                compute_type=compute_type,
                cpu_threads=threads,
                num_workers=1,
            )
        )
        self._pipeline = BatchedInferencePipeline(self._model)
        self._warm = False

    def describe(self) -> dict[str, Any]:
        return {
            "system": "faster_whisper.BatchedInferencePipeline",
            "model": self.model_name,
            "model_dir": str(self.model_dir),
            "compute_type": self.compute_type,
            "cpu_threads": self.threads,
            "batch_size": self.batch_size,
        }

    def transcribe(self, recording: Recording) -> Transcription:
        from tingyin.audio import decode

        assert recording.path is not None
        samples = decode(recording.path).mono()
        if not self._warm:  # the first call pays for one-time set-up; time warm runs only
            self._run(samples[: 16000 * 10], recording.language)
            self._warm = True
        started = time.perf_counter()
        segments = self._run(samples, recording.language)
        wall = time.perf_counter() - started
        joiner = " " if recording.language == "en" else ""
        return Transcription(joiner.join(s.text.strip() for s in segments).strip(), segments, wall)

    def _run(self, samples: Any, language: str) -> list[Segment]:
        from threadpoolctl import threadpool_limits

        # As a faster-whisper user runs it: OpenBLAS on every thread (tingyin's processes hold it to one,
        # cli.py; the batched pipeline's log-mel of 30 s windows is about 15% faster with two on 2 cores).
        with threadpool_limits(limits=self.threads, user_api="blas"):
            pieces, _ = self._pipeline.transcribe(samples, language=language, batch_size=self.batch_size)
            return [Segment(float(p.start), float(p.end), p.text) for p in pieces]
