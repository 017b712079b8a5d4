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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tingyin import audio
from tingyin.api.deps import in_thread
from tingyin.api.errors import Dialect, ErrorInfo, client_message, register_dialect
from tingyin.api.guard import authenticate, guard_of
from tingyin.api.middleware import note_ids, register_body_limit
from tingyin.api.params import flag, integer, json_object, string
from tingyin.api.spool import BadBase64, receive_json_upload
from tingyin.audio.fetch import FetchError, fetch_to_file
from tingyin.errors import InvalidRequest, QuotaExceeded, ServiceUnavailable, TingyinError, Unauthorized
from tingyin.inference import InferenceExecutor
from tingyin.store.apps import AppInfo, authenticate_token
from tingyin.store.blobs import blob_store
from tingyin.store.quota import consume

router = APIRouter(tags=["sami"])

NAMESPACE = "MusicTagging"
MAX_AUDIO_BYTES = 100 * 1024 * 1024
MAX_SECONDS = 600.0
MAX_TOP_NUM = 1000
MAX_TASKS = 32
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


def _answer(
    request: Request, code: int, text: str, namespace: str = NAMESPACE, payload: str | None = None
) -> JSONResponse:
    task_id = str(uuid.uuid4())
    # The seed: task_id is "for tracing and troubleshooting": the operator finds it in the log.
    note_ids(request, task_id=task_id)
    body: dict[str, Any] = {
        "task_id": task_id,
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
    return _answer(request, code, info.message)


register_dialect(Dialect("sami", lambda path, _q: path == "/api/v1/invoke", _dialect))
MAX_BODY_BYTES = MAX_AUDIO_BYTES * 4 // 3 + 1024 * 1024  # the base64 of 100 MB and the other fields
register_body_limit(lambda path: path == "/api/v1/invoke", MAX_BODY_BYTES)


async def _authenticate(request: Request, appkey: Any, token: Any) -> AppInfo:
    if not appkey or not token:
        raise SamiError(UNAUTHORIZED, "appkey and token are required")
    if not isinstance(appkey, str) or not isinstance(token, str) or len(appkey) > 64 or len(token) > 512:
        raise SamiError(UNAUTHORIZED, "appkey and token must be strings")
    try:
        return await authenticate(request, authenticate_token, token, api_key=appkey, key=appkey)
    except Unauthorized as exc:
        raise SamiError(UNAUTHORIZED, exc.message) from exc


def _payload(fields: dict[str, Any]) -> dict[str, Any]:
    raw = fields.get("payload")
    if raw in (None, ""):
        raise SamiError(BAD_REQUEST, "payload is required")
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        raise SamiError(BAD_REQUEST, "payload must be a JSON string")
    try:
        payload = json.loads(raw)
    except ValueError:
        raise SamiError(BAD_REQUEST, "payload is not a JSON string") from None
    if not isinstance(payload, dict):
        raise SamiError(BAD_REQUEST, "payload must be a JSON object")
    return payload


def _task_types(payload: dict[str, Any]) -> list[str]:
    flow = payload.get("task_flow")
    if not isinstance(flow, dict) or not isinstance(flow.get("task"), list) or not flow["task"]:
        raise SamiError(BAD_REQUEST, "payload.task_flow.task must list the task types")
    if len(flow["task"]) > MAX_TASKS:
        raise SamiError(BAD_REQUEST, f"payload.task_flow.task lists at most {MAX_TASKS} tasks")
    if flow.get("type", "merge") != "merge":
        raise SamiError(BAD_REQUEST, 'payload.task_flow.type must be "merge"')
    types = []
    for task in flow["task"]:
        if not isinstance(task, dict) or not isinstance(task.get("task_type"), str):
            raise SamiError(BAD_REQUEST, "each task is {task_type}")
        types.append(task["task_type"])
    return types


def _bool(value: Any, default: bool, name: str) -> bool:
    try:
        return flag(value, f"extra.{name}", default)
    except InvalidRequest as exc:
        raise SamiError(BAD_REQUEST, exc.message) from None


@dataclass(frozen=True)
class _Call:
    """A tagging request's parameters, checked before its audio is stored."""

    task_types: list[str]
    enable_tag: bool
    enable_embed: bool
    top_num: int | None
    url: str | None
    pcm: tuple[int, int] | None  # (rate, channels) of headerless pcm


def _call_of(fields: dict[str, Any]) -> _Call:
    payload = _payload(fields)
    task_types = _task_types(payload)
    extra = json_object(payload.get("extra"), "extra")
    info = json_object(payload.get("audio_info"), "audio_info")
    top_num = extra.get("top_num")
    if top_num is not None:
        top_num = integer(top_num, "extra.top_num", low=1, high=MAX_TOP_NUM, digits_ok=False)
    fmt = info.get("format")
    # Hints for a container (its header says the same), required for headerless pcm; checked either way.
    rate = info.get("sample_rate")
    if rate not in (None, "", 0):  # 0 or "" as "not known" is no error for a container
        rate = integer(rate, "audio_info.sample_rate", low=1000, high=192000)
    channels = integer(info.get("channel") or 1, "audio_info.channel", low=1, high=8)
    pcm = None
    if fmt and string(fmt, "audio_info.format", max_length=16).lower() == "pcm":
        if not rate:
            raise SamiError(BAD_REQUEST, "pcm audio needs audio_info.sample_rate")
        pcm = (rate, channels)
    url = payload.get("url")
    return _Call(
        task_types=task_types,
        enable_tag=_bool(extra.get("enable_tag"), True, "enable_tag"),
        enable_embed=_bool(extra.get("enable_embed"), False, "enable_embed"),
        top_num=top_num,
        url=string(url, "payload.url", max_length=2048) if url else None,
        pcm=pcm,
    )


def _decode(path: Any, call: _Call) -> audio.DecodedAudio:
    if call.pcm is not None:
        rate, channels = call.pcm
        return audio.decode(
            path,
            format="pcm",
            pcm_rate=rate,
            pcm_channels=channels,
            max_bytes=MAX_AUDIO_BYTES,
            max_seconds=MAX_SECONDS,
        )
    return audio.decode(path, max_bytes=MAX_AUDIO_BYTES, max_seconds=MAX_SECONDS)


def _invoke(call: _Call, sent: Path | None) -> dict[str, Any]:
    """The inner payload of a checked tagging call; ``sent``: the decoded ``data`` field in a scratch
    file (None when the field was empty)."""
    from tingyin.music.service import analyse_music

    if sent is not None:
        decoded = _decode(sent, call)
    elif call.url:
        with blob_store().scratch.file() as target:
            fetch_to_file(call.url, target)
            decoded = _decode(target, call)
    else:
        raise SamiError(BAD_REQUEST, "send the audio in data, or its address in payload.url")
    return analyse_music(
        decoded.mono(),
        task_types=call.task_types,
        enable_tag=call.enable_tag,
        enable_embed=call.enable_embed,
        top_num=call.top_num,
    ).to_payload()


def _consume(app: AppInfo) -> None:
    try:
        consume(app, "sami")
    except QuotaExceeded as exc:
        raise SamiError(QUOTA, exc.message) from exc


def _namespace(value: Any) -> None:
    if value != NAMESPACE:
        raise SamiError(BAD_REQUEST, f'namespace must be "{NAMESPACE}"')


async def _checked_call(request: Request, spool: Path) -> tuple[_Call, bool]:
    """The checked request; its audio decoded into ``spool`` (node-local scratch, never the blob store)
    as the body arrives; True when it held audio. With the credentials in the query string (the seed's
    Go example) they are checked before the body is read; in the JSON body (its Python example) the
    body counts against the guard's budget for unauthenticated bytes until they are, and its audio is
    dropped at once when they fail."""
    query = request.query_params
    app = None
    if query.get("appkey") and query.get("token"):
        app = await _authenticate(request, query["appkey"], query["token"])
    scratch = blob_store().scratch
    guard = guard_of(request)
    declared = request.headers.get("content-length", "")
    held = 0 if app is not None else (int(declared) if declared.isdigit() else MAX_BODY_BYTES)
    guard.hold(held)
    try:
        try:
            upload = await receive_json_upload(
                request, "data", lambda: scratch.writer(spool), max_decoded=MAX_AUDIO_BYTES
            )
        except BadBase64 as exc:
            raise SamiError(BAD_REQUEST, exc.message) from exc
        try:
            fields = upload.fields
            _namespace(fields.get("namespace") or query.get("namespace"))
            if app is None:
                app = await _authenticate(
                    request,
                    fields.get("appkey") or query.get("appkey"),
                    fields.get("token") or query.get("token"),
                )
            await in_thread(_consume, app)
            call = _call_of(fields)
            sent = await in_thread(upload.commit)
        except BaseException:
            await in_thread(upload.abort)
            raise
    finally:
        guard.release(held)
    return call, sent is not None


@router.post("/api/v1/invoke")
async def invoke(request: Request) -> JSONResponse:
    """Tag music: genre, mood, vocal and language probabilities, optional embedding (see docs/music.md)."""
    from tingyin.music.service import NotMusic

    try:
        with blob_store().scratch.file() as spool:  # nothing of the request is kept once it is answered
            call, sent = await _checked_call(request, spool)
            inference: InferenceExecutor = request.app.state.inference
            inner = await inference.run(_invoke, call, spool if sent else None)
        return _answer(request, OK, "OK", payload=json.dumps(inner, ensure_ascii=False))
    except SamiError as exc:
        return _answer(request, exc.code, exc.text)
    except NotMusic as exc:
        return _answer(request, NOT_MUSIC, exc.message)
    except (audio.AudioTooLong, audio.AudioTooLarge) as exc:
        return _answer(request, TOO_LARGE, exc.message)
    except FetchError as exc:
        return _answer(request, BAD_REQUEST, f"cannot fetch payload.url: {exc.message}")
    except QuotaExceeded as exc:
        return _answer(request, QUOTA, exc.message)
    except ServiceUnavailable as exc:
        return _answer(request, UNAVAILABLE, client_message(request, exc))
    except InvalidRequest as exc:
        return _answer(request, BAD_REQUEST, client_message(request, exc))
    except TingyinError as exc:
        return _answer(request, INTERNAL, client_message(request, exc))
