"""Per-app QPS and daily quotas, counted across every server process.

Counters live in the database by default (an atomic upsert per call) and in Redis when one is
configured (``TINGYIN_REDIS_URL``, or a Redis broker), which takes the load off the database.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tingyin.config import get_settings
from tingyin.errors import QuotaExceeded, ServiceUnavailable
from tingyin.store.apps import AppInfo
from tingyin.store.db import session_scope
from tingyin.store.models import UsageCounter, utcnow

log = logging.getLogger(__name__)
_redis_lock = threading.Lock()
_redis_clients: dict[str, Any] = {}


def _redis() -> Any | None:
    url = get_settings().counter_redis_url
    if not url:
        return None
    with _redis_lock:
        if url not in _redis_clients:
            import redis

            _redis_clients[url] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        return _redis_clients[url]


def _increment(app_pk: int, api: str, window: str, ttl_s: int) -> int:
    client = _redis()
    if client is not None:
        key = f"tingyin:quota:{app_pk}:{api}:{window}"
        try:
            pipe = client.pipeline()
            pipe.incr(key)
            pipe.expire(key, ttl_s)
            count, _ = pipe.execute()
            return int(count)
        except Exception as exc:
            raise ServiceUnavailable(f"quota counter store unavailable: {exc}") from exc
    expires = utcnow() + timedelta(seconds=ttl_s)
    with session_scope() as session:
        dialect = session.get_bind().dialect.name
        insert_fn: Any = pg_insert if dialect == "postgresql" else sqlite_insert
        statement = insert_fn(UsageCounter).values(
            app_pk=app_pk, api=api, window=window, count=1, expires_at=expires
        )
        statement = statement.on_conflict_do_update(
            index_elements=["app_pk", "api", "window"], set_={"count": UsageCounter.count + 1}
        ).returning(UsageCounter.count)
        return int(session.execute(statement).scalar_one())


USAGE_HISTORY_DAYS = 31  # daily counters are kept this long: they are the usage history too


def _day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")


def consume(app: AppInfo, api: str, now: float | None = None) -> None:
    """Count one call of ``api`` by ``app``; ``QuotaExceeded`` (kind "qps" or "daily") when over.

    The QPS window is checked first so that calls refused for QPS do not eat the daily quota. The day's
    counter is kept with or without a daily limit: it is the app's usage per API per day."""
    now = time.time() if now is None else now
    if app.qps_limit is not None and _increment(app.pk, api, f"s{int(now)}", 5) > app.qps_limit:
        raise QuotaExceeded(f"more than {app.qps_limit} requests per second", kind="qps")
    try:
        count = _increment(app.pk, api, f"d{_day(now)}", (USAGE_HISTORY_DAYS + 1) * 86400)
    except ServiceUnavailable:
        if app.daily_limit is not None:
            raise  # a limit that cannot be enforced refuses the call
        # Without a daily limit the counter is only usage history: losing one count must not refuse a call.
        log.warning("usage counter unavailable; call of %s by app %s not counted", api, app.pk)
        return
    if app.daily_limit is not None and count > app.daily_limit:
        raise QuotaExceeded(f"more than {app.daily_limit} requests today", kind="daily")


def daily_usage(app_pk: int, days: int, now: float | None = None) -> dict[str, dict[str, int]]:
    """Calls per API per day (``{api: {"YYYYMMDD": count}}``) over the last ``days`` days, today included.

    Calls refused for the daily quota are counted too: they are what the app asked for."""
    now = time.time() if now is None else now
    wanted = {_day(now - offset * 86400) for offset in range(max(1, min(days, USAGE_HISTORY_DAYS)))}
    usage: dict[str, dict[str, int]] = {}
    client = _redis()
    if client is not None:
        prefix = f"tingyin:quota:{app_pk}:"
        try:
            keys = [k.decode() for k in client.scan_iter(match=f"{prefix}*:d*", count=500)]
            values = client.mget(keys) if keys else []
        except Exception as exc:
            raise ServiceUnavailable(f"quota counter store unavailable: {exc}") from exc
        for key, value in zip(keys, values, strict=True):
            api, _, window = key[len(prefix) :].rpartition(":")
            if value is not None and window[1:] in wanted:
                usage.setdefault(api, {})[window[1:]] = int(value)
        return usage
    with session_scope() as session:
        rows = session.execute(
            select(UsageCounter.api, UsageCounter.window, UsageCounter.count).where(
                UsageCounter.app_pk == app_pk, UsageCounter.window.in_([f"d{day}" for day in wanted])
            )
        )
        for api, window, count in rows:
            usage.setdefault(api, {})[window[1:]] = int(count)
    return usage


def purge_counters() -> int:
    with session_scope() as session:
        result: Any = session.execute(delete(UsageCounter).where(UsageCounter.expires_at < utcnow()))
        return int(result.rowcount or 0)
