"""Baidu wire format: OAuth 2.0 token endpoint and short-speech recognition (/pro_api, /server_api).

A thin translator: parse Baidu's request shapes into ``ShortSpeech``, call the core, and map the
core's typed errors to Baidu's ``err_no`` table (seed 001). Point the host of existing Baidu client
code (or the ``baidu-aip`` SDK's token and ASR URLs) at tingyin and it keeps working.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tingyin import audio
from tingyin.api.deps import in_thread
from tingyin.api.errors import Dialect, ErrorInfo, client_message, register_dialect
from tingyin.api.guard import authenticate
from tingyin.api.middleware import note_ids, register_body_limit
from tingyin.api.params import integer, string
from tingyin.config import get_settings
from tingyin.errors import (
    EngineError,
    InvalidRequest,
    QuotaExceeded,
    ServiceUnavailable,
    TingyinError,
    Unauthorized,
)
from tingyin.inference import InferenceExecutor
from tingyin.speech.errors import NoSpeech, RecognitionTimeout
from tingyin.speech.options import DecodeOptions, Language
from tingyin.speech.pipeline import RecordingOptions
from tingyin.speech.recognize import ShortSpeech, recognize_short
from tingyin.store.apps import AppInfo
from tingyin.store.quota import consume
from tingyin.store.tokens import InvalidGrant, authenticate_access_token, issue_token, refresh_token, revoke
from tingyin.store.vocabulary import get_vocabulary

router = APIRouter(tags=["baidu"])

ASR_PATHS = ("/pro_api", "/server_api")
# Both with and without a trailing slash: clients written against openapi.baidu.com use either, and a
# redirect would turn a POST with a form body into a GET without it in some HTTP libraries.
OAUTH_PATHS = ("/oauth/2.0/token", "/oauth/2.0/token/", "/oauth/2.0/revoke", "/oauth/2.0/revoke/")
OAUTH_MAX_BODY_BYTES = 64 * 1024
MAX_BODY_BYTES = 10 * 1024 * 1024  # 3310: JSON or raw body over 10 MB
# 3308 for base64 speech over this: 60 s of 16-bit 16 kHz PCM is 2.56 MB in base64, so the limit
# is set just above what a 60 s recording needs (the seed's "2 MB" would refuse 47-60 s of pcm).
MAX_SPEECH_BASE64 = 3 * 1024 * 1024

MESSAGES = {
    0: "success.",
    2000: "data empty.",
    3300: "speech quality error.",
    3301: "speech quality error.",
    3302: "authentication failed.",
    3303: "server is busy.",
    3304: "the user's request QPS exceeds the limit.",
    3305: "the user's daily request count exceeds the limit.",
    3307: "recognition error.",
    3308: "speech too long.",
    3309: "wav data error.",
    3310: "speech file too large.",
    3311: "rate param error.",
    3312: "format param error.",
    3313: "speech parse timeout.",
    3314: "speech too short.",
    3315: "speech processing timeout.",
    3316: "convert to pcm failed.",
}
MESSAGES[3300] = "param error."


class BaiduError(Exception):
    def __init__(self, err_no: int, detail: str = "") -> None:
        super().__init__(detail or MESSAGES[err_no])
        self.err_no = err_no
        self.detail = detail


@dataclass(frozen=True)
class DevPid:
    """What a dev_pid means: the language decoded, punctuation, the endpoints that take it, the sample
    rates it accepts and whether the app's custom vocabulary (自定义词库) applies."""

    language: Language
    punctuation: bool
    paths: tuple[str, ...]
    rates: tuple[int, ...] = (16000,)
    vocabulary: bool = False


# /server_api follows Baidu's 短语音识别标准版 document (the SDK's default endpoint): pcm/wav/amr/m4a at
# 16000 or 8000 Hz (8000 for the Mandarin models only), 1537 by default. /pro_api follows the 极速版 seed
# (001): 80001 only, 16000 Hz. 1637 (Cantonese) and 1837 (Sichuanese) are decoded as speech.md describes:
# whisper-base has neither, so Cantonese gets the Mandarin model with a Cantonese style prompt and
# Sichuanese is decoded as Mandarin.
MANDARIN_RATES = (16000, 8000)
DEV_PIDS: dict[int, DevPid] = {
    80001: DevPid("zh", True, ("/pro_api", "/server_api"), vocabulary=True),
    1537: DevPid("zh", True, ("/server_api",), MANDARIN_RATES, vocabulary=True),
    1536: DevPid("zh", False, ("/server_api",), MANDARIN_RATES, vocabulary=True),
    1737: DevPid("en", False, ("/server_api",)),
    1637: DevPid("yue", True, ("/server_api",)),
    1837: DevPid("zh", True, ("/server_api",)),
    1936: DevPid("zh", True, ("/server_api",), MANDARIN_RATES),
}
LAN_TO_DEV_PID = {"zh": None, "ct": 1637, "en": 1737}
DEFAULT_DEV_PID = {"/pro_api": 80001, "/server_api": 1537}
FORMATS = {"/pro_api": ("pcm", "wav", "amr", "m4a"), "/server_api": ("pcm", "wav", "amr", "m4a")}
RATES = {"/pro_api": (16000,), "/server_api": MANDARIN_RATES}


