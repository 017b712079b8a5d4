"""Volcano Engine file transcription (AUC, seed 002): ``/api/v1/auc/submit`` and ``/api/v1/auc/query``.

Credentials: ``appid`` = the app's app_id, ``token`` = its app_token (in the body, or as the header
``Authorization: Bearer; <token>``), ``cluster`` any non-empty name.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tingyin.api.deps import in_thread
from tingyin.api.errors import Dialect, ErrorInfo, register_dialect
from tingyin.api.middleware import register_body_limit
from tingyin.audio.fetch import FetchError, check_url
from tingyin.errors import NotFound, QuotaExceeded, ServiceUnavailable, TingyinError, Unauthorized
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
FORMATS = {"raw", "wav", "ogg", "mp3", "mp4", "m4a", "aac", "flac", "amr", "opus", "pcm"}
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
    value = additions.get(name)
    if value is None:
        return default
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise VolcanoError(1001, f'additions.{name} must be "True" or "False"')


def _token(request: Request, body_token: Any) -> str:
    if isinstance(body_token, str) and body_token:
        return body_token
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer"):
        return header[6:].lstrip(";").strip()
    raise VolcanoError(1002, "token is required")


def _authenticate(token: str, appid: Any) -> AppInfo:
    if not isinstance(appid, str | int) or not str(appid):
        raise VolcanoError(1001, "appid is required")
    try:
        return authenticate_token(token, app_id=str(appid))
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


def _submit(request: Request, data: dict[str, Any]) -> JSONResponse:
    app_part = data.get("app") or {}
    audio_part = data.get("audio") or {}
    additions = data.get("additions") or {}
    callback = (data.get("request") or {}).get("callback")
    if not all(isinstance(p, dict) for p in (app_part, audio_part, additions)):
        raise VolcanoError(1001, "app, audio and additions must be objects")
    app = _authenticate(_token(request, app_part.get("token")), app_part.get("appid"))
    if not app_part.get("cluster"):
        raise VolcanoError(1001, "app.cluster is required")
    if not (data.get("user") or {}).get("uid"):
        raise VolcanoError(1001, "user.uid is required")
    try:
        consume(app, "volcano_auc")
    except QuotaExceeded as exc:
        raise VolcanoError(1003 if exc.kind == "qps" else 1004, exc.message) from exc
    url = audio_part.get("url")
    if not isinstance(url, str) or not url:
        raise VolcanoError(1001, "audio.url is required")
    try:
        check_url(url)
        if callback:
            check_url(str(callback))
    except FetchError as exc:
        raise VolcanoError(1001, exc.message) from exc
    fmt = str(audio_part.get("format") or url.rsplit("?", 1)[0].rsplit(".", 1)[-1]).lower()
    codec = str(audio_part.get("codec") or "raw").lower()
    if fmt not in FORMATS:
        fmt = ""
    raw_pcm = fmt in ("raw", "pcm") and codec == "raw"
    if int(audio_part.get("bits") or 16) != 16:
        raise VolcanoError(1001, "audio.bits must be 16")
    language = str(additions.get("language") or "zh-CN")
    if language not in LANGUAGES:
        raise VolcanoError(1001, f"additions.language must be one of {', '.join(LANGUAGES)}")
    params = TranscriptionParams.parse(
        source={"url": url},
        audio={
            "format": "pcm" if raw_pcm else None,
            "pcm_rate": audio_part.get("rate") or 16000,
            "pcm_channels": audio_part.get("channel") or 1,
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
    return _resp(1000, "Success", id=job_id)


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
        if with_speaker and u.get("speaker") is not None:
            item["additions"]["speaker"] = str(u["speaker"])
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


def _query(request: Request, data: dict[str, Any]) -> JSONResponse:
    app = _authenticate(_token(request, data.get("token")), data.get("appid"))
    task_id = data.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise VolcanoError(1001, "id is required")
    try:
        job = get_job(task_id)
    except NotFound:
        raise VolcanoError(1001, "no task with this id") from None
    if job.app_pk != app.pk:
        raise VolcanoError(1002, "this task belongs to another app")
    return JSONResponse(query_answer(job))


async def _handle(request: Request, action: Any) -> JSONResponse:
    try:
        data = await _json(request)
        return await in_thread(action, request, data)
    except VolcanoError as exc:
        return _resp(exc.code, exc.message)
    except ServiceUnavailable as exc:
        return _resp(1005, exc.message)
    except TingyinError as exc:
        return _resp(1001 if exc.http_status < 500 else 1099, exc.message)


@router.post("/submit")
async def submit(request: Request) -> JSONResponse:
    """Submit an audio URL for transcription; answers ``{"resp": {"code": 1000, "id": ...}}``."""
    return await _handle(request, _submit)


@router.post("/query")
async def query(request: Request) -> JSONResponse:
    """Poll a task: 2001 queued, 2000 processing, 1000 with text and utterances, or an error code."""
    return await _handle(request, _query)
