"""The long-file transcription job behind /v1/transcriptions, Volcano AUC and Qiniu.

Parameters are a typed ``TranscriptionParams``, validated when the job is submitted (a bad value is the
caller's 4xx, never a failed job later). The handler fetches or opens the audio, decodes it and runs the
recording pipeline; the result is vendor-neutral (``RecordingResult``) and adapters render it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from tingyin.jobs.service import JobContext, job_handler, on_job_finished, submit_job
from tingyin.speech.pipeline import RecordingOptions
from tingyin.validation import FrozenModel

if TYPE_CHECKING:
    from tingyin.store.blobs import StoredBlob

DEFAULT_MAX_SECONDS = 5 * 3600.0
KIND = "transcription"


class AudioSource(FrozenModel):
    """Where the audio is: a stored blob, or a URL fetched by the worker (SSRF rules apply)."""

    blob: Annotated[str, Field(max_length=512)] | None = None
    url: Annotated[str, Field(min_length=1, max_length=4096)] | None = None

    @field_validator("blob")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        from tingyin.store.blobs import check_key

        return None if value is None else check_key(value)

    @model_validator(mode="after")
    def _one(self) -> AudioSource:
        if (self.blob is None) == (self.url is None):
            raise ValueError("give exactly one of blob and url")
        return self


class AudioInput(FrozenModel):
    """How to read the audio: a container hint, or raw PCM's rate, channels and sample width."""

    format: Annotated[str, Field(max_length=16)] | None = None
    pcm_rate: Annotated[int, Field(ge=8000, le=192_000)] = 16000
    pcm_channels: Annotated[int, Field(ge=1, le=8)] = 1
    pcm_bits: Literal[8, 16, 24, 32] = 16
    max_seconds: Annotated[float, Field(gt=0, le=DEFAULT_MAX_SECONDS)] = DEFAULT_MAX_SECONDS


class TranscriptionParams(FrozenModel):
    """Everything a transcription job needs, checked at submit."""

    source: AudioSource
    audio: AudioInput = AudioInput()
    recording: RecordingOptions = RecordingOptions()
    callback: Annotated[str, Field(max_length=4096)] | None = None
    vendor: Literal["native", "volcano", "qiniu"] = "native"
    # What an adapter needs to render its answer later (e.g. Qiniu's voice_id); the core never reads it.
    vendor_fields: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


def submit_transcription(
    params: TranscriptionParams,
    *,
    app_pk: int | None,
    job_id: str | None = None,
    inputs: Sequence[StoredBlob] = (),
    keep_audio: bool = False,
) -> str:
    """Queue a transcription job; returns its id. ``inputs`` (its uploaded audio, stored under the job's
    prefix) become the job's in the same transaction, or are deleted when the job cannot be created.
    They go when the job ends, or with ``keep_audio`` (to be played beside the transcript), once the job
    succeeded, when it is purged."""
    return submit_job(
        KIND,
        params.model_dump(mode="json"),
        app_pk=app_pk,
        job_id=job_id,
        inputs=inputs,
        keep_inputs=keep_audio,
    )


def job_params(raw: dict[str, Any]) -> TranscriptionParams:
    return TranscriptionParams.parse(raw)


@contextmanager
def _audio_source(ctx: JobContext, source: AudioSource) -> Iterator[Any]:
    """The job's audio: its stored upload as a seekable stream, or its URL downloaded to scratch."""
    from tingyin.audio.fetch import fetch_to_file
    from tingyin.store.blobs import blob_store

    if source.blob is not None:
        with blob_store().open(source.blob) as stored:
            yield stored
        return
    assert source.url is not None
    # Fetched again on a retry: the file of a crashed attempt may be partial.
    target = ctx.work_dir / "download"
    fetch_to_file(source.url, target)
    yield target


@job_handler(KIND)
def transcription_job(ctx: JobContext) -> dict[str, Any]:
    from tingyin import audio
    from tingyin.config import get_settings
    from tingyin.speech.models import speech_models
    from tingyin.speech.pipeline import transcribe_recording

    params = job_params(ctx.params)
    # The processing deadline of this attempt (Volcano 1021, Qiniu 106): the clock starts when the job
    # starts running, so time spent queued does not count.
    allowed = get_settings().transcription_deadline_s
    deadline = time.monotonic() + allowed if allowed > 0 else None
    with _audio_source(ctx, params.source) as source:
        ctx.progress(0.02, "audio ready")
        decoded = audio.decode(
            source,
            format=params.audio.format,
            pcm_rate=params.audio.pcm_rate,
            pcm_channels=params.audio.pcm_channels,
            pcm_bits=params.audio.pcm_bits,
            mono=not params.recording.split_channels,
            max_seconds=params.audio.max_seconds,
        )

    def report(fraction: float, message: str | None) -> None:
        ctx.progress(0.05 + 0.93 * fraction, message)

    from tingyin.metrics import current_api

    api = current_api.set(params.vendor)  # the audio seconds of this job count for the API that submitted it
    try:
        with speech_models().use(params.recording.decode.model) as recognizer:
            result = transcribe_recording(
                decoded, params.recording, recognizer, progress=report, deadline=deadline
            )
    finally:
        current_api.reset(api)
    ctx.progress(0.98, "rendering")
    return result.to_dict()


@on_job_finished(KIND)
def deliver_callback(job_id: str) -> None:
    """POST the vendor's answer to the job's callback URL (retried with backoff by the hook task)."""
    import httpx

    from tingyin.audio.fetch import UrlPolicy
    from tingyin.jobs.service import get_job

    job = get_job(job_id)
    params = job_params(job.params)
    if not params.callback:
        return
    UrlPolicy.from_settings().check(params.callback)
    if params.vendor == "volcano":
        from tingyin.api.compat.volcano import query_answer

        body: dict[str, Any] = query_answer(job)
    else:
        body = job.as_dict()
    response = httpx.post(params.callback, json=body, timeout=30)
    if response.status_code >= 300:
        raise RuntimeError(f"callback answered HTTP {response.status_code}")


__all__ = ["AudioInput", "AudioSource", "TranscriptionParams", "submit_transcription", "transcription_job"]
