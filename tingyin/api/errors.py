"""Every error leaves the server as JSON in the dialect of the API that was called.

A vendor adapter registers a ``Dialect`` for its paths; anything raised on those paths (including a
route that does not exist, a body over the limit, a validation failure or an unexpected exception)
is rendered by that dialect. Other paths get the native shape
``{"error": {"code", "message", "request_id"}}``.
"""

from __future__ import annotations

import logging
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


def info_from_exception(exc: BaseException) -> ErrorInfo:
    if isinstance(exc, TingyinError):
        return ErrorInfo(exc.http_status, exc.code, exc.message, exc)
    return ErrorInfo(500, "internal_error", "internal error; see the server log for the request id")
