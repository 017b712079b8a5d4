"""OpenAI's audio API (``/v1/audio/transcriptions``, ``/v1/audio/translations``, ``/v1/models``) and a
diarization endpoint in the same dialect (``/v1/audio/diarization``), for the many clients that speak it
(the official ``openai`` SDKs, Open WebUI, n8n, scripts).

A thin translator like the other vendor adapters: the multipart form becomes ``RecordingOptions`` (``model``
``whisper-1`` is the operator's default model), the recording pipeline runs on the inference executor, and
its result is rendered as OpenAI renders Whisper's (``json``, ``text``, ``srt``, ``vtt``, ``verbose_json``
with Whisper's per-segment figures, ``diarized_json``) or streamed as server-sent events
(``transcript.text.delta`` ... ``transcript.text.done``). Extensions as extra form fields: ``hotwords``
(``phrase:weight,phrase``), ``itn``, ``diarize`` (a speaker on every segment and word). Errors are
``{"error": {"message", "type", "param", "code"}}``. The token is the app's ``app_token``; quotas count
under the API name ``openai``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Request, Security
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from tingyin import audio
from tingyin.api.deps import bearer_scheme, bearer_token, in_thread
from tingyin.api.errors import Dialect, ErrorInfo, register_dialect
from tingyin.api.guard import authenticate
from tingyin.api.middleware import register_body_limit
from tingyin.api.spool import FormFieldError, FormFields, receive_upload, upload_chunks
from tingyin.config import get_settings
from tingyin.errors import EngineError, InvalidRequest, QuotaExceeded, TingyinError
from tingyin.inference import InferenceExecutor, ServerBusy
from tingyin.speech.options import MAX_PROMPT_CHARS, DecodeOptions, HotWord, Language
from tingyin.speech.pipeline import MAX_SPEAKERS, RecordingOptions, RecordingResult
from tingyin.store.apps import AppInfo, authenticate_token
from tingyin.validation import FrozenModel

if TYPE_CHECKING:
    from tingyin.speech.diarization import SpeakerTurn
    from tingyin.speech.types import Utterance

router = APIRouter(tags=["openai"])

API = "openai"  # quota and usage name
DEFAULT_MODEL_ALIAS = "whisper-1"  # OpenAI's name for Whisper: the operator's default model here
LANGUAGES: dict[str, Language] = {"zh": "zh", "en": "en", "yue": "yue", "zh-en": "zh-en", "auto": "auto"}
MAX_HOTWORDS_CHARS = 20_000
MAX_FORM_FIELDS = 32
MAX_FIELDS_BYTES = 64 * 1024  # the form's fields besides the file (a prompt, hot words...)
MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # OpenAI's limit for an audio file
# The multipart form wraps the file in boundaries, headers and the other fields.
register_body_limit(
    lambda path: path.startswith("/v1/audio/"), MAX_UPLOAD_BYTES + MAX_FIELDS_BYTES + 64 * 1024
)


def _is_openai(path: str, _query: str) -> bool:
    return path.startswith("/v1/audio/") or path == "/v1/models" or path.startswith("/v1/models/")


# ------------------------------------------------------------------------------------------------ errors


class ClientGone(TingyinError):
    """The client closed the connection; the work for it stopped."""

    code = "client_closed_request"
    http_status = 499


ERROR_TYPES = {401: "invalid_request_error", 403: "permission_error", 404: "invalid_request_error"}


def _error_body(info: ErrorInfo) -> dict[str, Any]:
    error = info.error
    param = getattr(error, "param", None)
    if info.status == 429:
        daily = isinstance(error, QuotaExceeded) and error.kind == "daily"
        kind = "insufficient_quota" if daily else "requests"
        code = "insufficient_quota" if daily else "rate_limit_exceeded"
        return {"message": info.message, "type": kind, "param": None, "code": code}
    server = info.status >= 500
    kind = "server_error" if server else ERROR_TYPES.get(info.status, "invalid_request_error")
    code = "invalid_api_key" if info.status == 401 else info.code
    return {"message": info.message, "type": kind, "param": param, "code": code}


def _render(request: Request, info: ErrorInfo) -> Response:
    headers = {}
    if isinstance(info.error, ServerBusy):
        headers["Retry-After"] = str(max(1, round(info.error.retry_after_s)))
    return JSONResponse({"error": _error_body(info)}, status_code=info.status, headers=headers)


register_dialect(Dialect("openai", _is_openai, _render))


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, requests, insufficient_quota, server_error...")
    param: str | None = Field(description="the form field at fault, when one is")
    code: str | None


class OpenAIError(BaseModel):
    """OpenAI's error shape."""

    error: OpenAIErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": OpenAIError, "description": text}
    for status, text in (
        (400, "a parameter or the audio is invalid"),
        (401, "missing or unknown app_token"),
        (404, "no such model"),
        (413, "the request body is too large"),
        (429, "the app's QPS or daily quota is used up"),
        (500, "the recognizer failed"),
        (503, "every inference slot is busy (Retry-After), or a backing service is down"),
    )
}

