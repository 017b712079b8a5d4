"""Native speech API: synchronous recognition of short audio and transcription jobs for long audio.

Both run the same recording pipeline with the same options: language, ITN, punctuation, weighted hot words,
the model (one the operator enabled), and speakers/roles/channels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from tingyin.api.deps import AuthenticatedRoute, JobId, in_thread, native_app
from tingyin.api.middleware import register_body_limit
from tingyin.api.native.jobs import TranscriptionJobOut
from tingyin.api.openapi import BINARY, audio_body
from tingyin.api.spool import receive_upload, stored_object_response, upload_chunks
from tingyin.errors import InvalidRequest, NotFound
from tingyin.inference import InferenceExecutor
from tingyin.speech.options import Accuracy, DecodeOptions, HotWord, Language
from tingyin.speech.pipeline import MAX_SPEAKERS, RecordingOptions, RecordingResult
from tingyin.store.apps import AppInfo

router = APIRouter(prefix="/v1", tags=["speech"], route_class=AuthenticatedRoute)

SYNC_MAX_SECONDS = 300.0
UPLOAD_MAX_BYTES = 500 * 1024 * 1024
NO_AUDIO = "no audio in the request body"
# A multipart form wraps the file in a few hundred bytes of boundaries and headers.
register_body_limit(
    lambda path: path in ("/v1/recognize", "/v1/transcriptions"), UPLOAD_MAX_BYTES + 64 * 1024
)


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


def _recognize(path: Path, fmt: str | None, options: RecordingOptions) -> RecordingResult:
    from tingyin import audio
    from tingyin.speech.models import speech_models
    from tingyin.speech.pipeline import transcribe_recording

    decoded = audio.decode(path, format=fmt, max_seconds=SYNC_MAX_SECONDS, mono=not options.split_channels)
    with speech_models().use(options.decode.model) as recognizer:
        return transcribe_recording(decoded, options.model_copy(update={"require_speech": False}), recognizer)


@router.post("/recognize", response_model=RecordingResult, openapi_extra=audio_body())
async def recognize(
    request: Request,
    query: RecordingQuery = Depends(),
    format: str | None = Query(None, description="container when it cannot be sniffed, e.g. pcm"),
    app: AppInfo = Depends(native_app),
) -> RecordingResult:
    """Transcribe up to 5 minutes of audio (raw body or multipart ``file``) and answer at once."""
    from tingyin.speech.models import speech_models
    from tingyin.store.blobs import blob_store

    speech_models().resolve(query.options.decode.model)
    inference: InferenceExecutor = request.app.state.inference
    scratch = blob_store().scratch
    with scratch.file() as path:  # the audio is gone once the answer is sent
        await receive_upload(
            upload_chunks(request), scratch.writer(path), max_bytes=UPLOAD_MAX_BYTES, empty_message=NO_AUDIO
        )
        return await inference.run(_recognize, path, format, query.options)


@router.post(
    "/transcriptions",
    status_code=202,
    response_model=TranscriptionJobOut,
    openapi_extra=audio_body(required=False, description="the audio (or give its address as url)"),
)
async def create_transcription(
    request: Request,
    query: RecordingQuery = Depends(),
    format: str | None = Query(None),
    url: str | None = Query(None, description="fetch the audio from this address instead of the body"),
    filename: str | None = Query(None, max_length=255, description="shown in job lists"),
    app: AppInfo = Depends(native_app),
) -> object:
    """Queue a transcription job for audio of any length (the body, or ``url``); poll
    ``GET /v1/transcriptions/{id}``. The result has ``utterances`` (with ``speaker``/``role`` when
    diarized), ``speakers`` and ``roles``."""
    from tingyin.jobs import get_job, input_key, new_job_id
    from tingyin.jobs.transcription import AudioInput, AudioSource, TranscriptionParams, submit_transcription
    from tingyin.speech.models import speech_models
    from tingyin.store.blobs import StoredBlob, blob_store

    speech_models().resolve(query.options.decode.model)
    audio_input = AudioInput.parse(format=format)
    job_id = new_job_id()
    inputs: list[StoredBlob] = []
    if url:
        from tingyin.audio.fetch import check_url

        if request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers:
            raise InvalidRequest("give the audio as the body or as url, not both")
        await in_thread(check_url, url)  # a bad or private address is a 400 now, not a failed job later
        source = AudioSource.parse(url=url)
    else:
        writer = blob_store().writer(input_key(job_id))
        blob = await receive_upload(
            upload_chunks(request), writer, max_bytes=UPLOAD_MAX_BYTES, empty_message=NO_AUDIO
        )
        inputs.append(blob)
        source = AudioSource(blob=blob.key)
    params = TranscriptionParams(
        source=source,
        audio=audio_input,
        recording=query.options,
        vendor_fields={"filename": (filename or url or "")[:255]},
    )
    # The console plays the upload beside its transcript until the job is purged (or deleted).
    job_id = await in_thread(
        submit_transcription, params, app_pk=app.pk, job_id=job_id, inputs=inputs, keep_audio=True
    )
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
    responses={
        200: {
            "description": "the transcript file (json: the job's result)",
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/x-subrip": {"schema": {"type": "string"}},
                "text/vtt": {"schema": {"type": "string"}},
                "application/json": {"schema": {"$ref": "#/components/schemas/RecordingResult"}},
            },
        }
    },
)
async def download_transcript(
    job_id: JobId,
    format: Literal["txt", "srt", "vtt", "rttm", "json"] = Query("txt"),
    app: AppInfo = Depends(native_app),
) -> Response:
    """The finished transcript as a file: plain text, SubRip, WebVTT, RTTM (who spoke when, one line per
    utterance) or the job's JSON result."""
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
    elif format == "rttm":
        body, media = subtitles.to_rttm(result, f"transcript-{job_id[:8]}"), "text/plain"
    else:
        body, media = subtitles.to_text(result), "text/plain"
    return Response(
        body.encode("utf-8"),
        media_type=f"{media}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


AUDIO_MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "ogg": "audio/ogg"}


