"""Native speech API: synchronous recognition of short audio and transcription jobs for long audio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from tingyin.api.deps import in_thread, native_app
from tingyin.api.middleware import register_body_limit
from tingyin.api.spool import receive_upload, upload_chunks
from tingyin.errors import InvalidRequest
from tingyin.store.apps import AppInfo
from tingyin.store.blobs import blob_store

router = APIRouter(prefix="/v1", tags=["speech"])

SYNC_MAX_SECONDS = 300.0
UPLOAD_MAX_BYTES = 500 * 1024 * 1024
NO_AUDIO = "no audio in the request body"
# A multipart form wraps the file in a few hundred bytes of boundaries and headers.
register_body_limit(
    lambda path: path in ("/v1/recognize", "/v1/transcriptions"), UPLOAD_MAX_BYTES + 64 * 1024
)


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
        try:
            value = float(weight) if weight else 5.0
        except ValueError:
            raise InvalidRequest(f"hot word weight must be a number: {item!r}") from None
        if not -10 <= value <= 10:
            raise InvalidRequest("hot word weights run from -10 to 10")
        words.append({"text": text.strip(), "weight": value})
    return {"language": language, "itn": itn, "punctuation": punctuation, "hot_words": words, "model": model}


def _recognize(path: Path, fmt: str | None, options: dict[str, Any]) -> dict[str, Any]:
    from tingyin import audio
    from tingyin.jobs.builtin import options_from_params
    from tingyin.speech import transcribe
    from tingyin.speech.types import transcript_to_dict

    decoded = audio.decode(path, format=fmt, max_seconds=SYNC_MAX_SECONDS)
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
    scratch = blob_store().scratch
    with scratch.file() as path:  # the audio is gone once the answer is sent
        await receive_upload(
            upload_chunks(request), scratch.writer(path), max_bytes=UPLOAD_MAX_BYTES, empty_message=NO_AUDIO
        )
        return await in_thread(_recognize, path, format, options)


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
    from tingyin.jobs import get_job, input_key, new_job_id, submit_job

    options = _options(language, itn, punctuation, hot_words, model)
    job_id = new_job_id()
    writer = blob_store().writer(input_key(job_id))
    blob = await receive_upload(
        upload_chunks(request), writer, max_bytes=UPLOAD_MAX_BYTES, empty_message=NO_AUDIO
    )
    await in_thread(
        submit_job,
        "transcribe",
        {"blob": blob.key, "format": format, "options": options},
        app_pk=app.pk,
        job_id=job_id,
        inputs=[blob],
    )
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