# ------------------------------------------------------------------------------------------------- forms


class _Form(FrozenModel):
    """Form fields as OpenAI sends them (strings; lists as ``name[]``)."""

    @classmethod
    def schema_for_docs(cls) -> dict[str, Any]:
        """The multipart request body of the operation, for OpenAPI (the form is parsed by hand so that the
        token is checked before a large upload is read)."""
        schema = cls.model_json_schema(by_alias=True)
        properties = {"file": {"type": "string", "format": "binary", "description": "the audio file"}}
        properties.update(schema["properties"])
        return {
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": properties,
                            "required": ["file", *schema.get("required", [])],
                        }
                    }
                },
            }
        }


class _SpeechForm(_Form):
    model: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        description=f"one of the server's ASR models (GET /v1/models); {DEFAULT_MODEL_ALIAS} is its default"
    )
    prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] | None = Field(
        default=None, description="text the speech follows on from: names, spelling, style"
    )
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        default=0.0, description="0: beam search; above 0: sampling at this temperature"
    )
    hotwords: Annotated[str, Field(max_length=MAX_HOTWORDS_CHARS)] | None = Field(
        default=None,
        description="extension: phrases to favour (weight > 0) or suppress, 'phrase:weight,phrase'",
    )
    itn: bool = Field(default=True, description="extension: numbers, dates and money as digits")


class TranscriptionForm(_SpeechForm):
    language: Annotated[str, Field(max_length=16)] | None = Field(
        default=None,
        description="zh, en or yue (ISO-639-1; yue Cantonese), or zh-en for mixed speech; absent: detected",
    )
    response_format: Literal["json", "text", "srt", "vtt", "verbose_json", "diarized_json"] = "json"
    timestamp_granularities: list[Literal["word", "segment"]] = Field(
        default=["segment"],
        alias="timestamp_granularities[]",
        max_length=2,
        description="verbose_json: segments, words or both",
    )
    stream: bool = Field(default=False, description="server-sent events (json or text)")
    diarize: bool = Field(default=False, description="extension: a speaker on every segment and word")


class TranslationForm(_SpeechForm):
    response_format: Literal["json", "text", "srt", "vtt", "verbose_json"] = "json"


class DiarizationForm(_Form):
    response_format: Literal["json", "rttm"] = "json"
    num_speakers: Annotated[int, Field(ge=1, le=MAX_SPEAKERS)] | None = Field(
        default=None, description="the number of speakers, when known"
    )
    min_speakers: Annotated[int, Field(ge=1, le=MAX_SPEAKERS)] | None = None
    max_speakers: Annotated[int, Field(ge=1, le=MAX_SPEAKERS)] | None = Field(
        default=None, description="default 8 (or num_speakers / min_speakers when larger)"
    )


