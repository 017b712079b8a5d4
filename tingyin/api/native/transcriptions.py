"""Native speech API: synchronous recognition of short audio and transcription jobs for long audio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from tingyin.api.deps import AuthenticatedRoute, JobId, in_thread, native_app
from tingyin.api.params import number, string
from tingyin.errors import InvalidRequest
from tingyin.store.apps import AppInfo

router = APIRouter(prefix="/v1", tags=["speech"], route_class=AuthenticatedRoute)

SYNC_MAX_SECONDS = 300.0
UPLOAD_MAX_BYTES = 500 * 1024 * 1024


MAX_HOT_WORDS = 100
MAX_HOT_WORD_CHARS = 50


def _model(model: str | None) -> str | None:
    """A model the operator installed: a caller names one, never a directory or a hub repository."""
    from tingyin.config import get_settings
    from tingyin.models.registry import BUILTIN_MODELS

    if model is None or model == get_settings().asr_model or model in BUILTIN_MODELS:
        return model
    raise InvalidRequest(f"model must be one of {', '.join(sorted(BUILTIN_MODELS))}")


def _options(
    language: str, itn: bool, punctuation: bool, hot_words: str | None, model: str | None
) -> dict[str, Any]:
    from tingyin.speech.types import LANGUAGES

    if language not in LANGUAGES:
        raise InvalidRequest(f"language must be one of {', '.join(LANGUAGES)}")
    words = []
    for item in (hot_words or "").split(","):
        if not item.strip():
            continue
        text, _, weight = item.partition(":")
        text = string(text.strip(), "hot word", max_length=MAX_HOT_WORD_CHARS)
        value = number(weight, "hot word weight", low=-10, high=10) if weight else 5.0
        words.append({"text": text, "weight": value})
    if len(words) > MAX_HOT_WORDS:
        raise InvalidRequest(f"at most {MAX_HOT_WORDS} hot words")
    return {
        "language": language,
        "itn": itn,
        "punctuation": punctuation,
        "hot_words": words,
        "model": _model(model),
    }


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


def _recognize(blob_key: str, fmt: str | None, options: dict[str, Any]) -> dict[str, Any]:
    from tingyin import audio
    from tingyin.jobs.builtin import options_from_params
    from tingyin.speech import transcribe
    from tingyin.speech.types import transcript_to_dict
    from tingyin.store.blobs import get_blob

    decoded = audio.decode(get_blob(blob_key).path, format=fmt, max_seconds=SYNC_MAX_SECONDS)
    return transcript_to_dict(transcribe(decoded.mono(), options_from_params(options)))


@router.post("/recognize")
async def recognize(
    request: Request,
    language: str = Query("auto", description="auto, zh, en, yue or zh-en"),
    itn: bool = Query(True, description="numbers, dates, money as digits"),
    punctuation: bool = Query(True),
    hot_words: str | None = Query(None, description="comma-separated phrase:weight (weight -10..10)"),
    format: str | None = Query(None, description="container when it cannot be sniffed, e.g. pcm"),
    model: str | None = Query(None),
    app: AppInfo = Depends(native_app),
) -> dict[str, Any]:
    """Transcribe up to 5 minutes of audio (raw body or multipart ``file``) and answer at once."""
    options = _options(language, itn, punctuation, hot_words, model)
    blob_key = await _store_upload(request)
    return await in_thread(_recognize, blob_key, format, options)


@router.post("/transcriptions", status_code=202)
async def create_transcription(
    request: Request,
    language: str = Query("auto"),
    itn: bool = Query(True),
    punctuation: bool = Query(True),
    hot_words: str | None = Query(None),
    format: str | None = Query(None),
    model: str | None = Query(None),
    app: AppInfo = Depends(native_app),
) -> dict[str, Any]:
    """Queue a transcription job for audio of any length; poll ``GET /v1/transcriptions/{id}``."""
    from tingyin.jobs import get_job, submit_job

    options = _options(language, itn, punctuation, hot_words, model)
    blob_key = await _store_upload(request)
    job_id = await in_thread(
        submit_job, "transcribe", {"blob": blob_key, "format": format, "options": options}, app_pk=app.pk
    )
    return (await in_thread(get_job, job_id)).as_dict()


@router.get("/transcriptions/{job_id}")
async def get_transcription(job_id: JobId, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    from tingyin.jobs import get_job

    return (await in_thread(get_job, job_id, app_pk=app.pk)).as_dict()


@router.delete("/transcriptions/{job_id}")
async def cancel_transcription(job_id: JobId, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    from tingyin.jobs import cancel_job

    return (await in_thread(cancel_job, job_id, app_pk=app.pk)).as_dict()


@router.get("/jobs/{job_id}", tags=["jobs"])
async def get_any_job(job_id: JobId, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    from tingyin.jobs import get_job

    return (await in_thread(get_job, job_id, app_pk=app.pk)).as_dict()
