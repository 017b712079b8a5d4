"""Shared fixtures: an isolated TINGYIN_HOME per test, real servers started as subprocesses,
PostgreSQL/Redis URLs from the environment (``.ci/run`` starts both), and the shared test data."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
# One model cache for the whole run: joining whisper-base's parts is done once, not per test.
MODEL_CACHE = Path(os.environ.get("TINGYIN_TEST_MODEL_CACHE", Path.home() / ".cache" / "tingyin-test-models"))


def testdata_dir() -> Path | None:
    """``../shared/testdata`` next to the checkout (or TINGYIN_TESTDATA); None where absent."""
    candidate = Path(os.environ.get("TINGYIN_TESTDATA", REPO.parent / "shared" / "testdata"))
    return candidate if candidate.is_dir() else None


@pytest.fixture
def shared_testdata() -> Path:
    path = testdata_dir()
    if path is None:
        pytest.skip("../shared/testdata is absent on this machine")
    return path


def _reset() -> None:
    from tingyin.config import reset_settings
    from tingyin.store.db import dispose_engines

    dispose_engines()
    reset_settings()
    import tingyin.models.registry as registry

    registry._store = None


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh TINGYIN_HOME with SQLite, and the shared model cache."""
    monkeypatch.setenv("TINGYIN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TINGYIN_MODELS_DIR", str(MODEL_CACHE))
    for name in ("TINGYIN_DATABASE_URL", "TINGYIN_BROKER_URL", "TINGYIN_REDIS_URL", "TINGYIN_BLOB_URL"):
        monkeypatch.delenv(name, raising=False)
    _reset()
    yield tmp_path / "home"
    _reset()


def postgres_url() -> str | None:
    return os.environ.get("TINGYIN_TEST_POSTGRES_URL")


def redis_url() -> str | None:
    return os.environ.get("TINGYIN_TEST_REDIS_URL")


def fresh_postgres_database() -> str:
    """A new, empty database on the test PostgreSQL server (one per test: no shared state)."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = postgres_url()
    if base is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI must provide TINGYIN_TEST_POSTGRES_URL (.ci/run starts PostgreSQL)")
        pytest.skip("TINGYIN_TEST_POSTGRES_URL not set")
    name = f"tingyin_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def fresh_redis_url() -> str:
    """A Redis database number of its own for this test, flushed."""
    import random

    import redis

    base = redis_url()
    if base is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI must provide TINGYIN_TEST_REDIS_URL (.ci/run starts Redis)")
        pytest.skip("TINGYIN_TEST_REDIS_URL not set")
    server = base.rstrip("/").rsplit("/", 1)[0] if base.count("/") > 2 else base.rstrip("/")
    url = f"{server}/{random.randint(1, 15)}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    if request.param == "postgres":
        url = fresh_postgres_database()
        monkeypatch.setenv("TINGYIN_DATABASE_URL", url)
        _reset()
        return url
    from tingyin.config import get_settings

    return get_settings().db_url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bearer(app: dict[str, str]) -> dict[str, str]:
    """The native API's Authorization header for ``app``."""
    return {"Authorization": f"Bearer {app['app_token']}"}


class Server:
    """A real ``tingyin serve`` process. It binds a free port itself (``--port 0``) and ``wait_ready``
    reads which from its log: a port chosen here and bound later could be taken meanwhile by another
    server starting at the same time, whose answers would then pass for this one's."""

    def __init__(
        self, home: Path, env: dict[str, str] | None = None, worker: bool = True, preload: bool = True
    ) -> None:
        self.home = home
        self.port = 0  # known once the server has bound it (wait_ready)
        self.env = {
            **os.environ,
            "TINGYIN_HOME": str(home),
            "TINGYIN_MODELS_DIR": str(MODEL_CACHE),
            "TINGYIN_LOG_LEVEL": "INFO",
            **(env or {}),
        }
        self.log_path = home.parent / f"server-{uuid.uuid4().hex[:8]}.log"
        home.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "tingyin.cli", "serve", "--port", "0"]
        if not worker:
            args.append("--no-worker")
        if not preload:
            args.append("--no-preload")  # wait_ready(path="/healthz"): /readyz waits for the model
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the server's port is known once wait_ready has seen it listening")
        return f"http://127.0.0.1:{self.port}"

    def _bound_port(self) -> int:
        """The port named by this server's own "Uvicorn running on" log line; 0 before it binds."""
        found = re.search(rb"Uvicorn running on http://[^:]+:(\d+)", self.log_path.read_bytes())
        return int(found.group(1)) if found else 0

    def wait_ready(self, timeout: float = 120.0, path: str = "/readyz") -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            self.port = self.port or self._bound_port()
            try:
                if self.port and httpx.get(self.url + path, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server not ready in {timeout} s: {self.log_path.read_text()[-3000:]}")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tingyin.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def create_app(self, name: str = "demo", *extra: str) -> dict[str, str]:
        import json

        return dict(json.loads(self.cli("apps", "create", name, *extra).stdout))

    def access_token(self, app: dict[str, str]) -> str:
        """A Baidu-style OAuth access token for ``app`` (Baidu ASR and EasyDL APIs)."""
        response = httpx.get(
            f"{self.url}/oauth/2.0/token",
            params={
                "grant_type": "client_credentials",
                "client_id": app["api_key"],
                "client_secret": app["secret_key"],
            },
        )
        # The server's log says what it saw (which database, which requests) should this ever fail.
        assert response.status_code == 200, f"{response.text}\n{self.log_path.read_text()[-3000:]}"
        return str(response.json()["access_token"])

    def wait_job(self, app: dict[str, str], job_id: str, timeout: float = 600) -> dict[str, Any]:
        """Poll ``/v1/jobs/{id}`` until the job ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = httpx.get(f"{self.url}/v1/jobs/{job_id}", headers=bearer(app)).json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return dict(job)
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} did not finish in {timeout} s")

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One running server (embedded worker, SQLite) shared by the HTTP tests of the whole run. Requests
    wait for an inference slot as long as they need (tests/foundation/test_inference.py checks admission),
    and its limits on failed authentications are off: many tests fail on purpose, all from 127.0.0.1
    (tests/security has a server of its own with them on)."""
    env = {
        "TINGYIN_JOB_LEASE_SECONDS": "10",
        "TINGYIN_INFERENCE_ADMISSION_TIMEOUT_S": "600",
        "TINGYIN_AUTH_FAILURES_PER_ADDRESS": "0",
        "TINGYIN_AUTH_FAILURES_PER_KEY": "0",
    }
    instance = Server(tmp_path_factory.mktemp("server") / "home", env=env).wait_ready()
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def demo_app(server: Server) -> dict[str, str]:
    return server.create_app("demo")