def _audio_of(job_id: str, app_pk: int) -> tuple[str, str]:
    from tingyin import audio
    from tingyin.jobs import get_job
    from tingyin.jobs.transcription import job_params
    from tingyin.store.blobs import blob_store

    source = job_params(get_job(job_id, app_pk=app_pk).params).source
    if source.blob is None:
        raise NotFound("this job's audio was given by URL; play it from there")
    if not blob_store().exists(source.blob):
        raise NotFound("this job's audio is no longer kept (it is deleted when the job ends)")
    with blob_store().open(source.blob) as stream:
        try:
            container = audio.probe(stream).format
        except audio.AudioError:
            container = ""
    fallback = "audio/mp4" if "mp4" in container else "application/octet-stream"
    return source.blob, AUDIO_MEDIA_TYPES.get(container, fallback)


@router.get(
    "/transcriptions/{job_id}/audio",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "the audio as uploaded",
            "content": {"audio/*": BINARY, "application/octet-stream": BINARY},
        }
    },
)
async def transcription_audio(job_id: JobId, app: AppInfo = Depends(native_app)) -> Response:
    """The uploaded audio of a job (for playback beside its transcript), while the job keeps it."""
    key, media = await in_thread(_audio_of, job_id, app.pk)
    return await stored_object_response(key, media_type=media, filename=f"audio-{job_id[:8]}")


def _transcription_job(job_id: str, app_pk: int) -> dict[str, Any]:
    from tingyin.jobs import get_job
    from tingyin.jobs.transcription import KIND

    job = get_job(job_id, app_pk=app_pk)
    if job.kind != KIND:
        raise NotFound(f"no transcription {job_id}")
    return job.as_dict()


@router.get("/transcriptions/{job_id}", response_model=TranscriptionJobOut)
async def get_transcription(job_id: JobId, app: AppInfo = Depends(native_app)) -> object:
    """A transcription job: its state and, once it succeeded, its result."""
    return await in_thread(_transcription_job, job_id, app.pk)


@router.delete("/transcriptions/{job_id}", response_model=TranscriptionJobOut)
async def delete_transcription(job_id: JobId, app: AppInfo = Depends(native_app)) -> object:
    """Cancel a queued or running transcription; delete a finished one at once, with its transcript and
    audio (else they are kept until the job's retention runs out). Answers the job as it was; a finished
    one is then gone (404)."""
    from tingyin.jobs import delete_finished_job

    await in_thread(_transcription_job, job_id, app.pk)
    return (await in_thread(delete_finished_job, job_id, app_pk=app.pk)).as_dict()
