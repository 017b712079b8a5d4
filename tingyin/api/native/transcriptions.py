"""Native speech API: synchronous recognition of short audio and transcription jobs for long audio.

Both run the same recording pipeline with the same options: language, ITN, punctuation, weighted hot words,
the model (one the operator enabled), and speakers/roles/channels.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from tingyin.api.deps import in_thread, native_app
from tingyin.errors import InvalidRequest
from tingyin.inference import InferenceExecutor
from tingyin.speech.options import DecodeOptions, HotWord, Language
from tingyin.speech.pipeline import MAX_SPEAKERS, RecordingOptions, RecordingResult
from tingyin.store.apps import AppInfo

router = APIRouter(prefix="/v1", tags=["speech"])

SYNC_MAX_SECONDS = 300.0
UPLOAD_MAX_BYTES = 500 * 1024 * 1024


class RecordingQuery:
    """The recognition options of both endpoints, as query parameters."""

    def __init__(
        self,
        language: Language = Query("auto", description="auto, zh, en, yue or zh-en"),
        itn: bool = Query(True, description="numbers, dates, money as digits"),
        punctuation: bool = Query(True),
        hot_words: str | None = Query(None, description="comma-separated phrase:weight (weight -10..10)"),
        model: str | None = Query(None, description="one of the models the operator enabled"),
        diarize: bool = Query(False, description="speaker per utterance (single-channel audio)"),
        num_speakers: int | None = Query(None, ge=1, le=MAX_SPEAKERS, description="when known"),
        roles: bool = Query(False, description="agent (S) / customer (C) per speaker"),
        split_channels: bool = Query(False, description="transcribe each channel apart"),
        word_timestamps: bool = Query(True),
    ) -> None:
        decode = DecodeOptions.parse(
            language=language,
            itn=itn,
            punctuation=punctuation,
            hot_words=HotWord.parse_list(hot_words),
            model=model or None,
            word_timestamps=word_timestamps,
        )
        self.options = RecordingOptions.parse(
            decode=decode,
            diarize=diarize,
            num_speakers=num_speakers,
            roles=roles,
            split_channels=split_channels,
        )


async def _upload_chunks(request: Request) -> AsyncIterator[bytes]:
    """The audio of a raw-body upload or of the ``file`` field of a multipart form."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_part_size=UPLOAD_MAX_BYTES)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidRequest("multipart upload needs a 'file' field")
        while chunk := await upload.read(1024 * 1024):
            yield chunk
        return
    async for chunk in request.stream():
        if chunk:
            yield chunk


async def _store_upload(request: Request) -> str:
    from tingyin.store.blobs import put_blob

    chunks = [chunk async for chunk in _upload_chunks(request)]
    if not chunks:
        raise InvalidRequest("no audio in the request body")
    blob = await in_thread(put_blob, chunks, max_bytes=UPLOAD_MAX_BYTES)
    return blob.key


def _recognize(blob_key: str, fmt: str | None, options: RecordingOptions) -> RecordingResult:
    from tingyin import audio
    from tingyin.speech.models import speech_models
    from tingyin.speech.pipeline import transcribe_recording
    from tingyin.store.blobs import get_blob

    decoded = audio.decode(
        get_blob(blob_key).path, format=fmt, max_seconds=SYNC_MAX_SECONDS, mono=not options.split_channels
    )
    with speech_models().use(options.decode.model) as recognizer:
        return transcribe_recording(decoded, options.model_copy(update={"require_speech": False}), recognizer)


@router.post("/recognize", response_model=RecordingResult)
async def recognize(
    request: Request,
    query: RecordingQuery = Depends(),
    format: str | None = Query(None, description="container when it cannot be sniffed, e.g. pcm"),
    app: AppInfo = Depends(native_app),
) -> RecordingResult:
    """Transcribe up to 5 minutes of audio (raw body or multipart ``file``) and answer at once."""
    from tingyin.speech.models import speech_models

    speech_models().resolve(query.options.decode.model)
    blob_key = await _store_upload(request)
    inference: InferenceExecutor = request.app.state.inference
    return await inference.run(_recognize, blob_key, format, query.options)


@router.post("/transcriptions", status_code=202)
async def create_transcription(
    request: Request,
    query: RecordingQuery = Depends(),
    format: str | None = Query(None),
    app: AppInfo = Depends(native_app),
) -> dict[str, Any]:
    """Queue a transcription job for audio of any length; poll ``GET /v1/transcriptions/{id}``."""
    from tingyin.jobs import get_job
    from tingyin.jobs.transcription import AudioInput, AudioSource, TranscriptionParams, submit_transcription
    from tingyin.speech.models import speech_models

    speech_models().resolve(query.options.decode.model)
    audio_input = AudioInput.parse(format=format)
    blob_key = await _store_upload(request)
    params = TranscriptionParams(
        source=AudioSource(blob=blob_key), audio=audio_input, recording=query.options
    )
    job_id = await in_thread(submit_transcription, params, app_pk=app.pk)
    return (await in_thread(get_job, job_id)).as_dict()


@router.get("/transcriptions/{job_id}")
async def get_transcription(job_id: str, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    from tingyin.jobs import get_job

    return (await in_thread(get_job, job_id, app_pk=app.pk)).as_dict()


@router.delete("/transcriptions/{job_id}")
async def cancel_transcription(job_id: str, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    from tingyin.jobs import cancel_job

    return (await in_thread(cancel_job, job_id, app_pk=app.pk)).as_dict()


@router.get("/jobs/{job_id}", tags=["jobs"])
async def get_any_job(job_id: str, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    from tingyin.jobs import get_job

    return (await in_thread(get_job, job_id, app_pk=app.pk)).as_dict()
