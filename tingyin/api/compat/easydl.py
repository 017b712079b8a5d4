"""Baidu EasyDL published sound classifier (seed 000):
``POST /rpc/2.0/ai_custom/v1/sound_cls/{suffix}?access_token=...`` with ``{"sound": base64, "top_num": N}``
→ ``{"log_id", "results": [{"name", "score"}]}``; errors ``{"error_code", "error_msg"}``.
The access token comes from the Baidu OAuth endpoint (``/oauth/2.0/token``).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tingyin import audio
from tingyin.api.deps import in_thread
from tingyin.api.errors import Dialect, ErrorInfo, client_message, register_dialect
from tingyin.api.guard import authenticate
from tingyin.api.middleware import note_ids, register_body_limit
from tingyin.api.params import integer
from tingyin.errors import (
    InvalidRequest,
    NotFound,
    QuotaExceeded,
    ServiceUnavailable,
    TingyinError,
    Unauthorized,
)
from tingyin.sound import platform
from tingyin.store.apps import AppInfo
from tingyin.store.quota import consume
from tingyin.store.tokens import TokenExpired, authenticate_access_token

router = APIRouter(tags=["easydl"])

PREFIX = "/rpc/2.0/ai_custom/v1/sound_cls/"
MAX_SOUND_BASE64 = 4 * 1024 * 1024  # the seed: base64 of the sound at most 4 MB
MAX_TOP_NUM = 1000
MESSAGES = {
    2: "Service temporarily unavailable",
    6: "No permission to access data",
    17: "Open api daily request limit reached",
    18: "Open api qps request limit reached",
    110: "Access token invalid or no longer valid",
    111: "Access token expired",
    216100: "invalid param",
    216101: "not enough param",
    216102: "service not support",
    216103: "param too long",
    282000: "internal error",
    336001: "Invalid Argument",
}


class EasyDLError(Exception):
    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(detail or MESSAGES[code])
        self.code, self.detail = code, detail


def _log_id(request: Request) -> int:
    # The seed: "log_id: unique, for locating problems": the operator finds it next to the request id.
    log_id = secrets.randbelow(10**16)
    note_ids(request, log_id=log_id)
    return log_id


def _error(request: Request, code: int, detail: str = "") -> JSONResponse:
    message = MESSAGES[code] + (f": {detail}" if detail else "")
    return JSONResponse({"error_code": code, "error_msg": message, "log_id": _log_id(request)})


def _dialect(request: Request, info: ErrorInfo) -> Response:
    code = {401: 110, 404: 216102, 413: 216103, 429: 18, 503: 2}.get(info.status)
    if code is None:
        code = 336001 if info.status < 500 else 282000
    return _error(request, code, info.message)


register_dialect(Dialect("easydl", lambda path, _q: path.startswith(PREFIX), _dialect))
register_body_limit(lambda path: path.startswith(PREFIX), MAX_SOUND_BASE64 + 64 * 1024)


async def _app_of(request: Request, token: str) -> AppInfo:
    if len(token) > 512:
        raise EasyDLError(110)
    try:
        return await authenticate(request, authenticate_access_token, token)
    except TokenExpired as exc:
        raise EasyDLError(111) from exc
    except Unauthorized as exc:
        raise EasyDLError(110) from exc


def _service(app: AppInfo, suffix: str) -> int:
    """The version behind ``suffix`` if this app published it. Another app's service answers exactly
    as a suffix nobody uses: its existence is not this caller's business."""
    try:
        owner, version_id = platform.service_version(suffix)
    except NotFound:
        owner, version_id = None, 0
    if owner != app.pk:
        raise EasyDLError(216102, f"no service at {suffix}")
    try:
        consume(app, f"easydl:{suffix}")
    except QuotaExceeded as exc:
        raise EasyDLError(18 if exc.kind == "qps" else 17) from exc
    return version_id


def _classify(version_id: int, raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise EasyDLError(336001, "the body must be JSON") from None
    if not isinstance(body, dict):
        raise EasyDLError(336001, "the body must be a JSON object")
    sound = body.get("sound")
    if sound in (None, ""):
        raise EasyDLError(216101, "sound is required")
    if not isinstance(sound, str):
        raise EasyDLError(216100, "sound must be a base64 string")
    if len(sound) > MAX_SOUND_BASE64:
        raise EasyDLError(216103, "sound is larger than 4 MB in base64")
    try:
        top_num = integer(body.get("top_num", 6), "top_num", low=1, high=MAX_TOP_NUM, digits_ok=False)
    except InvalidRequest as exc:
        raise EasyDLError(216100, exc.message) from exc
    try:
        data = base64.b64decode(sound, validate=True)
    except (binascii.Error, ValueError):
        raise EasyDLError(336001, "sound is not valid base64 (send it without a data: header)") from None
    try:
        decoded = audio.decode(data, max_seconds=600)
    except audio.AudioError as exc:
        raise EasyDLError(336001, exc.message) from exc
    return {"results": platform.predict_version(version_id, decoded.mono(), top_num)}


@router.post(PREFIX + "{suffix}")
async def classify(suffix: str, request: Request) -> JSONResponse:
    """A published sound classifier: the top ``top_num`` (1 to 1000, default 6) classes with scores,
    best first. The access token (query string) is checked before the body is read."""
    token = request.query_params.get("access_token", "")
    try:
        app = await _app_of(request, token)
        if not platform.SUFFIX.match(suffix):
            raise EasyDLError(216102, "no service at this address")
        version_id = await in_thread(_service, app, suffix)
        answer = await in_thread(_classify, version_id, await request.body())
        return JSONResponse({"log_id": _log_id(request), **answer})
    except EasyDLError as exc:
        return _error(request, exc.code, exc.detail)
    except QuotaExceeded as exc:
        return _error(request, 18 if exc.kind == "qps" else 17, exc.message)
    except ServiceUnavailable as exc:
        return _error(request, 2, client_message(request, exc))
    except TingyinError as exc:
        return _error(request, 216100 if exc.http_status < 500 else 282000, client_message(request, exc))