def _sn() -> str:
    return str(uuid.uuid4()).upper()


def _answer(request: Request, err_no: int, detail: str = "", result: list[str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"err_no": err_no, "err_msg": MESSAGES[err_no], "sn": _sn()}
    if detail and err_no != 0:
        body["err_msg"] = f"{MESSAGES[err_no]} {detail}"
    if result is not None:
        body["corpus_no"] = str(secrets.randbelow(9 * 10**18) + 10**18)
        body["result"] = result
    # The seed tells users to quote sn when they report a problem: the operator finds it in the log.
    note_ids(request, sn=body["sn"], corpus_no=body.get("corpus_no"))
    return JSONResponse(body)


def _error_code(exc: BaseException) -> int:
    """The Baidu err_no of a core error."""
    table: list[tuple[type[BaseException], int]] = [
        (BaiduError, 0),
        (audio.AudioTooLong, 3308),
        (audio.AudioTooLarge, 3310),
        (audio.AudioTooShort, 3314),
        (audio.EmptyAudio, 2000),
        (audio.UnsupportedFormat, 3312),
        (audio.WrongEncoding, 3316),
        (audio.SampleRateMismatch, 3316),
        (audio.CorruptAudio, 3309),
        (audio.AudioError, 3309),
        (NoSpeech, 3301),
        (Unauthorized, 3302),
        (ServiceUnavailable, 3303),
        (InvalidRequest, 3300),
        (EngineError, 3307),
    ]
    if isinstance(exc, BaiduError):
        return exc.err_no
    if isinstance(exc, RecognitionTimeout):
        return 3313 if exc.stage == "decode" else 3315
    if isinstance(exc, QuotaExceeded):
        return 3304 if exc.kind == "qps" else 3305
    for kind, code in table:
        if isinstance(exc, kind):
            return code
    return 3307


def _asr_dialect(request: Request, info: ErrorInfo) -> Response:
    if info.status == 413:
        return _answer(request, 3310, info.message)
    if info.error is not None:
        return _answer(request, _error_code(info.error), info.message)
    if info.status == 401:
        return _answer(request, 3302, info.message)
    if 400 <= info.status < 500:
        # A wrong method (405), an unknown path (404) or a bad parameter: the caller's error, "param error".
        return _answer(request, 3300, info.message)
    return _answer(request, 3303 if info.status == 503 else 3307, info.message)


def _oauth_error(error: str, description: str, status: int) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


def _oauth_dialect(request: Request, info: ErrorInfo) -> Response:
    if info.status == 401:
        return _oauth_error("invalid_client", info.message, 401)
    if info.status in (429, 503):
        return _oauth_error("temporarily_unavailable", info.message, info.status)
    if info.status >= 500:
        return _oauth_error("server_error", info.message, 500)
    return _oauth_error("invalid_request", info.message, 400)


register_dialect(Dialect("baidu-asr", lambda path, _q: path in ASR_PATHS, _asr_dialect))
register_dialect(Dialect("baidu-oauth", lambda path, _q: path in OAUTH_PATHS, _oauth_dialect))
register_body_limit(lambda path: path in ASR_PATHS, MAX_BODY_BYTES)
register_body_limit(lambda path: path in OAUTH_PATHS, OAUTH_MAX_BODY_BYTES)


# ---------------------------------------------------------------- OAuth


async def _oauth_params(request: Request) -> dict[str, str]:
    """Parameters from the query string and, for a POST, a form body (a form wins)."""
    params: dict[str, str] = dict(request.query_params)
    if request.method == "POST" and request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        params.update({k: v for k, v in (await request.form()).items() if isinstance(v, str)})
    return params


@router.get("/oauth/2.0/token", operation_id="baidu_oauth_token_get")
@router.post("/oauth/2.0/token", operation_id="baidu_oauth_token_post")
@router.api_route("/oauth/2.0/token/", methods=["GET", "POST"], include_in_schema=False)
async def oauth_token(request: Request) -> JSONResponse:
    """``grant_type=client_credentials`` with client_id (api_key) and client_secret (secret_key), or
    ``grant_type=refresh_token`` with refresh_token, client_id and client_secret; parameters in the
    query string or a form body. A refresh token is good for one refresh."""
    params = await _oauth_params(request)
    grant = params.get("grant_type", "")
    client_id, client_secret = params.get("client_id", ""), params.get("client_secret", "")
    if grant not in ("client_credentials", "refresh_token"):
        return _oauth_error(
            "unsupported_grant_type", "grant_type must be client_credentials or refresh_token", 400
        )
    if not client_id or not client_secret:
        return _oauth_error("invalid_request", "client_id and client_secret are required", 400)
    try:
        if grant == "client_credentials":
            issued = await authenticate(request, issue_token, client_id, client_secret, key=client_id)
        elif not params.get("refresh_token"):
            return _oauth_error("invalid_request", "refresh_token is required", 400)
        else:
            issued = await authenticate(
                request, refresh_token, params["refresh_token"], client_id, client_secret, key=client_id
            )
    except Unauthorized:
        # The same answer for an unknown client id and a wrong secret: neither says which it was.
        return _oauth_error("invalid_client", "unknown client id", 401)
    except InvalidGrant as exc:
        return _oauth_error("invalid_grant", exc.message, 400)
    return JSONResponse(issued.as_dict(), headers={"Cache-Control": "no-store"})


@router.post("/oauth/2.0/revoke")
@router.post("/oauth/2.0/revoke/", include_in_schema=False)
async def oauth_revoke(request: Request) -> JSONResponse:
    """Revoke an access or refresh token (RFC 7009): ``token``, ``client_id`` and ``client_secret``
    in a form body or the query string. An unknown token is not an error."""
    params = await _oauth_params(request)
    client_id, client_secret = params.get("client_id", ""), params.get("client_secret", "")
    if not params.get("token") or not client_id or not client_secret:
        return _oauth_error("invalid_request", "token, client_id and client_secret are required", 400)
    try:
        await authenticate(request, revoke, params["token"], client_id, client_secret, key=client_id)
    except Unauthorized:
        return _oauth_error("invalid_client", "unknown client id", 401)
    return JSONResponse({}, headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------- short speech


def _speech_from_json(data: dict[str, Any]) -> None:
    """Decode the base64 ``speech`` into raw bytes under "audio"."""
    if "speech" not in data:
        return
    speech = data["speech"]
    if not isinstance(speech, str):
        raise BaiduError(3300, "speech must be a base64 string")
    if len(speech) > MAX_SPEECH_BASE64:
        raise BaiduError(3308, f"base64 speech larger than {MAX_SPEECH_BASE64} bytes")
    try:
        data["audio"] = base64.b64decode(speech, validate=True)
    except (binascii.Error, ValueError):
        raise BaiduError(3300, "speech is not valid base64") from None


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise BaiduError(3300, "the body is neither JSON nor raw audio") from None
    if not isinstance(data, dict):
        raise BaiduError(3300, "the JSON body must be an object")
    return data


async def _authenticated_params(request: Request) -> tuple[AppInfo, dict[str, Any]]:
    """The app and Baidu's two upload styles as one parameter dict (speech as bytes under "audio").

    A token in the query string (the raw style's only place for it) is checked before the body is
    read; a JSON body that carries its token inside (at most 10 MB, held in memory) is parsed first."""
    content_type = request.headers.get("content-type", "").lower()
    query = dict(request.query_params)
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        raise BaiduError(3300, "send JSON or raw audio, not a browser form")
    raw_style = content_type.startswith("audio/")
    token: Any = query.get("token") or query.get("access_token")
    if raw_style and not token:
        raise BaiduError(3302, "token is required in the query string with a raw upload")
    app = await _authenticate(request, token) if token else None
    body = await request.body()
    if raw_style:
        # Raw upload: "Content-Type: audio/pcm;rate=16000", the rest in the URL.
        kind, _, rest = content_type.partition(";")
        params: dict[str, Any] = dict(query)
        params["format"] = kind.split("/", 1)[1].strip()
        for item in rest.split(";"):
            key, _, value = item.strip().partition("=")
            if key == "rate":
                params["rate"] = value
        params.setdefault("rate", None)
        params["channel"] = params.get("channel", 1)
        params["audio"] = body
        params["len"] = len(body)
    else:
        params = _json_body(body)
    if app is None:
        app = await _authenticate(request, params.get("token"))
    _speech_from_json(params)
    return app, params


async def _authenticate(request: Request, token: Any) -> AppInfo:
    if not token:
        raise BaiduError(3302, "token is required")
    if not isinstance(token, str) or len(token) > 512:
        raise BaiduError(3302, "token must be the access_token string")
    try:
        return await authenticate(request, authenticate_access_token, token)
    except Unauthorized as exc:
        raise BaiduError(3302, exc.message) from exc


def _request_of(path: str, params: dict[str, Any], app: AppInfo) -> ShortSpeech:
    for name in ("format", "rate", "channel", "cuid"):
        if params.get(name) in (None, ""):
            raise BaiduError(3300, f"{name} is required")
    fmt = string(params["format"], "format", max_length=16).lower()
    if fmt not in FORMATS[path]:
        raise BaiduError(3312, f"format must be one of {', '.join(FORMATS[path])}")
    rate = integer(params["rate"], "rate", low=1, high=10**6)
    if rate not in RATES[path]:
        raise BaiduError(3311, f"rate must be {' or '.join(map(str, RATES[path]))}")
    if integer(params["channel"], "channel", low=1, high=64) != 1:
        raise BaiduError(3300, "channel must be 1")
    string(params["cuid"], "cuid", max_length=60, numbers_ok=True)
    dev_pid = params.get("dev_pid")
    if dev_pid in (None, ""):
        lan = string(params.get("lan") or "zh", "lan", max_length=8).lower()
        if lan not in LAN_TO_DEV_PID:
            raise BaiduError(3300, "lan must be zh, ct or en")
        dev_pid = LAN_TO_DEV_PID[lan] or DEFAULT_DEV_PID[path]
        if path == "/pro_api" and dev_pid != 80001:
            raise BaiduError(3300, "/pro_api recognises Mandarin only (dev_pid 80001)")
    dev_pid = integer(dev_pid, "dev_pid", low=0, high=10**6)
    model = DEV_PIDS.get(dev_pid)
    if model is None or path not in model.paths:
        raise BaiduError(3300, f"dev_pid {dev_pid} is not available on {path}")
    if rate not in model.rates:
        raise BaiduError(3311, f"dev_pid {dev_pid} takes {' or '.join(map(str, model.rates))} Hz audio")
    if "audio" not in params:
        if params.get("url"):
            raise BaiduError(3300, "the (url, callback) style is not offered; send speech and len")
        raise BaiduError(3300, "speech and len are required")
    data: bytes = params["audio"]
    if not data:
        raise BaiduError(2000)
    if params.get("len") in (None, ""):
        raise BaiduError(3300, "len is required with speech")
    length = integer(params["len"], "len", low=0, high=MAX_BODY_BYTES)
    if length <= 4:
        raise BaiduError(3314, "len must be more than 4")
    if length != len(data):
        raise BaiduError(3300, f"len is {length} but the speech holds {len(data)} bytes")
    settings = get_settings()
    options = DecodeOptions.parse(
        language=model.language,
        itn=True,
        punctuation=model.punctuation,
        vocabulary=tuple(get_vocabulary(app.pk)) if model.vocabulary else (),
    )
    # The audio must be at the declared rate and mono, as channel says (a wav or amr header that says
    # otherwise is 3316: "确认wav和amr的采样率16000，单声道"); it is resampled to 16 kHz when decoded.
    return ShortSpeech(
        data=data,
        format=fmt,
        rate=rate,
        recording=RecordingOptions(decode=options),
        max_seconds=60.0,
        required_rate=rate,
        required_channels=1,
        decode_timeout_s=settings.asr_decode_timeout_s,
        recognize_timeout_s=settings.asr_recognize_timeout_s,
    )


def _admit(path: str, params: dict[str, Any], app: AppInfo) -> ShortSpeech:
    """Count the request against the app's quota and check its parameters."""
    consume(app, "baidu_asr")
    return _request_of(path, params, app)


async def _handle(path: str, request: Request) -> JSONResponse:
    inference: InferenceExecutor = request.app.state.inference
    try:
        app, params = await _authenticated_params(request)
        speech = await in_thread(_admit, path, params, app)
        result = await inference.run(recognize_short, speech)
        return _answer(request, 0, result=[result.text])
    except BaiduError as exc:
        return _answer(request, exc.err_no, exc.detail)
    except TingyinError as exc:
        return _answer(request, _error_code(exc), client_message(request, exc))


@router.post("/pro_api")
async def pro_api(request: Request) -> JSONResponse:
    """极速版 (seed 001): Mandarin with punctuation (dev_pid 80001); pcm, wav, amr, m4a at 16 kHz, ≤ 60 s."""
    return await _handle("/pro_api", request)


@router.post("/server_api")
async def server_api(request: Request) -> JSONResponse:
    """标准版 (the SDK's default): dev_pid 1537 (Mandarin, default), 1536 (Mandarin without punctuation), 1737
    (English), 1637 (Cantonese), 1837 (Sichuanese), 1936 (far-field), 80001; pcm, wav, amr or m4a at 16 kHz,
    or 8 kHz for the Mandarin models, ≤ 60 s."""
    return await _handle("/server_api", request)
