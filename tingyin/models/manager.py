"""Loaded models shared between requests: loaded once on first use, counted while in use, unloaded after an
idle TTL.

``use(key, loader)`` is how a caller holds a model for the length of its work: the model is loaded at most
once (one lock per key, so a slow load does not block other models), its user count is raised while the
``with`` block runs, and the reaper only drops entries with no user that have been idle for ``idle_ttl_s``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

T = TypeVar("T")


@dataclass
class _Entry:
    value: Any
    last_used: float
    users: int = 0


class ModelManager:
    """A keyed cache of loaded models with user counts and idle unloading."""

    def __init__(
        self, idle_ttl_s: float = 900.0, on_change: Callable[[str, bool], None] | None = None
    ) -> None:
        self.idle_ttl_s = idle_ttl_s
        self.on_change = on_change  # (key, loaded) after a model is loaded or dropped: the metrics hook
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._reaper: threading.Thread | None = None
        self._stop = threading.Event()

    @contextmanager
    def use(self, key: str, loader: Callable[[], T]) -> Iterator[T]:
        """The model under ``key`` (loaded by ``loader`` if absent), held for the ``with`` block."""
        entry = self._acquire(key, loader)
        try:
            yield cast(T, entry.value)
        finally:
            with self._lock:
                entry.users -= 1
                entry.last_used = time.monotonic()

    def get(self, key: str, loader: Callable[[], T]) -> T:
        """The model under ``key`` for a short call that holds no reference afterwards."""
        with self.use(key, loader) as value:
            return value

    def _acquire(self, key: str, loader: Callable[[], Any]) -> _Entry:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.users += 1
                entry.last_used = time.monotonic()
                return entry
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    entry.users += 1
                    entry.last_used = time.monotonic()
                    return entry
            value = loader()
            with self._lock:
                entry = _Entry(value, time.monotonic(), users=1)
                self._entries[key] = entry
            self._changed(key, True)
            self._ensure_reaper()
            return entry

    def loaded(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def users(self, key: str) -> int:
        with self._lock:
            entry = self._entries.get(key)
            return entry.users if entry is not None else 0

    def unload(self, key: str) -> bool:
        """Drop ``key`` unless it is in use; True when it was dropped."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.users > 0:
                return False
            del self._entries[key]
        self._changed(key, False)
        return True

    def unload_idle(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [
                k for k, e in self._entries.items() if e.users == 0 and now - e.last_used > self.idle_ttl_s
            ]
            for key in idle:
                del self._entries[key]
        for key in idle:
            self._changed(key, False)
        return idle

    def _changed(self, key: str, loaded: bool) -> None:
        if self.on_change is not None:
            self.on_change(key, loaded)

    def close(self) -> None:
        self._stop.set()

    def _ensure_reaper(self) -> None:
        if self._reaper is not None and self._reaper.is_alive():
            return
        self._reaper = threading.Thread(target=self._reap, name="model-reaper", daemon=True)
        self._reaper.start()

    def _reap(self) -> None:
        interval = max(1.0, min(60.0, self.idle_ttl_s / 4))
        while not self._stop.wait(interval):
            self.unload_idle()


_manager: ModelManager | None = None


def get_manager() -> ModelManager:
    """The process's model cache (every loaded model of a server or worker lives here)."""
    global _manager
    if _manager is None:
        from tingyin.config import get_settings
        from tingyin.metrics import process_metrics

        _manager = ModelManager(
            get_settings().model_idle_ttl_seconds, on_change=process_metrics().model_load_changed
        )
    return _manager