FormT = TypeVar("FormT", bound=_Form)


def _form_of(fields: dict[str, list[str]], form_model: type[FormT]) -> FormT:
    """The form's text fields, checked in the order sent (unknown fields refused by name)."""
    values: dict[str, Any] = {}
    for key, sent in fields.items():
        name = "timestamp_granularities[]" if key == "timestamp_granularities" else key
        if name.endswith("[]"):
            values[name] = [v for v in sent if v != ""]
        elif len(sent) > 1:
            raise InvalidRequest(f"{key!r} is given more than once", param=key)
        elif sent[0] != "":  # an empty field is an absent one
            values[name] = sent[0]
    return form_model.parse(values)


@asynccontextmanager
async def _received(request: Request, form_model: type[FormT]) -> AsyncIterator[tuple[Path, FormT]]:
    """The form's audio, streamed into a node-local scratch file (deleted when the block ends), and its
    other fields, checked. Called once the app is authenticated and counted."""
    from tingyin.store.blobs import blob_store

    scratch = blob_store().scratch
    fields = FormFields(max_fields=MAX_FORM_FIELDS, max_bytes=MAX_FIELDS_BYTES)
    with scratch.file() as path:
        try:
            await receive_upload(
                upload_chunks(request, fields=fields),
                scratch.writer(path),
                max_bytes=MAX_UPLOAD_BYTES,
                empty_message="the file is empty",
            )
        except FormFieldError:
            raise
        except InvalidRequest as exc:  # the body or its file part: missing, empty, too large, malformed
            exc.param = exc.param or "file"
            raise
        yield path, _form_of(fields.values, form_model)


def _decode(path: Path) -> audio.DecodedAudio:
    try:
        return audio.decode(path, max_seconds=get_settings().openai_max_audio_s)
    except audio.AudioError as exc:
        exc.param = "file"
        raise


def _model(name: str) -> str | None:
    """The enabled model a request names (``whisper-1``: the default); InvalidRequest otherwise."""
    from tingyin.speech.models import speech_models

    if name == DEFAULT_MODEL_ALIAS:
        return None
    try:
        return speech_models().resolve(name)
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message, param="model") from None


def _language(code: str | None) -> Language:
    if code is None:
        return "auto"
    language = LANGUAGES.get(code.lower())
    if language is None:
        raise InvalidRequest(
            f"language {code!r} is not offered here ({', '.join(LANGUAGES)}); leave it out to detect any "
            "language",
            param="language",
        )
    return language


def _hot_words(spec: str | None) -> tuple[HotWord, ...]:
    try:
        return HotWord.parse_list(spec)
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message, param="hotwords") from None


async def _authenticated(request: Request) -> AppInfo:
    """The calling app, from its bearer app_token, under the guard (failures counted per address and key)."""
    return await authenticate(request, authenticate_token, bearer_token(request))


async def _admit(request: Request) -> AppInfo:
    """The calling app, counted against its quota: before the upload is read."""
    from tingyin.store.quota import consume

    app = await _authenticated(request)
    await in_thread(consume, app, API)
    return app


# ------------------------------------------------------------------------------------------ recognition


