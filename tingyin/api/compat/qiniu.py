"""Qiniu recording-file recognition (seed 003): ``POST /?cmd=async`` and ``POST /?cmd=pull``.

Requests are signed as the official ``qiniu`` SDK's ``QiniuMacAuth`` signs them:
``Authorization: Qiniu <AccessKey>:<urlsafe_b64(hmac_sha1(SecretKey, signing string))>``, the signing
string being the method and path with query, the Host, the Content-Type, the X-Qiniu-* headers
(sorted, one a line), a blank line, then the body (only when a Content-Type other than
application/octet-stream is sent).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tingyin import audio
from tingyin.api.deps import in_thread
from tingyin.api.errors import Dialect, ErrorInfo, client_message, register_dialect
from tingyin.api.guard import authenticate, guard_of, record_failure
from tingyin.api.middleware import note_ids, register_body_limit
from tingyin.api.params import integer, number, string
from tingyin.api.spool import BadBase64, JsonUpload, receive_json_upload
from tingyin.audio.decode import KNOWN_FORMATS
from tingyin.config import get_settings
from tingyin.errors import (
    InvalidRequest,
    NotFound,
    QuotaExceeded,
    ServiceUnavailable,
    TingyinError,
    Unauthorized,
)
from tingyin.inference import InferenceExecutor
from tingyin.jobs.service import get_job, input_key, mark_fetched, new_job_id
from tingyin.jobs.transcription import AudioInput, TranscriptionParams, job_params, submit_transcription
from tingyin.speech.errors import NoSpeech, RecognitionTimeout
from tingyin.speech.pipeline import RecordingOptions
from tingyin.speech.recognize import ShortSpeech, recognize_short
from tingyin.store.apps import AppInfo, secret_for_access_key
from tingyin.store.blobs import BlobWriter, blob_store
from tingyin.store.quota import consume

router = APIRouter(tags=["qiniu"])

MAX_AUDIO_BYTES = 100 * 1024 * 1024
MAX_BODY_BYTES = MAX_AUDIO_BYTES * 4 // 3 + 1024 * 1024
DATE_WINDOW = timedelta(minutes=15)
MODEL_TYPES = {"0": "zh", "en": "en", "cantonese": "yue", "cn_en_16k": "zh-en"}
MAX_HOT_WORDS = 100
MAX_HOT_WORD_BYTES = 40
MAX_VOICE_ID_CHARS = 128
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PCM_RATE = 16000
SYNC_MAX_SECONDS = 60.0  # cmd=sync answers within one HTTP request; longer recordings go through cmd=async

# ret codes of a failed job, by the core's error code
JOB_ERRORS = {
    "audio_corrupt": 119,
    "audio_error": 119,
    "audio_unsupported_format": 120,
    "audio_wrong_encoding": 1004,
    "audio_wrong_sample_rate": 1004,
    "audio_empty": 107,
    "audio_too_long": 100,
    "audio_too_large": 100,
    "audio_too_short": 105,
    "no_speech": 105,
    "recognition_timeout": 106,
    "engine_error": 103,
}


class QiniuError(Exception):
    def __init__(self, ret: int, msg: str, status: int = 200) -> None:
        super().__init__(msg)
        self.ret, self.msg, self.status = ret, msg, status


def _answer(ret: int, msg: str, status: int = 200, **fields: Any) -> JSONResponse:
    return JSONResponse({"ret": ret, "msg": msg, **fields}, status_code=status)


def _is_qiniu(path: str, query: str) -> bool:
    return path == "/" and "cmd=" in query


def _dialect(request: Request, info: ErrorInfo) -> Response:
    if info.status == 401:
        return _answer(401, f"bad token: {info.message}", 401, error="bad token")
    if info.status == 413:
        return _answer(100, f"request too large: {info.message}")
    if info.status == 429:
        return _answer(429, info.message, 429)
    if info.status == 503:
        return _answer(101, f"service unavailable: {info.message}", 503)
    if info.status < 500:
        return _answer(100, info.message)
    return _answer(101, "recognition service error")


register_dialect(Dialect("qiniu", _is_qiniu, _dialect))
register_body_limit(lambda path: path == "/", MAX_BODY_BYTES)


def _canonical(key: str) -> str:
    return "-".join(part[:1].upper() + part[1:].lower() for part in key.split("-"))


def _signing_prefix(request: Request) -> tuple[str, bool]:
    """The signing string up to the body, and whether the body is signed too."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    path = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
    data = f"{request.method} {path}\nHost: {request.headers.get('host', '')}"
    content_type = request.headers.get("content-type")
    if content_type:
        data += f"\nContent-Type: {content_type}"
    qiniu_headers = sorted(
        (_canonical(k), v)
        for k, v in request.headers.items()
        if k.lower().startswith("x-qiniu-") and len(k) > 8
    )
    if qiniu_headers:
        data += "\n" + "\n".join(f"{k}: {v}" for k, v in qiniu_headers)
    data += "\n\n"
    return data, bool(content_type) and content_type != "application/octet-stream"


