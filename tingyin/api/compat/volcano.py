"""Volcano Engine file transcription (AUC, seed 002): ``/api/v1/auc/submit`` and ``/api/v1/auc/query``.

Credentials: ``appid`` = the app's app_id, ``token`` = its app_token (in the body, or as the header
``Authorization: Bearer; <token>``), ``cluster`` any non-empty name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tingyin.api.deps import in_thread
from tingyin.api.errors import Dialect, ErrorInfo, client_message, register_dialect
from tingyin.api.guard import authenticate
from tingyin.api.middleware import note_ids, register_body_limit
from tingyin.api.params import flag, integer, json_object, string
from tingyin.audio.decode import PCM_BITS
from tingyin.audio.fetch import FetchError, check_url
from tingyin.errors import (
    InvalidRequest,
    NotFound,
    QuotaExceeded,
    ServiceUnavailable,
    TingyinError,
    Unauthorized,
)
from tingyin.jobs.service import JobView, get_job
from tingyin.jobs.transcription import TranscriptionParams, job_params, submit_transcription
from tingyin.store.apps import AppInfo, authenticate_token
from tingyin.store.quota import consume

router = APIRouter(prefix="/api/v1/auc", tags=["volcano"])

LANGUAGES = {
    "zh-CN": "zh",
    "zh": "zh",
    "en-US": "en",
    "en": "en",
    "yue": "yue",
    "zh-yue": "yue",
    "auto": "auto",
}
MAX_URL_CHARS = 2048
TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FORMATS = {"raw", "wav", "ogg", "mp3", "mp4", "m4a", "aac", "flac", "amr", "opus", "pcm"}
CODECS = {"raw", "pcm", "opus"}
# Volcano code of a failed job, by the core's error code
JOB_ERRORS = {
    "audio_too_long": 1010,
    "audio_too_large": 1011,
    "fetch_too_large": 1011,
    "audio_corrupt": 1012,
    "audio_error": 1012,
    "audio_unsupported_format": 1012,
    "audio_wrong_encoding": 1012,
    "audio_wrong_sample_rate": 1012,
    "no_speech": 1013,
    "audio_too_short": 1013,
    "audio_empty": 1014,
    "fetch_empty": 1014,
    "fetch_failed": 1015,
    "fetch_refused": 1015,
    "recognition_timeout": 1021,
    "engine_error": 1022,
}


class VolcanoError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _resp(code: int, message: str, **fields: Any) -> JSONResponse:
    return JSONResponse({"resp": {"code": code, "message": message, **fields}})


def _dialect(request: Request, info: ErrorInfo) -> Response:
    code = {401: 1002, 400: 1001, 404: 1001, 413: 1011, 429: 1003, 503: 1005}.get(info.status, 1099)
    return _resp(code, info.message)


register_dialect(Dialect("volcano", lambda path, _q: path.startswith("/api/v1/auc"), _dialect))
register_body_limit(lambda path: path.startswith("/api/v1/auc"), 1024 * 1024)


def _flag(additions: dict[str, Any], name: str, default: bool) -> bool:
    try:
        return flag(additions.get(name), f"additions.{name}", default)
    except InvalidRequest:
        raise VolcanoError(1001, f'additions.{name} must be "True" or "False"') from None


def _given(section: dict[str, Any], name: str, default: Any) -> Any:
    """A member's value, or ``default`` when it is absent, null or "" (an object or 0 is a value)."""
    value = section.get(name)
    return default if value is None or value == "" else value


def _header_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer"):
        return header[6:].lstrip(";").strip() or None
    return None


async def _authenticate(request: Request, token: Any, appid: Any) -> AppInfo:
    if not token:
        raise VolcanoError(1002, "token is required")
    if not isinstance(token, str) or len(token) > 512:
        raise VolcanoError(1002, "token must be a string")
    if appid in (None, ""):
        raise VolcanoError(1001, "appid is required")
    appid = string(appid, "appid", max_length=32, numbers_ok=True)
    try:
        return await authenticate(request, authenticate_token, token, key=appid, app_id=appid)
    except Unauthorized as exc:
        raise VolcanoError(1002, exc.message) from exc