class _Cancelled:
    """Set when the client went away: the recognition stops at its next progress report."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def check(self, *_: object) -> None:
        if self.event.is_set():
            raise ClientGone("the client closed the connection")


async def _watch_disconnect(request: Request, cancelled: _Cancelled) -> None:
    while not cancelled.event.is_set():
        await asyncio.sleep(1.0)
        if await request.is_disconnected():
            cancelled.event.set()


class _Recognised:
    def __init__(self, result: RecordingResult, tokens: list[list[int]]) -> None:
        self.result = result
        self.tokens = tokens


def _recognise(path: Path, options: RecordingOptions, cancelled: _Cancelled) -> _Recognised:
    from tingyin.speech.models import speech_models
    from tingyin.speech.pipeline import transcribe_recording

    decoded = _decode(path)
    with speech_models().use(options.decode.model) as recognizer:
        result = transcribe_recording(decoded, options, recognizer, progress=cancelled.check)
        tokens = [recognizer.text_tokens(u.text, u.language, options.decode.task) for u in result.utterances]
    return _Recognised(result, tokens)


async def _run(request: Request, function: Callable[..., Any], *args: Any) -> Any:
    """Run on the inference executor (busy: 503 at once); the work stops if the client goes away."""
    inference: InferenceExecutor = request.app.state.inference
    cancelled = _Cancelled()
    watcher = asyncio.create_task(_watch_disconnect(request, cancelled))
    try:
        return await inference.run(function, *args, cancelled)
    finally:
        cancelled.event.set()
        watcher.cancel()


# ----------------------------------------------------------------------------------------------- answers


class OpenAIUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float = Field(description="seconds of audio")


class OpenAITranscription(BaseModel):
    """``json``."""

    text: str
    usage: OpenAIUsage


class OpenAISegment(BaseModel):
    id: int
    seek: int = Field(description="start of the decoded chunk this segment came from, in mel frames")
    start: float
    end: float
    text: str
    tokens: list[int] = Field(description="the model's token ids of the text")
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    speaker: str | None = Field(default=None, description="with diarize: SPEAKER_00, SPEAKER_01...")


class OpenAIWord(BaseModel):
    word: str
    start: float
    end: float
    speaker: str | None = Field(default=None, description="with diarize")


class OpenAIVerboseTranscription(BaseModel):
    """``verbose_json``: Whisper's segments (with ``timestamp_granularities[]=segment``, the default) and
    words (``=word``); times in seconds."""

    task: Literal["transcribe", "translate"]
    language: str = Field(description="the spoken language's English name (translations: english)")
    duration: float
    text: str
    segments: list[OpenAISegment] | None = None
    words: list[OpenAIWord] | None = None
    usage: OpenAIUsage | None = None


class OpenAIDiarizedSegment(BaseModel):
    type: Literal["transcript.text.segment"] = "transcript.text.segment"
    id: str
    start: float
    end: float
    text: str
    speaker: str = Field(description="A, B, C... in order of first appearance")


class OpenAIDiarizedTranscription(BaseModel):
    """``diarized_json``: OpenAI's diarized transcript."""

    task: Literal["transcribe"] = "transcribe"
    duration: float
    text: str
    segments: list[OpenAIDiarizedSegment]
    usage: OpenAIUsage


class DiarizationSegment(BaseModel):
    id: int
    speaker: str = Field(description="SPEAKER_00, SPEAKER_01... in order of first appearance")
    start: float
    end: float


class Diarization(BaseModel):
    duration: float
    speakers: list[str]
    segments: list[DiarizationSegment]


def _seconds(ms: int) -> float:
    return round(ms / 1000, 3)


def _stats(utterance: Utterance) -> Any:
    if utterance.decoding is None:  # every utterance the decoder writes has them
        raise EngineError("the recognizer gave an utterance without its decoding statistics")
    return utterance.decoding


def _label(speaker: int | None) -> str | None:
    from tingyin.speech.subtitles import speaker_label

    return None if speaker is None else speaker_label(speaker)


