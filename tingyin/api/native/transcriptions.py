"""Native speech API: synchronous recognition of short audio and transcription jobs for long audio.

Both run the same recording pipeline with the same options: language, ITN, punctuation, weighted hot words,
the model (one the operator enabled), and speakers/roles/channels.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from tingyin.api.deps import in_thread, native_app
from tingyin.errors import InvalidRequest, NotFound
from tingyin.inference import InferenceExecutor
from tingyin.speech.options import Accuracy, DecodeOptions, HotWord, Language
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
        accuracy: Accuracy | None = Query(
            None,
            description="Mandarin: 'accurate' adds a neural language model (slower); default: the server's",
        ),
    ) -> None:
        from tingyin.speech.neural_lm import require_installed

        if accuracy == "accurate":
            require_installed()  # a 400 now rather than a failed job later
        decode = DecodeOptions.parse(
            language=language,
            itn=itn,
            punctuation=punctuation,
            hot_words=HotWord.parse_list(hot_words),
            model=model or None,
            word_timestamps=word_timestamps,
            accuracy=accuracy,
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
    url: str | None = Query(None, description="fetch the audio from this address instead of the body"),
    filename: str | None = Query(None, max_length=255, description="shown in job lists"),
    app: AppInfo = Depends(native_app),
) -> dict[str, Any]:
    """Queue a transcription job for audio of any length (the body, or ``url``); poll
    ``GET /v1/transcriptions/{id}``. The result has ``utterances`` (with ``speaker``/``role`` when
    diarized), ``speakers`` and ``roles``."""
    from tingyin.jobs import get_job
    from tingyin.jobs.transcription import AudioInput, AudioSource, TranscriptionParams, submit_transcription
    from tingyin.speech.models import speech_models

    speech_models().resolve(query.options.decode.model)
    audio_input = AudioInput.parse(format=format)
    if url:
        from tingyin.audio.fetch import check_url

        await in_thread(check_url, url)  # a bad or private address is a 400 now, not a failed job later
        source = AudioSource.parse(url=url)
    else:
        source = AudioSource(blob=await _store_upload(request))
    params = TranscriptionParams(
        source=source,
        audio=audio_input,
        recording=query.options,
        vendor_fields={"filename": (filename or url or "")[:255]},
    )
    job_id = await in_thread(submit_transcription, params, app_pk=app.pk)
    return (await in_thread(get_job, job_id)).as_dict()


class TranscriptionSummary(BaseModel):
    id: str
    status: str
    progress: float
    source: str = Field(description="native, volcano or qiniu: who submitted it")
    filename: str
    language: str | None
    duration_ms: int | None
    speakers: int | None
    error: str | None
    created_at: str
    finished_at: str | None


class TranscriptionList(BaseModel):
    transcriptions: list[TranscriptionSummary]


@router.get("/transcriptions", response_model=TranscriptionList)
async def list_transcriptions(
    limit: int = Query(50, ge=1, le=200), app: AppInfo = Depends(native_app)
) -> TranscriptionList:
    """The app's recent transcription jobs (native, Volcano AUC and Qiniu), newest first."""
    from tingyin.jobs.service import list_jobs
    from tingyin.jobs.transcription import KIND, job_params

    jobs = await in_thread(list_jobs, app.pk, [KIND], limit=limit)
    items = []
    for job in jobs:
        result = job.result or {}
        params = job_params(job.params)
        items.append(
            TranscriptionSummary(
                id=job.id,
                status=job.status,
                progress=round(job.progress, 4),
                source=params.vendor,
                filename=str(params.vendor_fields.get("filename") or params.source.url or ""),
                language=result.get("language"),
                duration_ms=result.get("duration_ms"),
                speakers=len(result["speakers"]) if isinstance(result.get("speakers"), list) else None,
                error=job.error_message,
                created_at=job.created_at.isoformat(),
                finished_at=job.finished_at.isoformat() if job.finished_at else None,
            )
        )
    return TranscriptionList(transcriptions=items)


def _finished_result(job_id: str, app_pk: int) -> dict[str, Any]:
    from tingyin.jobs import get_job

    job = get_job(job_id, app_pk=app_pk)
    if job.status != "succeeded" or not isinstance(job.result, dict):
        raise InvalidRequest(f"transcription {job_id} is {job.status}; no transcript yet")
    return job.result


@router.get(
    "/transcriptions/{job_id}/transcript",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}, "application/x-subrip": {}, "text/vtt": {}}}},
)
async def download_transcript(
    job_id: str,
    format: Literal["txt", "srt", "vtt", "json"] = Query("txt"),
    app: AppInfo = Depends(native_app),
) -> Response:
    """The finished transcript as a file: plain text, SubRip, WebVTT or the job's JSON result."""
    import json

    from tingyin.speech import subtitles

    result = await in_thread(_finished_result, job_id, app.pk)
    name = f"transcript-{job_id[:8]}.{format}"
    if format == "json":
        body, media = json.dumps(result, ensure_ascii=False, indent=1), "application/json"
    elif format == "srt":
        body, media = subtitles.to_srt(result), "application/x-subrip"
    elif format == "vtt":
        body, media = subtitles.to_vtt(result), "text/vtt"
    else:
        body, media = subtitles.to_text(result), "text/plain"
    return Response(
        body.encode("utf-8"),
        media_type=f"{media}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


AUDIO_MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "ogg": "audio/ogg"}


def _audio_of(job_id: str, app_pk: int) -> tuple[Any, str]:
    from tingyin import audio
    from tingyin.jobs import get_job
    from tingyin.jobs.transcription import job_params
    from tingyin.store.blobs import get_blob

    source = job_params(get_job(job_id, app_pk=app_pk).params).source
    if source.blob is None:
        raise NotFound("this job's audio was given by URL; play it from there")
    path = get_blob(source.blob).path
    try:
        container = audio.probe(path).format
    except audio.AudioError:
        container = ""
    fallback = "audio/mp4" if "mp4" in container else "application/octet-stream"
    media = AUDIO_MEDIA_TYPES.get(container, fallback)
    return path, media


@router.get("/transcriptions/{job_id}/audio", response_class=FileResponse)
async def transcription_audio(job_id: str, app: AppInfo = Depends(native_app)) -> FileResponse:
    """The uploaded audio of a job (for playback beside its transcript)."""
    path, media = await in_thread(_audio_of, job_id, app.pk)
    return FileResponse(path, media_type=media, content_disposition_type="inline")


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
