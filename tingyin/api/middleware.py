"""ASGI middleware: request ids and structured access logs; body limits enforced before reading."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tingyin.api.errors import dialect_for, info_from_exception, render_error
from tingyin.errors import PayloadTooLarge
from tingyin.metrics import current_api

# Called once per request with (dialect, route template, method, status, seconds): the metrics hook.
RequestObserver = Callable[[str, str, str, int, float], None]

log = logging.getLogger("tingyin.access")

# Path prefix -> byte limit, most specific first; adapters register their vendor's limit.
_body_limits: list[tuple[Callable[[str], bool], int]] = []


def register_body_limit(matches: Callable[[str], bool], limit: int) -> None:
    _body_limits.append((matches, limit))


def body_limit_for(path: str, default: int) -> int:
    for matches, limit in _body_limits:
        if matches(path):
            return min(limit, default)
    return default


class BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    """Gives each request an id (``X-Request-Id``, honoured if the client sent one), refuses bodies
    over the limit before reading them (by Content-Length, or while streaming when chunked), and
    writes one JSON access-log line per request."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, observe: RequestObserver | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        rid = headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        status_holder: dict[str, int] = {"status": 0}
        limit = body_limit_for(scope["path"], self.max_body_bytes)
        dialect = dialect_for(scope["path"], scope.get("query_string", b"").decode("latin-1"))
        api = dialect.name if dialect else "native"
        current_api.set(api)  # what the work done for this request counts as (audio seconds per API)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                raw = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in raw):
                    raw.append((b"x-request-id", rid.encode()))
                message["headers"] = raw
            await send(message)

        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(scope, send_with_id, limit)
            self._finish(scope, rid, 413, started, api)
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        try:
            await self.app(scope, counting_receive, send_with_id)
        except BodyTooLarge:
            if status_holder["status"] == 0:
                await self._reject(scope, send_with_id, limit)
            status_holder["status"] = 413
        self._finish(scope, rid, status_holder["status"], started, api)

    def _finish(self, scope: Scope, rid: str, status: int, started: float, api: str) -> None:
        self._log(scope, rid, status, started)
        if self.observe is not None:
            # The route template (bounded label values), never the raw path.
            route = getattr(scope.get("route"), "path", None) or ("unmatched" if status == 404 else "other")
            self.observe(api, str(route), str(scope.get("method")), status, time.perf_counter() - started)

    async def _reject(self, scope: Scope, send: Send, limit: int) -> None:
        request = Request(scope)
        response = render_error(request, info_from_exception(PayloadTooLarge.over(limit)))

        async def empty_receive() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, empty_receive, send)

    @staticmethod
    def _log(scope: Scope, rid: str, status: int, started: float) -> None:
        record: dict[str, Any] = {
            "event": "request",
            "request_id": rid,
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "ms": round((time.perf_counter() - started) * 1000, 1),
        }
        log.info(json.dumps(record, ensure_ascii=False))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        payload: dict[str, Any]
        if message.startswith("{"):
            try:
                payload = json.loads(message)
            except ValueError:
                payload = {"message": message}
        else:
            payload = {"message": message}
        payload.update(
            {
                "ts": round(record.created, 3),
                "level": record.levelname.lower(),
                "logger": record.name,
            }
        )
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if json_logs else logging.Formatter("%(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
