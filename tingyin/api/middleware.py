"""ASGI middleware: request ids, structured access logs, server errors, limits enforced before reading."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tingyin.api.errors import dialect_for, info_from_exception, log_server_error, render_error
from tingyin.api.guard import AuthGuard, TooManyFailures, client_address
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
    """A route's own limit (the vendor's document, e.g. a 5 GB dataset zip), else ``default``
    (``TINGYIN_MAX_BODY_BYTES``). Routes with a limit above a few megabytes stream their bodies."""
    for matches, limit in _body_limits:
        if matches(path):
            return limit
    return default


class BodyTooLarge(Exception):
    pass


REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Liveness and readiness answer whoever asks: an orchestrator behind the same address as a client
# that failed to authenticate must not restart the server.
PROBES = ("/healthz", "/readyz")


class RequestContextMiddleware:
    """Gives each request an id (``X-Request-Id``, honoured if the client sent a plain one), refuses
    a client that failed authentication too often and bodies over the limit before reading them (by
    Content-Length, or while streaming when chunked), turns an unexpected exception into a 500 in
    the route's dialect (logged once, with its traceback and the request id), and writes one JSON
    access-log line per request, with the vendor ids the route noted (``note_ids``)."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, guard: AuthGuard, observe: RequestObserver | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.guard = guard
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        sent_id = headers.get("x-request-id", "")
        rid = sent_id if REQUEST_ID.match(sent_id) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        state["log_ids"] = {}
        status_holder: dict[str, int] = {"status": 0}
        limit = body_limit_for(scope["path"], self.max_body_bytes)
        dialect = dialect_for(scope["path"], scope.get("query_string", b"").decode("latin-1"))
        api = dialect.name if dialect else "native"
        current_api.set(api)  # what the work done for this request counts as (audio seconds per API)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                raw = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                raw.append((b"x-request-id", rid.encode()))
                message["headers"] = raw
            await send(message)

        try:
            if scope["path"] not in PROBES:
                self.guard.check(client_address(scope))
        except TooManyFailures as exc:
            await self._reject(scope, send_with_id, exc)
            self._finish(scope, rid, 429, started, api)
            return
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(scope, send_with_id, PayloadTooLarge.over(limit))
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
                await self._reject(scope, send_with_id, PayloadTooLarge.over(limit))
            status_holder["status"] = 413
        except asyncio.CancelledError:
            # Cut off (the shutdown's grace period ran out): still one access-log line.
            self._finish(scope, rid, status_holder["status"] or 499, started, api)
            raise
        except Exception as exc:
            # Handled here rather than re-raised: the server would log it a second time, and this
            # access-log line would be lost.
            request = Request(scope)
            log_server_error(request, exc)
            if status_holder["status"] == 0:
                await self._reject(scope, send_with_id, exc)
            status_holder["status"] = 500
        self._finish(scope, rid, status_holder["status"], started, api)

    def _finish(self, scope: Scope, rid: str, status: int, started: float, api: str) -> None:
        self._log(scope, rid, status, started)
        if self.observe is not None:
            # The route template (bounded label values), never the raw path.
            route = getattr(scope.get("route"), "path", None) or ("unmatched" if status == 404 else "other")
            self.observe(api, str(route), str(scope.get("method")), status, time.perf_counter() - started)

    async def _reject(self, scope: Scope, send: Send, exc: BaseException) -> None:
        request = Request(scope)
        response = render_error(request, info_from_exception(exc, request))

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
        noted = scope.get("state", {}).get("log_ids")
        if noted:
            record["ids"] = noted
        log.info(json.dumps(record, ensure_ascii=False))


def note_ids(request: Request, **ids: object) -> None:
    """Put vendor ids a caller may quote (Baidu sn, EasyDL log_id, SAMI task_id, job ids) on the
    request's access-log line, next to its request id."""
    noted = request.scope.setdefault("state", {}).setdefault("log_ids", {})
    noted.update({name: str(value) for name, value in ids.items() if value is not None})


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
