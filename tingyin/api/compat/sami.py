"""Volcano SAMI MusicTagging (seed 004): ``POST /api/v1/invoke``.

Request: JSON ``{appkey, token, namespace: "MusicTagging", payload: "<json>", data: "<base64 audio>"}``,
or the same credentials in the query string (``?version=&token=&appkey=&namespace=``). ``appkey`` is
the app's api_key, ``token`` its app_token. The answer wraps the inner payload as a JSON string.

Status codes (SAMI's common protocol; the seed does not list errors, so these follow its scheme):
20000000 OK; 40000000 bad request; 40000001 not music; 40100000 bad credentials;
41300000 audio too large or too long; 42900000 over the app's QPS or daily quota;
50000000 internal error; 50300000 temporarily unavailable.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tingyin import audio
from tingyin.api.deps import in_thread
from tingyin.api.errors import Dialect, ErrorInfo, register_dialect
from tingyin.api.middleware import register_body_limit
from tingyin.api.spool import BadBase64, SpooledBody, split_base64_field, spool_body
from tingyin.audio.fetch import FetchError, fetch_to_file
from tingyin.config import get_settings
from tingyin.errors import InvalidRequest, QuotaExceeded, ServiceUnavailable, TingyinError, Unauthorized
from tingyin.store.apps import AppInfo, authenticate_token
from tingyin.store.quota import consume

router = APIRouter(tags=["sami"])

NAMESPACE = "MusicTagging"
MAX_AUDIO_BYTES = 100 * 1024 * 1024
MAX_SECONDS = 600.0
OK, BAD_REQUEST, NOT_MUSIC, UNAUTHORIZED = 20000000, 40000000, 40000001, 40100000
TOO_LARGE, QUOTA, INTERNAL, UNAVAILABLE = 41300000, 42900000, 50000000, 50300000
HTTP_STATUS = {
    OK: 200,
    BAD_REQUEST: 400,
    NOT_MUSIC: 400,
    UNAUTHORIZED: 401,
    TOO_LARGE: 413,
    QUOTA: 429,
    INTERNAL: 500,
    UNAVAILABLE: 503,
}


class SamiError(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


def _answer(code: int, text: str, namespace: str = NAMESPACE, payload: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "task_id": str(uuid.uuid4()),
        "namespace": namespace,
        "data": "",
        "status_code": code,
        "status_text": text,
    }
    if payload is not None:
        body["payload"] = payload
    return JSONResponse(body, status_code=HTTP_STATUS.get(code, 400))


def _dialect(request: Request, info: ErrorInfo) -> Response:
    code = {401: UNAUTHORIZED, 413: TOO_LARGE, 429: QUOTA, 503: UNAVAILABLE}.get(info.status)
    if code is None:
        code = BAD_REQUEST if info.status < 500 else INTERNAL
    return _answer(code, info.message)


register_dialect(Dialect("sami", lambda path, _q: path == "/api/v1/invoke", _dialect))
register_body_limit(lambda path: path == "/api/v1/invoke", MAX_AUDIO_BYTES * 4 // 3 + 1024 * 1024)


def _authenticate(fields: dict[str, Any], query: dict[str, str]) -> AppInfo:
    appkey = fields.get("appkey") or query.get("appkey")
    token = fields.get("token") or query.get("token")
    if not appkey or not token:
        raise SamiError(UNAUTHORIZED, "appkey and token are required")
    try:
        return authenticate_token(str(token), api_key=str(appkey))
    except Unauthorized as exc:
        raise SamiError(UNAUTHORIZED, exc.message) from exc


def _payload(fields: dict[str, Any]) -> dict[str, Any]:
    raw = fields.get("payload")
    if raw in (None, ""):
        raise SamiError(BAD_REQUEST, "payload is required")
    if isinstance(raw, dict):
        return raw
    try:
        payload = json.loads(str(raw))
    except ValueError:
        raise SamiError(BAD_REQUEST, "payload is not a JSON string") from None
    if not isinstance(payload, dict):
        raise SamiError(BAD_REQUEST, "payload must be a JSON object")
    return payload


def _task_types(payload: dict[str, Any]) -> list[str]:
    flow = payload.get("task_flow")
    if not isinstance(flow, dict) or not isinstance(flow.get("task"), list) or not flow["task"]:
        raise SamiError(BAD_REQUEST, "payload.task_flow.task must list the task types")
    if flow.get("type", "merge") != "merge":
        raise SamiError(BAD_REQUEST, 'payload.task_flow.type must be "merge"')
    types = []
    for task in flow["task"]:
        if not isinstance(task, dict) or not isinstance(task.get("task_type"), str):
            raise SamiError(BAD_REQUEST, "each task is {task_type}")
        types.append(task["task_type"])
    return types


def _bool(value: Any, default: bool, name: str) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1"):
        return True
    if str(value).lower() in ("false", "0"):
        return False
    raise SamiError(BAD_REQUEST, f"extra.{name} must be true or false")


def _decode(path: Any, info: dict[str, Any]) -> audio.DecodedAudio:
    fmt = str(info.get("format") or "").lower() or None
    if fmt == "pcm":
        rate, channels = info.get("sample_rate"), info.get("channel") or 1
        if not rate:
            raise SamiError(BAD_REQUEST, "pcm audio needs audio_info.sample_rate")
        try:
            pcm_rate, pcm_channels = int(rate), int(channels)
        except (TypeError, ValueError):
            raise SamiError(BAD_REQUEST, "audio_info.sample_rate and channel must be integers") from None
        return audio.decode(
            path,
            format="pcm",
            pcm_rate=pcm_rate,
            pcm_channels=pcm_channels,
            max_bytes=MAX_AUDIO_BYTES,
            max_seconds=MAX_SECONDS,
        )
    return audio.decode(path, max_bytes=MAX_AUDIO_BYTES, max_seconds=MAX_SECONDS)


def _invoke(body: SpooledBody, query: dict[str, str]) -> JSONResponse:
    from tingyin.music.service import analyse_music

    try:
        try:
            fields, blob = split_base64_field(body, "data", max_decoded=MAX_AUDIO_BYTES)
        except BadBase64 as exc:
            raise SamiError(BAD_REQUEST, exc.message) from exc
    finally:
        body.discard()
    namespace = str(fields.get("namespace") or query.get("namespace") or "")
    if namespace != NAMESPACE:
        raise SamiError(BAD_REQUEST, f'namespace must be "{NAMESPACE}"')
    app = _authenticate(fields, query)
    try:
        consume(app, "sami")
    except QuotaExceeded as exc:
        raise SamiError(QUOTA, exc.message) from exc
    payload = _payload(fields)
    task_types = _task_types(payload)
    extra = payload.get("extra") or {}
    info = payload.get("audio_info") or {}
    if not isinstance(extra, dict) or not isinstance(info, dict):
        raise SamiError(BAD_REQUEST, "extra and audio_info must be objects")
    top_num = extra.get("top_num")
    if top_num is not None and (not isinstance(top_num, int) or top_num < 1):
        raise SamiError(BAD_REQUEST, "extra.top_num must be a positive integer")
    enable_tag = _bool(extra.get("enable_tag"), True, "enable_tag")
    enable_embed = _bool(extra.get("enable_embed"), False, "enable_embed")
    if blob is not None:
        decoded = _decode(blob.path, info)
    elif payload.get("url"):
        target = get_settings().blob_dir / "tmp" / f"sami-{uuid.uuid4().hex}"
        try:
            fetch_to_file(str(payload["url"]), target)
            decoded = _decode(target, info)
        finally:
            target.unlink(missing_ok=True)
    else:
        raise SamiError(BAD_REQUEST, "send the audio in data, or its address in payload.url")
    inner = analyse_music(
        decoded.mono(),
        task_types=task_types,
        enable_tag=enable_tag,
        enable_embed=enable_embed,
        top_num=top_num,
    ).to_payload()
    return _answer(OK, "OK", payload=json.dumps(inner, ensure_ascii=False))


@router.post("/api/v1/invoke")
async def invoke(request: Request) -> JSONResponse:
    """Tag music: genre, mood, vocal and language probabilities, optional embedding (see docs/music.md)."""
    from tingyin.music.service import NotMusic

    query = dict(request.query_params)
    try:
        body = await spool_body(request)
        return await in_thread(_invoke, body, query)
    except SamiError as exc:
        return _answer(exc.code, exc.text)
    except NotMusic as exc:
        return _answer(NOT_MUSIC, exc.message)
    except (audio.AudioTooLong, audio.AudioTooLarge) as exc:
        return _answer(TOO_LARGE, exc.message)
    except FetchError as exc:
        return _answer(BAD_REQUEST, f"cannot fetch payload.url: {exc.message}")
    except ServiceUnavailable as exc:
        return _answer(UNAVAILABLE, exc.message)
    except InvalidRequest as exc:
        return _answer(BAD_REQUEST, exc.message)
    except TingyinError as exc:
        return _answer(INTERNAL, exc.message)
