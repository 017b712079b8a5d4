"""Apps and credentials, migrations and fault behaviour, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from tingyin.errors import InvalidRequest, NotFound, ServiceUnavailable, Unauthorized
from tingyin.store import apps
from tingyin.store.db import get_engine, session_scope
from tingyin.store.models import App


def test_migrations_create_every_table(any_db: str) -> None:
    tables = set(inspect(get_engine()).get_table_names())
    assert {"apps", "usage_counters", "jobs", "alembic_version"} <= tables
    with session_scope() as session:
        assert session.execute(text("SELECT version_num FROM alembic_version")).scalar()


def test_create_authenticate_rotate_delete(any_db: str, home: Path) -> None:
    created = apps.create_app("demo", qps_limit=5)
    assert set(created.as_dict()) == {"name", "app_id", "api_key", "secret_key", "app_token"}
    assert created.app_id.isdigit() and len(created.app_id) == 8

    assert apps.authenticate_key_secret(created.api_key, created.secret_key).name == "demo"
    assert apps.authenticate_token(created.app_token, app_id=created.app_id).name == "demo"
    info, secret = apps.secret_for_access_key(created.api_key)
    assert secret == created.secret_key and info.qps_limit == 5

    with pytest.raises(Unauthorized):
        apps.authenticate_key_secret(created.api_key, "wrong")
    with pytest.raises(Unauthorized):
        apps.authenticate_token(created.app_token, app_id="99999999")
    with pytest.raises(InvalidRequest):
        apps.create_app("demo")
    with pytest.raises(InvalidRequest):
        apps.create_app("名字 with spaces")

    rotated = apps.rotate_app("demo")
    assert rotated.app_id == created.app_id and rotated.api_key != created.api_key
    with pytest.raises(Unauthorized):
        apps.authenticate_token(created.app_token)
    assert apps.authenticate_token(rotated.app_token).app_id == created.app_id

    assert [a.name for a in apps.list_apps()] == ["demo"]
    apps.delete_app("demo")
    with pytest.raises(NotFound):
        apps.get_app("demo")


def test_secrets_are_not_stored_in_clear(any_db: str, home: Path) -> None:
    created = apps.create_app("vault")
    with session_scope() as session:
        row = session.scalar(select(App).where(App.name == "vault"))
        assert row is not None
        stored = " ".join(str(v) for v in (row.secret_hash, row.secret_encrypted, row.token_hash))
    assert created.secret_key not in stored and created.app_token not in stored
    key_file = home / "server.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_concurrent_creates_get_distinct_ids(any_db: str) -> None:
    errors: list[Exception] = []

    def make(index: int) -> None:
        try:
            apps.create_app(f"app{index}")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=make, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    listed = apps.list_apps()
    assert len({a.app_id for a in listed}) == len({a.api_key for a in listed}) == 8


def test_database_down_is_service_unavailable(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import _reset, free_port

    monkeypatch.setenv("TINGYIN_DATABASE_URL", f"postgresql+psycopg2://nobody@127.0.0.1:{free_port()}/none")
    _reset()
    with pytest.raises(ServiceUnavailable):
        apps.create_app("never")


def test_sqlite_lock_timeout_is_service_unavailable_and_writes_nothing(home: Path) -> None:
    import sqlite3

    from tingyin.config import get_settings

    get_engine()
    path = get_settings().db_url.split("///", 1)[1]
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        engine = get_engine()
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA busy_timeout=200")
        from sqlalchemy import event

        def short_timeout(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.execute("PRAGMA busy_timeout=200")

        event.listen(engine, "connect", short_timeout)
        engine.dispose()
        with pytest.raises(ServiceUnavailable):
            apps.create_app("locked")
    finally:
        blocker.rollback()
        blocker.close()
    assert [a.name for a in apps.list_apps()] == []