def _verbose(recognised: _Recognised, task: str, granularities: list[str]) -> OpenAIVerboseTranscription:
    from tingyin.speech.languages import language_name

    result = recognised.result
    utterances = result.utterance_list()
    segments = None
    if "segment" in granularities or not granularities:
        segments = []
        for index, (u, tokens) in enumerate(zip(utterances, recognised.tokens, strict=True)):
            stats = _stats(u)
            segments.append(
                OpenAISegment(
                    id=index,
                    seek=stats.seek,
                    start=_seconds(u.start_ms),
                    end=_seconds(u.end_ms),
                    text=u.text,
                    tokens=tokens,
                    temperature=stats.temperature,
                    avg_logprob=round(stats.avg_logprob, 6),
                    compression_ratio=round(stats.compression_ratio, 6),
                    no_speech_prob=round(stats.no_speech_prob, 6),
                    speaker=_label(u.speaker),
                )
            )
    words = None
    if "word" in granularities:
        words = [
            OpenAIWord(
                word=w.text, start=_seconds(w.start_ms), end=_seconds(w.end_ms), speaker=_label(u.speaker)
            )
            for u in utterances
            for w in u.words
        ]
    duration = _seconds(result.duration_ms)
    return OpenAIVerboseTranscription(
        task="translate" if task == "translate" else "transcribe",
        language="english" if task == "translate" else language_name(result.language),
        duration=duration,
        text=result.text,
        segments=segments,
        words=words,
        usage=OpenAIUsage(seconds=duration),
    )


def _diarized(result: RecordingResult) -> OpenAIDiarizedTranscription:
    letters: dict[int | None, str] = {}
    segments = []
    for index, u in enumerate(result.utterance_list()):
        if u.speaker not in letters:
            letters[u.speaker] = _letter(len(letters))
        segments.append(
            OpenAIDiarizedSegment(
                id=f"seg_{index}",
                start=_seconds(u.start_ms),
                end=_seconds(u.end_ms),
                text=u.text,
                speaker=letters[u.speaker],
            )
        )
    duration = _seconds(result.duration_ms)
    return OpenAIDiarizedTranscription(
        duration=duration, text=result.text, segments=segments, usage=OpenAIUsage(seconds=duration)
    )


def _letter(index: int) -> str:
    """A, B, ... Z, AA, AB, ..."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


def _answer(recognised: _Recognised, response_format: str, task: str, granularities: list[str]) -> Response:
    from tingyin.speech import subtitles

    result = recognised.result
    if response_format == "text":
        return PlainTextResponse(result.text + "\n")
    if response_format in ("srt", "vtt"):
        render = subtitles.to_srt if response_format == "srt" else subtitles.to_vtt
        return PlainTextResponse(render(result.to_dict()))
    if response_format == "verbose_json":
        return _json(_verbose(recognised, task, granularities))
    if response_format == "diarized_json":
        return _json(_diarized(result))
    return _json(
        OpenAITranscription(text=result.text, usage=OpenAIUsage(seconds=_seconds(result.duration_ms)))
    )


def _json(model: BaseModel) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json", exclude_none=True))


def _speech_responses(answer: Any) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "model": answer,
            "description": "the transcript in the response_format asked for",
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        },
        **ERRORS,
    }


# -------------------------------------------------------------------------------------------- streaming


def _sse(event: Mapping[str, Any]) -> bytes:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


async def _stream(request: Request, path: Path, options: RecordingOptions) -> StreamingResponse:
    """``transcript.text.delta`` per utterance as it is decoded, then ``transcript.text.done``. The
    inference slot is taken (or ``busy`` answered) and the audio decoded before the stream starts, so those
    errors are ordinary error answers; a failure later is an ``error`` event. The file at ``path`` is read
    whole before the first event, so it may go once this returns."""
    from tingyin.speech.models import speech_models
    from tingyin.speech.pipeline import stream_utterances

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    cancelled = _Cancelled()

    def put(kind: str, value: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    def work(_: _Cancelled) -> None:
        decoded = _decode(path)
        with speech_models().use(options.decode.model) as recognizer:
            utterances = stream_utterances(decoded, options, recognizer, progress=cancelled.check)
            put("started", None)
            for utterance in utterances:
                cancelled.check()
                put("utterance", utterance)

    inference: InferenceExecutor = request.app.state.inference
    task = asyncio.create_task(inference.run(work, cancelled))

    def finished(done: asyncio.Task[None]) -> None:
        if not done.cancelled():
            done.exception()  # retrieved: the events below report it, or nobody listens any more
        queue.put_nowait(("end", done))

    task.add_done_callback(finished)
    kind, value = await queue.get()
    if kind == "end":  # refused or failed before the first event: an ordinary error answer
        value.result()
        raise EngineError("the recognition ended before it started")

    async def events() -> AsyncIterator[bytes]:
        from tingyin.api.errors import info_from_exception
        from tingyin.speech.postprocess import join_texts

        texts: list[str] = []
        try:
            while True:
                kind, value = await queue.get()
                if kind == "utterance":
                    before = join_texts(texts)
                    texts.append(value.text)
                    delta = join_texts(texts)[len(before) :]
                    if delta:
                        yield _sse({"type": "transcript.text.delta", "delta": delta})
                elif kind == "end":
                    if value.exception() is not None:
                        info = info_from_exception(value.exception())
                        yield _sse({"type": "error", "error": _error_body(info)})
                    else:
                        yield _sse({"type": "transcript.text.done", "text": join_texts(texts)})
                    return
        finally:
            cancelled.event.set()  # the client left early: stop decoding

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


# --------------------------------------------------------------------------------------------- endpoints


@router.post(
    "/v1/audio/transcriptions",
    summary="Transcribe audio (OpenAI)",
    responses=_speech_responses(
        OpenAITranscription | OpenAIVerboseTranscription | OpenAIDiarizedTranscription
    ),
    openapi_extra=TranscriptionForm.schema_for_docs(),
)
async def create_transcription(
    request: Request, _token: HTTPAuthorizationCredentials | None = Security(bearer_scheme)
) -> Response:
    """OpenAI's transcription: the words in the spoken language."""
    await _admit(request)
    async with _received(request, TranscriptionForm) as (path, form):
        return await _transcribe(request, path, form)


