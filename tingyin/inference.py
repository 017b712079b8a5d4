"""One bounded executor for every synchronous inference (Baidu ASR, native recognize, EasyDL predict, SAMI).

Models use all cores; running more requests at once than there are slots only multiplies memory and makes each
slower. So: at most ``concurrency`` inferences run; at most ``queue_size`` more wait, each for at most
``admission_timeout_s``; anything beyond is refused at once with ``ServerBusy`` — which every API answers
in its
own busy code, long before a client's read timeout — instead of piling up threads and memory. Work that
started gets a deadline it checks cooperatively. Once no inference has run for ``TRIM_AFTER_IDLE_S``, freed
heap is handed back to the OS (glibc keeps it otherwise), so the server returns to its baseline after a
burst; not at the end of each request, where it cost the answer ~6 ms and the next request the page faults
of taking the memory back (~5 ms more on a 5 s clip).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from tingyin.errors import ServiceUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
TRIM_AFTER_IDLE_S = 1.0


class ServerBusy(ServiceUnavailable):
    """Every inference slot is taken and the queue is full (or the wait ran out): try again shortly."""

    code = "server_busy"

    def __init__(self, message: str | None = None, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class InferenceExecutor:
    """Admission control and a thread limit for synchronous inference, shared by every API of a server."""

    def __init__(self, *, concurrency: int, queue_size: int, admission_timeout_s: float) -> None:
        if concurrency < 1 or queue_size < 0 or admission_timeout_s <= 0:
            raise ValueError("concurrency ≥ 1, queue_size ≥ 0 and admission_timeout_s > 0 are required")
        self.concurrency = concurrency
        self.queue_size = queue_size
        self.admission_timeout_s = admission_timeout_s
        self._slots: asyncio.Semaphore | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._waiting = 0
        self._running = 0
        self._started = 0  # inferences started so far: a trim scheduled before the latest one is stale
        self._lock = threading.Lock()
        self._trim = _malloc_trim()

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def running(self) -> int:
        return self._running

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``function(*args, **kwargs)`` in a worker thread once a slot is free; ``ServerBusy`` when
        the queue is full or no slot frees within the admission timeout."""
        if self._slots is None:  # created on the event loop that serves the requests
            self._slots = asyncio.Semaphore(self.concurrency)
            self._limiter = anyio.CapacityLimiter(self.concurrency)
        slots, limiter = self._slots, self._limiter
        assert limiter is not None
        if slots.locked() and self._waiting >= self.queue_size:
            raise ServerBusy("the server is busy: every inference slot is taken and the queue is full")
        self._waiting += 1
        try:
            await asyncio.wait_for(slots.acquire(), timeout=self.admission_timeout_s)
        except TimeoutError:
            raise ServerBusy(
                f"the server is busy: no inference slot freed within {self.admission_timeout_s:g} s"
            ) from None
        finally:
            self._waiting -= 1
        try:
            with self._lock:
                self._running += 1
                self._started += 1
            return await anyio.to_thread.run_sync(
                functools.partial(function, *args, **kwargs), limiter=limiter
            )
        finally:
            with self._lock:
                self._running -= 1
                idle = self._running == 0
                started = self._started
            slots.release()
            if idle:
                loop = asyncio.get_running_loop()
                loop.call_later(TRIM_AFTER_IDLE_S, self._trim_if_still_idle, loop, started)

    def _trim_if_still_idle(self, loop: asyncio.AbstractEventLoop, started: int) -> None:
        """Hand freed heap back, off the event loop, unless an inference started since the idle moment."""
        with self._lock:
            still_idle = self._running == 0 and self._started == started
        if still_idle:
            loop.run_in_executor(None, self._trim)


def deadline_in(seconds: float | None) -> float | None:
    """A ``time.monotonic()`` deadline ``seconds`` from now (None: no deadline)."""
    return None if seconds is None else time.monotonic() + seconds


def _malloc_trim() -> Callable[[], None]:
    """glibc's malloc_trim(0), or a no-op where the C library has none."""
    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError):
        function = ctypes.CDLL(name).malloc_trim if name else None
        if function is not None:
            return lambda: function(0) and None
    return lambda: None


__all__ = ["InferenceExecutor", "ServerBusy", "deadline_in"]
