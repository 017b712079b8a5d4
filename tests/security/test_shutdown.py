"""Graceful shutdown with real processes: SIGTERM to ``tingyin serve`` (only to it, as Docker and
Kubernetes send it) drains an in-flight request, stops the embedded worker and exits 0 with no
process left; SIGTERM to ``tingyin worker`` exits 0 too; the job they were running goes back to the
queue and finishes on another worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.conftest import FIXTURES, MODEL_CACHE, Server, bearer
from tests.security.helpers import log_records
from tingyin import audio

CLIPS = [FIXTURES / "foundation" / name for name in ("BAC009S0252W0131.flac", "BAC009S0150W0191.flac")]
# A grace period long enough for a loaded test machine: what is checked is that the request is
# drained and the job handed back, not how fast.
ENV = {"TINGYIN_JOB_LEASE_SECONDS": "6", "TINGYIN_SHUTDOWN_GRACE_S": "150"}


def long_recording(seconds: float) -> bytes:
    """Mandarin speech repeated to ``seconds`` (a job that runs for a while)."""
    speech = np.concatenate([audio.decode(p).samples for p in CLIPS])
    return audio.encode_wav(
        np.tile(speech, int(seconds * 16000 / speech.shape[0]) + 1)[: int(seconds * 16000)]
    )


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def job(server: Server, app: dict[str, str], job_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{server.url}/v1/jobs/{job_id}", headers=bearer(app), timeout=30).json())


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout} s")
        time.sleep(0.3)


class Worker:
    """A ``tingyin worker`` process on ``home``."""

    def __init__(self, home: Path, name: str) -> None:
        self.log_path = home.parent / f"{name}.log"
        self._log = self.log_path.open("wb")
        env = {**os.environ, "TINGYIN_HOME": str(home), "TINGYIN_MODELS_DIR": str(MODEL_CACHE), **ENV}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tingyin.cli", "worker", "--name", name],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._log.close()


def slow_upload(data: bytes, release: threading.Event) -> Iterator[bytes]:
    """Half the body, then the rest once ``release`` is set: the request is in flight meanwhile."""
    yield data[: len(data) // 2]
    release.wait(60)
    yield data[len(data) // 2 :]


def test_sigterm_drains_stops_the_worker_and_hands_the_job_on(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = Server(home, env=ENV).wait_ready()
    workers: list[Worker] = []
    second: Server | None = None
    try:
        app = first.create_app("shutdown")
        submitted = httpx.post(
            f"{first.url}/v1/transcriptions?language=zh",
            headers=bearer(app),
            content=long_recording(150),
            timeout=120,
        ).json()
        job_id = submitted["id"]
        wait_until(lambda: job(first, app, job_id)["progress"] > 0.02, 300, "transcribing")
        worker_pid = next(r["pid"] for r in log_records(first) if r.get("event") == "worker_started")
        assert alive(worker_pid)

        # A request in flight when the signal comes: half its body sent, the rest after the signal.
        release = threading.Event()
        answer: dict[str, Any] = {}

        def recognise() -> None:
            response = httpx.post(
                f"{first.url}/v1/recognize?language=zh",
                headers=bearer(app),
                content=slow_upload(CLIPS[0].read_bytes(), release),
                timeout=300,
            )
            answer.update(status=response.status_code, body=response.json())

        caller = threading.Thread(target=recognise)
        caller.start()
        time.sleep(1.0)
        os.kill(first.process.pid, signal.SIGTERM)  # the server process only, not its group
        time.sleep(0.5)
        release.set()
        caller.join(300)
        assert answer["status"] == 200 and "金融" in answer["body"]["text"], answer
        assert first.process.wait(timeout=400) == 0
        wait_until(lambda: not alive(worker_pid), 5, "worker gone")

        # A standalone worker takes the job (its sweeper sees the ended lease); SIGTERM it mid-job.
        second = Server(home, env=ENV, worker=False, preload=False).wait_ready(path="/healthz")
        workers.append(Worker(home, "standalone-1"))
        wait_until(
            lambda: job(second, app, job_id)["attempts"] >= 2 and job(second, app, job_id)["progress"] > 0.02,
            300,
            "running again",
        )
        assert job(second, app, job_id)["status"] == "running"
        workers[0].process.send_signal(signal.SIGTERM)
        assert workers[0].process.wait(timeout=400) == 0
        assert "handed back to the queue" in workers[0].log() or "exiting anyway" in workers[0].log()
        assert job(second, app, job_id)["status"] != "failed"

        # Another worker finishes it.
        workers.append(Worker(home, "standalone-2"))
        wait_until(lambda: job(second, app, job_id)["status"] in ("succeeded", "failed"), 600, "finished")
        finished = job(second, app, job_id)
        assert finished["status"] == "succeeded" and finished["attempts"] == 3, finished
        assert "金融" in finished["result"]["text"]
    finally:
        for worker in workers:
            worker.stop()
        if second is not None:
            second.stop()
        first.stop()