async def _transcribe(request: Request, path: Path, form: TranscriptionForm) -> Response:
    model = _model(form.model)
    wants_speakers = form.diarize or form.response_format == "diarized_json"
    if form.stream and (form.response_format not in ("json", "text") or wants_speakers):
        raise InvalidRequest(
            "stream=true gives text as it is decoded (response_format json or text, without speakers)",
            param="stream",
        )
    if form.timestamp_granularities != ["segment"] and form.response_format != "verbose_json":
        raise InvalidRequest(
            "timestamp_granularities[] needs response_format verbose_json", param="timestamp_granularities[]"
        )
    options = RecordingOptions.parse(
        decode=DecodeOptions.parse(
            language=_language(form.language),
            itn=form.itn,
            hot_words=_hot_words(form.hotwords),
            model=model,
            temperature=form.temperature,
            prompt=form.prompt,
        ),
        diarize=wants_speakers,
        require_speech=False,
    )
    if form.stream:
        return await _stream(request, path, options)
    recognised = await _run(request, _recognise, path, options)
    return _answer(recognised, form.response_format, "transcribe", list(form.timestamp_granularities))


@router.post(
    "/v1/audio/translations",
    summary="Translate audio into English (OpenAI)",
    responses=_speech_responses(OpenAITranscription | OpenAIVerboseTranscription),
    openapi_extra=TranslationForm.schema_for_docs(),
)
async def create_translation(
    request: Request, _token: HTTPAuthorizationCredentials | None = Security(bearer_scheme)
) -> Response:
    """OpenAI's translation: English text for speech in any language (Whisper's translate task)."""
    await _admit(request)
    async with _received(request, TranslationForm) as (path, form):
        return await _translate(request, path, form)


async def _translate(request: Request, path: Path, form: TranslationForm) -> Response:
    options = RecordingOptions.parse(
        decode=DecodeOptions.parse(
            task="translate",
            itn=form.itn,
            hot_words=_hot_words(form.hotwords),
            model=_model(form.model),
            temperature=form.temperature,
            prompt=form.prompt,
        ),
        require_speech=False,
    )
    recognised = await _run(request, _recognise, path, options)
    return _answer(recognised, form.response_format, "translate", ["segment"])