async def _json(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"null")
    except (ValueError, UnicodeDecodeError):
        raise VolcanoError(1001, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise VolcanoError(1001, "the JSON body must be an object")
    return data


def _submit(app: AppInfo, data: dict[str, Any]) -> dict[str, Any]:
    app_part = json_object(data.get("app"), "app")
    audio_part = json_object(data.get("audio"), "audio")
    additions = json_object(data.get("additions"), "additions")
    user = json_object(data.get("user"), "user")
    callback = json_object(data.get("request"), "request").get("callback")
    if not app_part.get("cluster"):
        raise VolcanoError(1001, "app.cluster is required")
    string(app_part["cluster"], "app.cluster", max_length=64)
    if user.get("uid") not in (None, ""):  # optional: it only tells an app's users apart
        string(user["uid"], "user.uid", max_length=128, numbers_ok=True)
    try:
        consume(app, "volcano_auc")
    except QuotaExceeded as exc:
        raise VolcanoError(1003 if exc.kind == "qps" else 1004, exc.message) from exc
    url = audio_part.get("url")
    if not url:
        raise VolcanoError(1001, "audio.url is required")
    url = string(url, "audio.url", max_length=MAX_URL_CHARS)
    if callback:
        callback = string(callback, "request.callback", max_length=MAX_URL_CHARS)
    try:
        check_url(url)
        if callback:
            check_url(callback)
    except FetchError as exc:
        raise VolcanoError(1001, exc.message) from exc
    extension = url.rsplit("?", 1)[0].rsplit(".", 1)[-1].lower()
    fmt = string(_given(audio_part, "format", extension), "audio.format", max_length=MAX_URL_CHARS).lower()
    if fmt not in FORMATS:
        fmt = ""  # not a name we know: the decoder finds the container from the data
    codec = string(_given(audio_part, "codec", "raw"), "audio.codec", max_length=16).lower()
    if codec not in CODECS:
        raise VolcanoError(1001, "audio.codec must be raw or opus")
    raw = fmt in ("raw", "pcm")
    if raw and codec == "opus":
        # Opus packets need their container's framing to be decoded: OGG (or WebM, MP4) carries it.
        raise VolcanoError(1001, 'raw opus packets are not supported: send Opus in OGG (format "ogg")')
    rate = integer(_given(audio_part, "rate", 16000), "audio.rate", low=8000, high=192000)
    bits = integer(_given(audio_part, "bits", 16), "audio.bits", low=1, high=64)
    if bits not in PCM_BITS:
        raise VolcanoError(1001, f"audio.bits must be one of {', '.join(map(str, PCM_BITS))}")
    channels = integer(_given(audio_part, "channel", 1), "audio.channel", low=1, high=8)
    language = string(_given(additions, "language", "zh-CN"), "additions.language", max_length=16)
    if language not in LANGUAGES:
        raise VolcanoError(1001, f"additions.language must be one of {', '.join(LANGUAGES)}")
    params = TranscriptionParams.parse(
        source={"url": url},
        # rate, bits and channel describe raw PCM; a container (wav, mp3, ogg...) says them itself.
        audio={
            "format": "pcm" if raw else None,
            "pcm_rate": rate,
            "pcm_channels": channels,
            "pcm_bits": bits,
        },
        recording={
            "decode": {
                "language": LANGUAGES[language],
                "itn": _flag(additions, "use_itn", True),
                "punctuation": _flag(additions, "use_punc", True),
            },
            "diarize": _flag(additions, "with_speaker_info", False),
        },
        vendor="volcano",
        callback=callback or None,
    )
    job_id = submit_transcription(params, app_pk=app.pk)
    return {"resp": {"code": 1000, "message": "Success", "id": job_id}}


def query_answer(job: JobView) -> dict[str, Any]:
    """The query answer for ``job`` (also the callback body)."""
    if job.status == "queued":
        return {"resp": {"id": job.id, "code": 2001, "message": "queued"}}
    if job.status == "running":
        return {"resp": {"id": job.id, "code": 2000, "message": "processing"}}
    if job.status != "succeeded":
        code = JOB_ERRORS.get(job.error_code or "", 1099)
        return {"resp": {"id": job.id, "code": code, "message": job.error_message or "failed"}}
    result = job.result or {}
    with_speaker = job_params(job.params).recording.diarize
    utterances = []
    for u in result.get("utterances", []):
        item: dict[str, Any] = {
            "text": u["text"],
            "start_time": u["start_ms"],
            "end_time": u["end_ms"],
            "words": [
                {"text": w["text"], "start_time": w["start_ms"], "end_time": w["end_ms"]} for w in u["words"]
            ],
            "additions": {},
        }
        if with_speaker:
            # The pipeline gives every utterance a speaker when speakers are asked for; "1" covers a
            # result stored before it did, so that u["additions"]["speaker"] never fails a client.
            item["additions"]["speaker"] = str(u["speaker"] if u.get("speaker") is not None else 1)
        utterances.append(item)
    return {
        "resp": {
            "id": job.id,
            "code": 1000,
            "message": "Success",
            "text": result.get("text", ""),
            "utterances": utterances,
        }
    }


def _query(app: AppInfo, data: dict[str, Any]) -> dict[str, Any]:
    task_id = data.get("id")
    if not task_id:
        raise VolcanoError(1001, "id is required")
    if not isinstance(task_id, str) or not TASK_ID.match(task_id):
        raise VolcanoError(1001, "no task with this id")
    try:
        # Another app's task answers exactly as an unknown one.
        job = get_job(task_id, app_pk=app.pk)
    except NotFound:
        raise VolcanoError(1001, "no task with this id") from None
    return query_answer(job)


def _credentials_of_submit(data: dict[str, Any]) -> tuple[Any, Any]:
    part = data.get("app")
    if not isinstance(part, dict):
        raise VolcanoError(1001, "app must be an object with appid, token and cluster")
    return part.get("token"), part.get("appid")


def _credentials_of_query(data: dict[str, Any]) -> tuple[Any, Any]:
    return data.get("token"), data.get("appid")


async def _handle(
    request: Request,
    credentials: Callable[[dict[str, Any]], tuple[Any, Any]],
    action: Callable[[AppInfo, dict[str, Any]], dict[str, Any]],
) -> JSONResponse:
    try:
        header_token = _header_token(request)
        if header_token is not None:
            # A token in the header is checked before the body (at most 1 MB) is read.
            if len(header_token) > 512:
                raise VolcanoError(1002, "token must be a string")
            try:
                await authenticate(request, authenticate_token, header_token)
            except Unauthorized as exc:
                raise VolcanoError(1002, exc.message) from exc
        data = await _json(request)
        token, appid = credentials(data)
        app = await _authenticate(request, token or header_token, appid)
        answer = await in_thread(action, app, data)
        note_ids(request, task_id=answer["resp"].get("id"))
        return JSONResponse(answer)
    except VolcanoError as exc:
        return _resp(exc.code, exc.message)
    except QuotaExceeded as exc:
        return _resp(1003 if exc.kind == "qps" else 1004, exc.message)
    except ServiceUnavailable as exc:
        return _resp(1005, client_message(request, exc))
    except TingyinError as exc:
        return _resp(1001 if exc.http_status < 500 else 1099, client_message(request, exc))


@router.post("/submit")
async def submit(request: Request) -> JSONResponse:
    """Submit an audio URL for transcription; answers ``{"resp": {"code": 1000, "id": ...}}``."""
    return await _handle(request, _credentials_of_submit, _submit)


@router.post("/query")
async def query(request: Request) -> JSONResponse:
    """Poll a task: 2001 queued, 2000 processing, 1000 with text and utterances, or an error code."""
    return await _handle(request, _credentials_of_query, _query)
