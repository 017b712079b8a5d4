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
from tingyin.errors import NotFound, QuotaExceeded, ServiceUnavailable, TingyinError, Unauthorized
from tingyin.inference import InferenceExecutor
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
    100: "Invalid parameter",
    110: "Access token invalid or no longer valid",
    111: "Access token expired",
    216100: "invalid param",
    216101: "not enough param",
    216102: "service not support",
    216103: "param too long",
    216630: "recognize error",
    336000: "Internal error",
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
        code = 336001 if info.status < 500 else 336000
    return _error(request, code, info.message)


register_dialect(Dialect("easydl", lambda path, _q: path.startswith(PREFIX), _dialect))
register_body_limit(lambda path: path.startswith(PREFIX), MAX_SOUND_BASE64 + 64 * 1024)


def _top_num(value: Any) -> int:
    """The seed types ``top_num`` as "number": 6, "6" and 6.0 all mean 6; 6.5, "six", true do not."""
    if isinstance(value, bool):
        raise EasyDLError(216100, "top_num must be a positive integer")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise EasyDLError(216100, "top_num must be a positive integer") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not 1 <= value <= MAX_TOP_NUM:
        raise EasyDLError(216100, f"top_num must be an integer from 1 to {MAX_TOP_NUM}")
    return value


async def _app_of(request: Request, token: str | None) -> AppInfo:
    # The seed: 100 "Invalid parameter" is a missing or malformed access_token parameter; 110 a token
    # that is not (or no longer) valid, which the official SDK answers by fetching a new one and retrying.
    if not token:
        raise EasyDLError(100, "the access_token parameter is missing")
    if len(token) > 512:
        raise EasyDLError(110)
    try:
        return await authenticate(request, authenticate_access_token, token)
    except TokenExpired as exc:
        raise EasyDLError(111) from exc
    except Unauthorized as exc:
        raise EasyDLError(110) from exc


def _service(app: AppInfo, suffix: str) -> platform.ServiceTarget:
    """What ``suffix`` serves if this app published it. Another app's service answers exactly as a
    suffix nobody uses: its existence is not this caller's business."""
    try:
        target = platform.service_version(suffix)
    except NotFound:
        target = None
    if target is None or target.app_pk != app.pk:
        raise EasyDLError(216102, f"no service at {suffix}")
    try:
        consume(app, f"easydl:{suffix}")
    except QuotaExceeded as exc:
        raise EasyDLError(18 if exc.kind == "qps" else 17) from exc
    return target


def _classify(target: platform.ServiceTarget, raw: bytes) -> dict[str, Any]:
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
    top_num = 6 if body.get("top_num") is None else _top_num(body["top_num"])  # null: the default
    try:
        data = base64.b64decode(sound, validate=True)
    except (binascii.Error, ValueError):
        raise EasyDLError(336001, "sound is not valid base64 (send it without a data: header)") from None
    try:
        decoded = audio.decode(data, max_seconds=600)
    except audio.AudioError as exc:
        raise EasyDLError(336001, exc.message) from exc
    try:
        results = platform.predict_version(
            target.version_id, decoded.mono(), top_num, target.unknown_threshold
        )
    except ServiceUnavailable:
        raise
    except TingyinError as exc:  # the model failed on this clip: the seed's "recognize error"
        raise EasyDLError(216630, exc.summary) from exc
    return {"results": results}


@router.post(PREFIX + "{suffix}")
async def classify(suffix: str, request: Request) -> JSONResponse:
    """A published sound classifier: the top ``top_num`` (1 to 1000, default 6) classes with scores,
    best first. The access token (query string) is checked before the body is read."""
    token = request.query_params.get("access_token")
    try:
        app = await _app_of(request, token)
        if not platform.SUFFIX.match(suffix):
            raise EasyDLError(216102, "no service at this address")
        target = await in_thread(_service, app, suffix)
        inference: InferenceExecutor = request.app.state.inference
        answer = await inference.run(_classify, target, await request.body())
        return JSONResponse({"log_id": _log_id(request), **answer})
    except EasyDLError as exc:
        return _error(request, exc.code, exc.detail)
    except QuotaExceeded as exc:
        return _error(request, 18 if exc.kind == "qps" else 17, exc.message)
    except ServiceUnavailable as exc:
        return _error(request, 2, client_message(request, exc))
    except TingyinError as exc:
        return _error(request, 216100 if exc.http_status < 500 else 336000, client_message(request, exc))