def _diarize(path: Path, options: RecordingOptions, _: _Cancelled) -> tuple[float, list[SpeakerTurn]]:
    from tingyin.speech.pipeline import diarize_recording

    decoded = _decode(path)
    return decoded.duration_s, diarize_recording(decoded, options)


@router.post(
    "/v1/audio/diarization",
    summary="Who spoke when",
    responses={
        200: {
            "model": Diarization,
            "description": "speaker segments (json) or RTTM lines (rttm)",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **ERRORS,
    },
    openapi_extra=DiarizationForm.schema_for_docs(),
)
async def create_diarization(
    request: Request, _token: HTTPAuthorizationCredentials | None = Security(bearer_scheme)
) -> Response:
    """Speaker turns without the words: ``json`` segments ``{id, speaker, start, end}`` or ``rttm``."""
    await _admit(request)
    async with _received(request, DiarizationForm) as (path, form):
        return await _diarization(request, path, form)


async def _diarization(request: Request, path: Path, form: DiarizationForm) -> Response:
    from tingyin.speech.subtitles import rttm, speaker_label

    options = RecordingOptions.parse(
        diarize=True,
        num_speakers=form.num_speakers,
        min_speakers=form.min_speakers or 1,
        max_speakers=form.max_speakers or max(8, form.num_speakers or 1, form.min_speakers or 1),
    )
    duration, turns = await _run(request, _diarize, path, options)
    if form.response_format == "rttm":
        return PlainTextResponse(
            rttm("audio", [(t.start_ms / 1000, t.end_ms / 1000, speaker_label(t.speaker)) for t in turns])
        )
    segments = [
        DiarizationSegment(
            id=i, speaker=speaker_label(t.speaker), start=_seconds(t.start_ms), end=_seconds(t.end_ms)
        )
        for i, t in enumerate(turns)
    ]
    speakers = sorted({s.speaker for s in segments})
    return _json(Diarization(duration=round(duration, 3), speakers=speakers, segments=segments))


# ------------------------------------------------------------------------------------------------ models


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="when the model was installed on this server (Unix time; 0: unknown)")
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


def _models() -> list[OpenAIModel]:
    from tingyin.models import get_store
    from tingyin.speech.models import speech_models

    models = speech_models()
    store = get_store()
    enabled = models.enabled()
    out = [
        OpenAIModel(id=alias, created=int(store.installed_at(reference) or 0), owned_by="tingyin")
        for alias, reference in enabled.items()
    ]
    default = models.settings.asr_model
    created = int(store.installed_at(enabled[default]) or 0)
    return [*out, OpenAIModel(id=DEFAULT_MODEL_ALIAS, created=created, owned_by="tingyin")]


@router.get("/v1/models", response_model=OpenAIModelList, responses=ERRORS, summary="List models (OpenAI)")
async def list_models(
    request: Request, _token: HTTPAuthorizationCredentials | None = Security(bearer_scheme)
) -> OpenAIModelList:
    """The ASR models a request may name, and ``whisper-1`` (the default one). Every model the server knows,
    with its state, is at ``GET /v1/system/models``."""
    await _authenticated(request)
    return OpenAIModelList(data=await in_thread(_models))


@router.get("/v1/models/{model_id}", response_model=OpenAIModel, responses=ERRORS, summary="A model (OpenAI)")
async def get_model(
    model_id: str, request: Request, _token: HTTPAuthorizationCredentials | None = Security(bearer_scheme)
) -> OpenAIModel:
    from tingyin.errors import NotFound

    await _authenticated(request)
    for model in await in_thread(_models):
        if model.id == model_id:
            return model
    raise NotFound(f"the model {model_id!r} does not exist on this server")


__all__ = ["router"]
