"""The job engine at scale: PostgreSQL + Redis with two `tingyin worker` processes, a worker killed
with SIGKILL mid-job, and a broker that is down. Everything real: servers, workers, model, audio."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import MODEL_CACHE, Server, bearer, free_port, fresh_postgres_database, fresh_redis_url
from tests.foundation.test_server import EN_CLIP
from tingyin import audio


def long_speech(seconds: float) -> bytes:
    """Real speech repeated with pauses, as a WAV of about ``seconds``."""
    clip = audio.decode(EN_CLIP).samples
    pause = np.zeros(16000, dtype=np.float32)
    pieces: list[np.ndarray] = []
    while sum(p.shape[0] for p in pieces) < seconds * 16000:
        pieces += [clip, pause]
    return audio.encode_wav(np.concatenate(pieces))


class Workers:
    def __init__(self, env: dict[str, str], count: int, log_dir: Path) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs = []
        for index in range(count):
            log = (log_dir / f"worker-{index}.log").open("wb")
            self.logs.append(log)
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tingyin.cli", "worker", "--name", f"w{index}"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def kill(self, pid: int) -> None:
        os.killpg(pid, signal.SIGKILL)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for log in self.logs:
            log.close()


@pytest.fixture
def scaled(tmp_path: Path) -> Iterator[tuple[Server, Workers, str]]:
    database = fresh_postgres_database()
    env = {
        "TINGYIN_DATABASE_URL": database,
        "TINGYIN_BROKER_URL": fresh_redis_url(),
        "TINGYIN_JOB_LEASE_SECONDS": "4",
        "TINGYIN_BROKER_VISIBILITY_TIMEOUT": "30",
        "TINGYIN_CPU_THREADS": "1",
    }
    server = Server(tmp_path / "home", env=env, worker=False).wait_ready()
    workers = Workers(server.env, 2, tmp_path)
    try:
        yield server, workers, database
    finally:
        workers.stop()
        server.stop()


def test_sigkilled_worker_loses_no_job(scaled: tuple[Server, Workers, str]) -> None:
    server, workers, database = scaled
    app = server.create_app("scale")
    response = httpx.post(
        f"{server.url}/v1/transcriptions?language=en",
        headers=bearer(app),
        content=long_speech(60),
        timeout=60,
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    engine = create_engine(database)
    owner = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            row = connection.execute(
                text("SELECT status, lease_owner, progress FROM jobs WHERE id = :id"), {"id": job_id}
            ).one()
        if row.status == "running" and row.lease_owner:
            owner = row.lease_owner
            break
        time.sleep(0.2)
    assert owner is not None, "the job never started"
    owner_pid = int(owner.split(":")[1])
    victim = next(p for p in workers.processes if p.pid == owner_pid)
    time.sleep(1.0)  # well inside the job
    workers.kill(victim.pid)
    victim.wait(timeout=10)
    assert victim.returncode == -signal.SIGKILL

    done = server.wait_job(app, job_id, timeout=240)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    result = done["result"]
    assert isinstance(result, dict) and result["text"].lower().count("paper") >= 5
    with engine.connect() as connection:
        final = connection.execute(
            text("SELECT lease_owner, attempts FROM jobs WHERE id = :id"), {"id": job_id}
        ).one()
        assert connection.execute(text("SELECT count(*) FROM jobs")).scalar() == 1
    assert int(final.lease_owner.split(":")[1]) != owner_pid
    engine.dispose()


def test_broker_down_is_503_and_writes_nothing(tmp_path: Path) -> None:
    server = Server(
        tmp_path / "home", env={"TINGYIN_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}, worker=False
    ).wait_ready(path="/healthz")
    try:
        app = server.create_app("nobroker")
        ready = httpx.get(f"{server.url}/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["checks"]["broker"].startswith("unavailable")
        response = httpx.post(
            f"{server.url}/v1/transcriptions", headers=bearer(app), content=EN_CLIP.read_bytes(), timeout=60
        )
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "service_unavailable"
        assert "broker" in response.json()["error"]["message"]
        db = create_engine(f"sqlite:///{server.home / 'tingyin.db'}")
        with db.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM jobs")).scalar() == 0
        db.dispose()
    finally:
        server.stop()
    assert MODEL_CACHE.exists()


def test_embedded_broker_polls_five_times_a_second_on_its_sqlite_file(home: Path) -> None:
    """The embedded SQLite broker: kombu's SQLAlchemy transport polling 5 times a second while jobs come
    (its default, once a second, kept an idle worker up to 1-2 s from a submitted job), once a second after
    a minute without one (5 a second kept an idle worker at 6% of a core), on the same database file."""
    import time

    from tingyin.jobs.celery_app import PromptSqlTransport, make_celery

    app = make_celery()
    with app.connection_for_write() as connection:
        transport = connection.transport
        assert connection.transport_cls is PromptSqlTransport
        assert transport.polling_interval <= 0.2
        assert transport.interval(time.monotonic()) <= 0.2  # a new worker expects a job
        assert transport.interval(time.monotonic() + transport.busy_window_s + 1) == 1.0
        assert connection.hostname == f"sqlite:///{home / 'broker.db'}"
        transport.last_delivery = time.monotonic() - 2 * transport.busy_window_s  # idle for two minutes
        queue = connection.SimpleQueue("probe")
        queue.put({"job": "x"})
        assert queue.get(timeout=5).payload == {"job": "x"}
        assert transport.interval(time.monotonic()) <= 0.2  # the delivery made it busy again
        queue.close()
    assert (home / "broker.db").exists()


def test_other_brokers_keep_their_own_transport(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tingyin.config import reset_settings
    from tingyin.jobs.celery_app import make_celery

    monkeypatch.setenv("TINGYIN_BROKER_URL", "redis://127.0.0.1:6399/0")
    reset_settings()
    app = make_celery()
    assert app.conf.broker_transport is None
    assert app.connection_for_write().transport_cls == "redis"
