"""Every error leaves the server as JSON in the dialect of the API that was called.

A vendor adapter registers a ``Dialect`` for its paths; anything raised on those paths (including a
route that does not exist, a body over the limit, a validation failure or an unexpected exception)
is rendered by that dialect. Other paths get the native shape
``{"error": {"code", "message", "request_id"}}``.

What a caller reads is decided here (``client_message``): the message of an error in the request
(4xx), without any server path; for a failure of the server (5xx), its generic description, while
the detail and traceback go to the log, once, under the request id the caller is given.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from tingyin.errors import TingyinError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorInfo:
    status: int  # HTTP status the native API would use
    code: str  # tingyin error code (TingyinError.code)
    message: str
    error: TingyinError | None = None


Renderer = Callable[[Request, ErrorInfo], Response]


@dataclass(frozen=True)
class Dialect:
    name: str
    matches: Callable[[str, str], bool]  # (path, query string) -> bool
    render: Renderer


_dialects: list[Dialect] = []


def register_dialect(dialect: Dialect) -> None:
    global _dialects
    _dialects = [d for d in _dialects if d.name != dialect.name] + [dialect]


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")


def native_render(request: Request, info: ErrorInfo) -> Response:
    return JSONResponse(
        {"error": {"code": info.code, "message": info.message, "request_id": request_id(request)}},
        status_code=info.status,
    )


def dialect_for(path: str, query: str = "") -> Dialect | None:
    for dialect in _dialects:
        if dialect.matches(path, query):
            return dialect
    return None


def render_error(request: Request, info: ErrorInfo) -> Response:
    dialect = dialect_for(request.url.path, request.url.query)
    renderer = dialect.render if dialect else native_render
    try:
        response = renderer(request, info)
    except Exception:  # a renderer bug must not become an HTML 500
        log.exception("error renderer failed")
        response = native_render(request, info)
    response.headers["X-Request-Id"] = request_id(request)
    return response


def _server_roots() -> list[str]:
    from tingyin.config import get_settings

    settings = get_settings()
    roots = {str(settings.home), str(settings.model_dir), sys.prefix, sys.base_prefix, tempfile.gettempdir()}
    return sorted((r.rstrip("/") for r in roots if len(r) > 1), key=len, reverse=True)


def without_server_paths(text: str) -> str:
    """``text`` with every file path under the server's directories replaced by "<server path>"."""
    for root in _server_roots():
        text = re.sub(r"(?<![^\s'\"(\[=:])" + re.escape(root) + r"(?:/[^\s'\"]*)?", "<server path>", text)
    return text


def generic_message(exc: BaseException, rid: str) -> str:
    """The description of a server-side failure a caller may read (its class's docstring)."""
    summary = exc.summary if isinstance(exc, TingyinError) else "Internal error."
    return f"{summary} Quote request id {rid} to the operator." if rid else summary


def log_server_error(request: Request, exc: BaseException) -> None:
    """One log record per server-side failure: the request id, the route and the traceback."""
    record = {
        "event": "server_error",
        "request_id": request_id(request),
        "method": request.method,
        "path": request.url.path,
        "error": getattr(exc, "code", "internal_error"),
    }
    log.error(json.dumps(record), exc_info=(type(exc), exc, exc.__traceback__))


def client_message(request: Request, exc: TingyinError) -> str:
    """What the caller of ``request`` may read about ``exc`` (see the module's docstring)."""
    if exc.http_status >= 500:
        log_server_error(request, exc)
        return generic_message(exc, request_id(request))
    return without_server_paths(exc.message)


def info_from_exception(exc: BaseException, request: Request | None = None) -> ErrorInfo:
    """The error as the dialects render it. With ``request``, a ``TingyinError`` of the server is
    logged here; an unexpected exception is logged by whoever caught it."""
    if isinstance(exc, TingyinError):
        if request is not None:
            return ErrorInfo(exc.http_status, exc.code, client_message(request, exc), exc)
        message = exc.message if exc.http_status < 500 else generic_message(exc, "")
        return ErrorInfo(exc.http_status, exc.code, without_server_paths(message), exc)
    rid = request_id(request) if request is not None else ""
    return ErrorInfo(500, "internal_error", generic_message(exc, rid))
