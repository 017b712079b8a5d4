"""Engine and sessions: SQLite (WAL) by default, PostgreSQL when ``TINGYIN_DATABASE_URL`` says so."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tingyin.config import get_settings
from tingyin.errors import ServiceUnavailable

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_migrated: set[str] = set()


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while a worker writes; busy_timeout waits out short write locks
    # instead of failing at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def get_engine(url: str | None = None) -> Engine:
    url = url or get_settings().db_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
    if url not in _migrated:
        migrate(engine)
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent; safe for several processes at once)."""
    from alembic import command
    from alembic.config import Config

    url = engine.url.render_as_string(hide_password=False)
    with _lock:
        if url in _migrated:
            return
        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                # Two processes starting at once must not both create the tables.
                connection.execute(text("SELECT pg_advisory_xact_lock(74616966)"))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        _migrated.add(url)


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _migrated.clear()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A transaction: committed when the block ends, rolled back on any error. A database that is
    locked or down becomes ``ServiceUnavailable`` (503), and nothing of the block is written."""
    try:
        engine = get_engine(url)
        factory = sessionmaker(bind=engine, expire_on_commit=False)
    except (OperationalError, DBAPIError) as exc:
        raise ServiceUnavailable(f"database unavailable: {exc.orig}") from exc
    session = factory()
    try:
        yield session
        session.commit()
    except (OperationalError, DBAPIError) as exc:
        session.rollback()
        raise ServiceUnavailable(f"database unavailable: {exc.orig}") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ping(url: str | None = None) -> None:
    with session_scope(url) as session:
        session.execute(text("SELECT 1"))