def _check_date(request: Request) -> None:
    stamp = request.headers.get("x-qiniu-date")
    if stamp is None:
        return
    try:
        moment = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise Unauthorized("X-Qiniu-Date is not of the form YYYYMMDDTHHMMSSZ") from None
    if abs(datetime.now(UTC) - moment) > DATE_WINDOW:
        raise Unauthorized("X-Qiniu-Date is more than 15 minutes away from the server's time")


async def _authenticated_body(
    request: Request, audio_writer: Callable[[], BlobWriter] | None
) -> tuple[AppInfo, JsonUpload]:
    """The app that signed the request, and its body's fields; its base64 ``audio`` is decoded into
    ``audio_writer()`` (a node-local scratch file, never the blob store) as it arrives, and refused when
    there is none. The AccessKey, the date and (when the body is not part of the signature) the
    signature are checked before the body is read; a signed body counts against the guard's budget for
    unauthenticated bytes until its signature matches, and its audio is dropped at once if it does not."""
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    access_key, _, sign = credential.strip().partition(":")
    if scheme != "Qiniu" or not access_key or not sign or len(credential) > 512:
        raise Unauthorized("send 'Authorization: Qiniu <AccessKey>:<Sign>'")
    _check_date(request)
    app, secret = await authenticate(request, secret_for_access_key, access_key, key=access_key)
    prefix, body_signed = _signing_prefix(request)
    mac = hmac.new(secret.encode(), prefix.encode("utf-8"), hashlib.sha1)
    if not body_signed:
        _check_signature(request, access_key, mac, sign)
    guard = guard_of(request)
    declared = request.headers.get("content-length", "")
    held = int(declared) if declared.isdigit() else MAX_BODY_BYTES
    guard.hold(held)
    try:
        try:
            body = await receive_json_upload(
                request,
                "audio",
                audio_writer,
                max_decoded=MAX_AUDIO_BYTES if audio_writer else 0,
                mac=mac if body_signed else None,
            )
        except BadBase64 as exc:
            raise QiniuError(119, exc.message) from exc
        except audio.AudioTooLarge as exc:
            raise QiniuError(100, exc.message) from exc
        if body_signed:
            try:
                _check_signature(request, access_key, mac, sign)
            except Unauthorized:
                await in_thread(body.abort)
                raise
    finally:
        guard.release(held)
    return app, body


def _check_signature(request: Request, access_key: str, mac: hmac.HMAC, sign: str) -> None:
    expected = base64.urlsafe_b64encode(mac.copy().digest()).decode()
    if not hmac.compare_digest(expected, sign):
        record_failure(request, access_key)
        raise Unauthorized("signature mismatch")


def _flag(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, 0)
    if value in (0, 1, "0", "1", True, False):
        return bool(int(value))
    raise QiniuError(100, f"{name} must be 0 or 1")


