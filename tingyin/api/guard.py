"""What a caller can cost before it has proved who it is.

Every route authenticates before it reads the request body, from headers or the query string. Some
vendor protocols put the credentials inside the body (SAMI's JSON, Qiniu's signature over the body):
such a body is held in a ``HeldBody``, a private temporary outside the blob store, until the
credentials are checked, and removed afterwards whatever the outcome. Nothing reaches permanent
storage before authentication, and nothing is left behind by a refused request.

``AuthGuard`` bounds the rest: failed authentications are counted per client address and per
presented key (an app id, API key or AccessKey) over a sliding window, and past the limit requests
are refused (429 in the caller's dialect) before their body is read; all held bodies together may
hold at most a fixed number of bytes at once.
"""

from __future__ import annotations

import hmac
import json
import mmap
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import Scope

from tingyin.config import Settings, get_settings
from tingyin.errors import InvalidRequest, QuotaExceeded, ServiceUnavailable, Unauthorized

T = TypeVar("T")
MAX_TRACKED = 100_000  # addresses and keys remembered at once; the oldest are forgotten first


class TooManyFailures(QuotaExceeded):
    """Too many failed authentications from this address or for this key; retry later."""

    code = "too_many_auth_failures"


class ServerBusy(ServiceUnavailable):
    """The server is busy receiving other uploads; retry later."""

    code = "server_busy"


class _Window:
    """Failure times per name within the last ``window_s`` seconds."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self.events: OrderedDict[str, deque[float]] = OrderedDict()

    def over(self, name: str, now: float) -> bool:
        times = self.events.get(name)
        if not self.limit or times is None:
            return False
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self.events[name]
            return False
        return len(times) >= self.limit

    def add(self, name: str, now: float) -> None:
        if not self.limit:
            return
        times = self.events.setdefault(name, deque(maxlen=self.limit))
        times.append(now)
        self.events.move_to_end(name)
        while len(self.events) > MAX_TRACKED:
            self.events.popitem(last=False)


class AuthGuard:
    """Failed-authentication limits and the byte budget of bodies awaiting authentication.

    One per server process (``app.state.auth_guard``); thread-safe."""

    def __init__(
        self,
        *,
        per_address: int,
        per_key: int,
        window_s: float,
        held_bytes_limit: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._addresses = _Window(per_address, window_s)
        self._keys = _Window(per_key, window_s)
        self._held_limit = held_bytes_limit
        self._held = 0
        self._clock = clock
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthGuard:
        return cls(
            per_address=settings.auth_failures_per_address,
            per_key=settings.auth_failures_per_key,
            window_s=settings.auth_failure_window_s,
            held_bytes_limit=settings.unauthenticated_body_bytes,
        )

    def check(self, address: str, key: str | None = None) -> None:
        """``TooManyFailures`` when ``address`` or ``key`` failed too often lately."""
        now = self._clock()
        with self._lock:
            if self._addresses.over(address, now) or (key and self._keys.over(key[:128], now)):
                raise TooManyFailures(
                    "too many failed authentications from this address or for this key; retry in a minute"
                )

    def failed(self, address: str, key: str | None = None) -> None:
        now = self._clock()
        with self._lock:
            self._addresses.add(address, now)
            if key:
                self._keys.add(key[:128], now)

    def hold(self, size: int) -> None:
        """Count ``size`` more bytes held for an unauthenticated body (``release`` gives them back)."""
        with self._lock:
            if self._held + size > self._held_limit:
                raise ServerBusy("too many unauthenticated uploads at once; retry later")
            self._held += size

    def release(self, size: int) -> None:
        with self._lock:
            self._held = max(0, self._held - size)

    @property
    def held_bytes(self) -> int:
        return self._held


def client_address(scope: Scope) -> str:
    """The peer's address (a proxy in front of tingyin counts as one client)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def guard_of(request: Request) -> AuthGuard:
    guard: AuthGuard = request.app.state.auth_guard
    return guard


async def authenticate(
    request: Request, function: Callable[..., T], *args: Any, key: str | None = None, **kwargs: Any
) -> T:
    """Run the blocking authentication ``function(*args, **kwargs)`` under the guard: refused at once
    when the caller (its address, or the ``key`` it presents) failed too often lately, and an
    ``Unauthorized`` from it counts as a failure."""
    guard = guard_of(request)
    address = client_address(request.scope)
    guard.check(address, key)
    try:
        return await run_in_threadpool(function, *args, **kwargs)
    except Unauthorized:
        guard.failed(address, key)
        raise


def record_failure(request: Request, key: str | None = None) -> None:
    """Count a failed authentication that was decided without ``authenticate`` (a bad signature)."""
    guard_of(request).failed(client_address(request.scope), key)


class HeldBody:
    """A request body kept in a private temporary file until the credentials inside it are checked.

    Use as a context manager: the file is removed and its bytes returned to the guard's budget when
    the block ends, whether the request was refused, failed or succeeded."""

    def __init__(self, path: Path, size: int, guard: AuthGuard) -> None:
        self.path, self.size, self._guard = path, size, guard
        self._closed = False

    @classmethod
    async def receive(cls, request: Request, *, mac: hmac.HMAC | None = None) -> HeldBody:
        """Read the whole body into a temporary, feeding ``mac`` with it as it arrives."""
        guard = guard_of(request)
        directory = get_settings().unauthenticated_dir
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor, name = tempfile.mkstemp(dir=directory, prefix="body-")
        size = 0
        try:
            with os.fdopen(descriptor, "wb") as handle:
                async for chunk in request.stream():
                    if chunk:
                        guard.hold(len(chunk))
                        size += len(chunk)
                        handle.write(chunk)
                        if mac is not None:
                            mac.update(chunk)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            guard.release(size)
            raise
        return cls(Path(name), size, guard)

    def fields_except(self, field: str) -> dict[str, Any]:
        """The members of the JSON object in the body other than ``field``, a base64 string that may
        be most of the body: it is neither decoded nor copied."""
        if self.size == 0:
            raise InvalidRequest("the request body is empty")
        with self.path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            match = re.search(rb'"' + re.escape(field.encode()) + rb'"\s*:\s*"', view)
            if match is None:
                return _json_object(view[:])
            end = view.find(b'"', match.end())
            if end < 0:
                raise InvalidRequest("the JSON body is cut short")
            rest = _json_object(view[: match.start()] + b'"' + field.encode() + b'": ""' + view[end + 1 :])
        rest.pop(field, None)
        return rest

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.path.unlink(missing_ok=True)
            self._guard.release(self.size)

    def __enter__(self) -> HeldBody:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the JSON body must be an object")
    return data


def remove_leftovers(older_than_s: float = 3600.0) -> None:
    """Delete held bodies a crashed process left behind (called at start-up; another server sharing
    this home may be holding fresh ones, which are left alone)."""
    directory = get_settings().unauthenticated_dir
    if not directory.is_dir():
        return
    cutoff = time.time() - older_than_s
    for path in directory.glob("body-*"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
