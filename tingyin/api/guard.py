"""What a caller can cost before it has proved who it is.

Every route authenticates before it reads the request body, from headers or the query string. Some
vendor protocols put the credentials inside the body (SAMI's JSON, Qiniu's signature over the body): such
a body streams into node-local scratch (``api/spool.py``) and counts against this guard's byte budget until
the credentials are checked; a refused one is deleted at once. Nothing reaches permanent storage before
authentication, and nothing is left behind by a refused request.

``AuthGuard`` bounds the rest: failed authentications are counted per client address and per
presented key (an app id, API key or AccessKey) over a sliding window, and past the limit requests
are refused (429 in the caller's dialect) before their body is read; all held bodies together may
hold at most a fixed number of bytes at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import Scope

from tingyin.config import Settings
from tingyin.errors import QuotaExceeded, Unauthorized
from tingyin.inference import ServerBusy

T = TypeVar("T")
MAX_TRACKED = 100_000  # addresses and keys remembered at once; the oldest are forgotten first


class TooManyFailures(QuotaExceeded):
    """Too many failed authentications from this address or for this key; retry later."""

    code = "too_many_auth_failures"


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