def _job_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The job's parameters but its source, from the request's fields (all checked before the audio is
    stored)."""
    voice_id = data.get("voice_id")
    if voice_id is None or (isinstance(voice_id, str) and not voice_id.strip()):
        raise QiniuError(100, "voice_id is required")
    voice_id = string(voice_id, "voice_id", max_length=MAX_VOICE_ID_CHARS)
    model_type = string(data.get("model_type", "0"), "model_type", max_length=16, numbers_ok=True)
    if model_type not in MODEL_TYPES:
        raise QiniuError(100, f"model_type must be one of {', '.join(MODEL_TYPES)}")
    hot_words = data.get("hot_words") or []
    if not isinstance(hot_words, list) or len(hot_words) > MAX_HOT_WORDS:
        raise QiniuError(100, f"hot_words: a list of at most {MAX_HOT_WORDS} words")
    parsed = []
    for item in hot_words:
        if not isinstance(item, dict) or not isinstance(item.get("hot_word"), str):
            raise QiniuError(100, "each hot word is {hot_word, factor}")
        word = string(item["hot_word"].strip(), "hot_word", max_length=MAX_HOT_WORD_BYTES)
        if not word or len(word.encode()) > MAX_HOT_WORD_BYTES:
            raise QiniuError(100, f"hot word {word!r}: 1 to {MAX_HOT_WORD_BYTES} bytes")
        if "factor" not in item:  # required by the seed (推荐1.0), as hot_word is
            raise QiniuError(100, f"hot word {word!r}: factor is required (from -10 to 10; 1.0 is usual)")
        factor = number(item["factor"], "factor", low=-10, high=10)
        parsed.append({"text": word, "weight": factor})
    fmt = data.get("format")
    if fmt is not None:
        fmt = string(fmt, "format", max_length=16).lower()
        if fmt not in KNOWN_FORMATS:
            raise QiniuError(120, f"audio format {fmt!r} is not supported")
    pcm = fmt in ("pcm", "raw")
    # Headerless pcm is 16 kHz 16-bit mono unless the request says otherwise (rate and channel are our
    # extension: the seed names no field for them).
    rate = _integer(data, "rate", PCM_RATE, low=8000, high=192_000) if pcm else PCM_RATE
    channels = _integer(data, "channel", 1, low=1, high=8) if pcm else 1
    need_dia, need_role = _flag(data, "need_dia"), _flag(data, "need_role")
    return {
        "audio": {
            "format": "pcm" if pcm else None if fmt in (None, "", "wav", "mp3") else fmt,
            "pcm_rate": rate,
            "pcm_channels": channels,
            "max_seconds": 5 * 3600,
        },
        "recording": {
            "decode": {
                "language": MODEL_TYPES[model_type],
                "itn": True,
                "punctuation": True,
                "hot_words": parsed,
            },
            "diarize": need_dia,
            "roles": need_role,
            "split_channels": True,
        },
        "vendor": "qiniu",
        "vendor_fields": {"voice_id": voice_id, "need_words": _flag(data, "need_words")},
    }


def _integer(data: dict[str, Any], name: str, default: int, *, low: int, high: int) -> int:
    value = data.get(name)
    if value in (None, ""):
        return default
    try:
        return integer(value, name, low=low, high=high)
    except InvalidRequest as exc:
        raise QiniuError(100, exc.message) from None


def _check_audio(spool: Path, audio_input: AudioInput) -> None:
    """Refuse at once what cannot be audio (ret 119, 120...), before any job or recognition."""
    try:
        audio.probe(
            spool,
            format=audio_input.format,
            pcm_rate=audio_input.pcm_rate,
            pcm_channels=audio_input.pcm_channels,
        )
    except audio.AudioError as exc:
        raise QiniuError(JOB_ERRORS.get(exc.code, 119), exc.message) from exc


def _submit(app: AppInfo, body: JsonUpload, spool: Path, job_id: str) -> dict[str, Any]:
    """Check the fields, then store the audio (decoded into ``spool``) as the new job's input."""
    store = blob_store()
    try:
        consume(app, "qiniu")
        fields = _job_fields(body.fields)
        if body.commit() is None:
            raise QiniuError(107, "audio is empty")
        _check_audio(spool, AudioInput.parse(fields["audio"]))
    except BaseException:
        body.abort()
        raise
    blob = store.put_file(input_key(job_id), spool)
    try:
        params = TranscriptionParams.parse(source={"blob": blob.key}, **fields)
    except BaseException:
        store.discard([blob])
        raise
    submit_transcription(params, app_pk=app.pk, job_id=job_id, inputs=[blob])
    return {"ret": 0, "msg": "success", "session_id": job_id}


def _sync_request(app: AppInfo, body: JsonUpload, spool: Path) -> tuple[ShortSpeech, bool]:
    """``cmd=sync``: the same fields as ``async``, for audio of at most ``SYNC_MAX_SECONDS``; the
    recognition to run at once, and whether words were asked for."""
    try:
        consume(app, "qiniu")
        fields = _job_fields(body.fields)
        if body.commit() is None:
            raise QiniuError(107, "audio is empty")
        audio_input = AudioInput.parse(fields["audio"])
        _check_audio(spool, audio_input)
    except BaseException:
        body.abort()
        raise
    settings = get_settings()
    speech = ShortSpeech(
        data=spool,
        format=audio_input.format if audio_input.format == "pcm" else None,
        rate=audio_input.pcm_rate,
        channels=audio_input.pcm_channels,
        recording=RecordingOptions.parse(fields["recording"]),
        max_seconds=SYNC_MAX_SECONDS,
        required_rate=None,
        decode_timeout_s=settings.asr_decode_timeout_s,
        recognize_timeout_s=settings.asr_recognize_timeout_s,
    )
    return speech, bool(fields["vendor_fields"]["need_words"])


