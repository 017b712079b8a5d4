"""Loaded models shared between requests: loaded lazily on first use, unloaded after an idle TTL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

T = TypeVar("T")


@dataclass
class _Entry:
    value: Any
    last_used: float
    users: int = 0


class ModelManager:
    """A keyed cache of loaded models. ``get(key, loader)`` loads once; idle entries are dropped.

    Loading happens outside the global lock (one lock per key) so one slow load does not block
    requests for other models; a model in use (inside ``use``) is never unloaded.
    """

    def __init__(self, idle_ttl_s: float = 900.0) -> None:
        self.idle_ttl_s = idle_ttl_s
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._reaper: threading.Thread | None = None
        self._stop = threading.Event()

    def get(self, key: str, loader: Callable[[], T]) -> T:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.last_used = time.monotonic()
                return cast(T, entry.value)
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    entry.last_used = time.monotonic()
                    return cast(T, entry.value)
            value = loader()
            with self._lock:
                self._entries[key] = _Entry(value, time.monotonic())
            self._ensure_reaper()
            return value

    def loaded(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def unload(self, key: str) -> bool:
        with self._lock:
            return self._entries.pop(key, None) is not None

    def unload_idle(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [
                k for k, e in self._entries.items() if e.users == 0 and now - e.last_used > self.idle_ttl_s
            ]
            for key in idle:
                del self._entries[key]
        return idle

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
    global _manager
    if _manager is None:
        from tingyin.config import get_settings

        _manager = ModelManager(get_settings().model_idle_ttl_seconds)
    return _manager
