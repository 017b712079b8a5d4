"""Per-app QPS and daily quotas, counted across every server process.

Counters live in the database by default (an atomic upsert per call) and in Redis when one is
configured (``TINGYIN_REDIS_URL``, or a Redis broker), which takes the load off the database.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tingyin.config import get_settings
from tingyin.errors import QuotaExceeded, ServiceUnavailable
from tingyin.store.apps import AppInfo
from tingyin.store.db import session_scope
from tingyin.store.models import UsageCounter, utcnow

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


def consume(app: AppInfo, api: str, now: float | None = None) -> None:
    """Count one call of ``api`` by ``app``; ``QuotaExceeded`` (kind "qps" or "daily") when over.

    The QPS window is checked first so that calls refused for QPS do not eat the daily quota."""
    now = time.time() if now is None else now
    if app.qps_limit is not None and _increment(app.pk, api, f"s{int(now)}", 5) > app.qps_limit:
        raise QuotaExceeded(f"more than {app.qps_limit} requests per second", kind="qps")
    if app.daily_limit is not None:
        day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
        if _increment(app.pk, api, f"d{day}", 2 * 86400) > app.daily_limit:
            raise QuotaExceeded(f"more than {app.daily_limit} requests today", kind="daily")


def purge_counters() -> int:
    with session_scope() as session:
        result: Any = session.execute(delete(UsageCounter).where(UsageCounter.expires_at < utcnow()))
        return int(result.rowcount or 0)