def _render(result: dict[str, Any], need_words: bool) -> dict[str, Any]:
    """The pull (and sync) answer for a recording's result. ``role`` is "unk" where no role was asked
    for, as the seed's example shows; ``speaker`` (ours: the seed has no field for it) numbers the
    speakers from 1 when speakers were asked for (``need_dia``/``need_role``), or stereo channels were
    transcribed apart."""
    texts = []
    for seg_no, u in enumerate(result.get("utterances", [])):
        text: dict[str, Any] = {
            "chan_no": u["channel"],
            "chan_id": u["channel"],
            "seg_no": seg_no,
            "mbtm": u["start_ms"],
            "metm": u["end_ms"],
            "text": u["text"],
            "role": u.get("role") or "unk",
        }
        if u.get("speaker") is not None:
            text["speaker"] = u["speaker"]
        if need_words:
            text["words"] = [
                {
                    "word": w["text"],
                    "seg_start": float(w["start_ms"] - u["start_ms"]),
                    "seg_end": float(w["end_ms"] - u["start_ms"]),
                    "voice_start": float(w["start_ms"]),
                    "voice_end": float(w["end_ms"]),
                }
                for w in u["words"]
            ]
        texts.append(text)
    return {
        "ret": 0,
        "msg": "success",
        "all_text": "\n".join(t["text"] for t in texts) + ("\n" if texts else ""),
        "c_text": "\n".join(t["text"] for t in texts if t["role"] == "C"),
        "s_text": "\n".join(t["text"] for t in texts if t["role"] == "S"),
        "duration": result.get("duration_ms", 0) / 1000.0,
        "texts": texts,
    }


def _pull(app: AppInfo, body: JsonUpload) -> dict[str, Any]:
    data = body.fields
    session_id = data.get("session_id")
    if not session_id:
        raise QiniuError(100, "session_id is required")
    if not isinstance(session_id, str) or not SESSION_ID.match(session_id):
        return {"ret": 1014, "msg": "unknown task"}
    try:
        job = get_job(session_id, app_pk=app.pk)
    except NotFound:
        return {"ret": 1014, "msg": "unknown task"}
    if job.status == "queued":
        return {"ret": 1011, "msg": "queued"}
    if job.status == "running":
        return {"ret": 1012, "msg": "processing"}
    if job.status != "succeeded":
        return {
            "ret": JOB_ERRORS.get(job.error_code or "", 101),
            "msg": job.error_message or "recognition failed",
        }
    if job.fetched_at is not None:
        if datetime.now(UTC) - job.fetched_at > timedelta(seconds=get_settings().qiniu_repull_window_s):
            return {"ret": 1013, "msg": "already fetched"}
    else:
        mark_fetched(job.id)
    return _render(job.result or {}, bool(job_params(job.params).vendor_fields.get("need_words")))


@router.post("/", include_in_schema=True)
async def qiniu_command(request: Request) -> Response:
    """Qiniu recognition: ``?cmd=async`` submits base64 audio, ``?cmd=pull`` fetches the result, ``?cmd=sync``
    recognises a short recording (≤ 60 s) and answers with the result at once."""
    command = request.query_params.get("cmd")
    if command not in ("async", "pull", "sync"):
        return _answer(100, "cmd must be async, sync or pull")
    try:
        scratch = blob_store().scratch
        if command == "async":
            job_id = new_job_id()
            with scratch.file() as spool:  # the decoded audio, until it is stored as the job's input
                app, body = await _authenticated_body(request, lambda: scratch.writer(spool))
                answer = await in_thread(_submit, app, body, spool, job_id)
        elif command == "sync":
            inference: InferenceExecutor = request.app.state.inference
            with scratch.file() as spool:  # the decoded audio, gone once the answer is sent
                app, body = await _authenticated_body(request, lambda: scratch.writer(spool))
                speech, need_words = await in_thread(_sync_request, app, body, spool)
                result = await inference.run(recognize_short, speech)
            answer = _render(result.to_dict(), need_words)
        else:
            app, body = await _authenticated_body(request, None)
            answer = await in_thread(_pull, app, body)
        note_ids(request, session_id=answer.get("session_id"))
        return JSONResponse(answer)
    except QiniuError as exc:
        return _answer(exc.ret, exc.msg, exc.status)
    except Unauthorized as exc:
        return _answer(401, f"bad token: {exc.message}", 401, error="bad token")
    except QuotaExceeded as exc:
        return _answer(429, exc.message, 429)
    except ServiceUnavailable as exc:
        return _answer(101, client_message(request, exc), 503)
    except audio.AudioTooLong as exc:
        return _answer(100, f"{exc.message}; send longer recordings with cmd=async")
    except (audio.AudioError, NoSpeech, RecognitionTimeout) as exc:
        return _answer(JOB_ERRORS.get(exc.code, 119), client_message(request, exc))
    except InvalidRequest as exc:
        return _answer(100, client_message(request, exc))
    except TingyinError as exc:
        return _answer(JOB_ERRORS.get(exc.code, 101), client_message(request, exc))
