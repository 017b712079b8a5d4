"""Two API nodes and two workers that share nothing but PostgreSQL, Redis and an S3-compatible server
(moto's, on loopback): each its own TINGYIN_HOME, each a separate real process.

Scenarios: a Qiniu async job submitted on node A and pulled on node B; a Volcano job with a callback;
synchronous requests that store nothing; a dataset imported via A, trained on whichever worker,
published and predicted via B (and exported via B); a worker SIGKILLed mid-job, the job finishing once
on the other; retention purging the jobs and their objects, leaving only datasets and models in the
bucket and nothing in any node's scratch.

The one thing provisioned to both API nodes is the server key (``server.key``), as a deployment
provisions its secrets; the weights cache is the test run's shared one (weights, not data: filling it
per node would only cost time).
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from cryptography.fernet import Fernet
from qiniu import QiniuMacAuth
from qiniu.auth import QiniuMacRequestsAuth
from sqlalchemy import create_engine, text

from tests.conftest import FIXTURES, MODEL_CACHE, Server, bearer, fresh_postgres_database, fresh_redis_url
from tests.foundation.test_jobs import long_speech
from tests.storage.conftest import MotoServer
from tests.transcription.helpers import EN_CLIP, SPEAKER_B, CallbackReceiver, FileServer

PREFIX = "deploy"
RETENTION_S = 40
VOCAL = "MusicTaggingVocal"
ESC10 = sorted((FIXTURES / "esc10").glob("*.flac"))


class WorkerNode:
    """``tingyin worker`` with its own home."""

    def __init__(self, home: Path, env: dict[str, str], name: str) -> None:
        self.home, self.name = home, name
        home.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **env, "TINGYIN_HOME": str(home), "TINGYIN_MODELS_DIR": str(MODEL_CACHE)}
        self.log_path = home.parent / f"{name}.log"
        self.start()

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tingyin.cli", "worker", "--name", self.name],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if not self._log.closed:
            self._log.close()


@dataclass
class Cluster:
    a: Server
    b: Server
    workers: list[WorkerNode]
    moto: MotoServer
    bucket: str
    database: str
    app: dict[str, str]

    def bucket_keys(self) -> list[str]:
        return self.moto.keys(self.bucket)

    def scalar(self, sql: str, **params: Any) -> Any:
        engine = create_engine(self.database)
        try:
            with engine.connect() as connection:
                return connection.execute(text(sql), params).scalar()
        finally:
            engine.dispose()

    def homes(self) -> list[Path]:
        return [self.a.home, self.b.home, *(w.home for w in self.workers)]


@pytest.fixture(scope="module")
def cluster(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    bucket = moto.new_bucket()
    database = fresh_postgres_database()
    env = {
        **moto.env(bucket, PREFIX),
        "TINGYIN_DATABASE_URL": database,
        "TINGYIN_BROKER_URL": fresh_redis_url(),
        "TINGYIN_JOB_LEASE_SECONDS": "4",
        "TINGYIN_BROKER_VISIBILITY_TIMEOUT": "30",
        "TINGYIN_CPU_THREADS": "1",
        "TINGYIN_FETCH_ALLOW": "127.0.0.1",
        "TINGYIN_JOB_RETENTION_S": str(RETENTION_S),
        "TINGYIN_STORAGE_SWEEP_INTERVAL_S": "5",
        "TINGYIN_STORAGE_ORPHAN_GRACE_S": "30",
    }
    key = Fernet.generate_key()
    for name in ("a", "b"):
        (root / name).mkdir()
        (root / name / "server.key").write_bytes(key)
        (root / name / "server.key").chmod(0o600)
    a = Server(root / "a", env=env, worker=False)
    b = Server(root / "b", env=env, worker=False)
    workers = [WorkerNode(root / f"w{i}", env, f"w{i}") for i in (1, 2)]
    try:
        a.wait_ready(timeout=300)
        b.wait_ready(timeout=300)
        app = a.create_app("cluster")
        yield Cluster(a, b, workers, moto, bucket, database, app)
    finally:
        for worker in workers:
            worker.stop()
        a.stop()
        b.stop()


def qiniu_call(server: Server, app: dict[str, str], cmd: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(
        f"{server.url}/?cmd={cmd}",
        json=body,
        auth=QiniuMacRequestsAuth(QiniuMacAuth(app["api_key"], app["secret_key"])),
        timeout=300,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def volcano_query(server: Server, app: dict[str, str], task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        answer = httpx.post(
            f"{server.url}/api/v1/auc/query",
            json={"appid": app["app_id"], "token": app["app_token"], "cluster": "c", "id": task_id},
        ).json()["resp"]
        if answer["code"] not in (2000, 2001):
            return dict(answer)
        time.sleep(0.5)
    raise AssertionError("the Volcano task did not finish")


def test_qiniu_job_submitted_on_a_is_pulled_on_b(cluster: Cluster) -> None:
    accepted = qiniu_call(
        cluster.a,
        cluster.app,
        "async",
        {"voice_id": "v1", "format": "flac", "audio": base64.b64encode(SPEAKER_B[0].read_bytes()).decode()},
    )
    assert accepted["ret"] == 0, accepted
    session_id = accepted["session_id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        answer = qiniu_call(cluster.b, cluster.app, "pull", {"session_id": session_id})
        if answer["ret"] not in (1011, 1012):
            break
        time.sleep(0.5)
    assert answer["ret"] == 0 and "金融" in answer["all_text"], answer
    # The upload lived in the bucket (the only place the worker could read it from) with its job, and
    # went when the job ended: nothing plays a Qiniu request's audio back.
    deadline = time.monotonic() + 30  # the worker deletes it just after it writes the result
    while [key for key in cluster.bucket_keys() if session_id in key] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [key for key in cluster.bucket_keys() if session_id in key] == []
    # Nothing of it on any node's disk.
    for home in cluster.homes():
        assert not (home / "blobs").exists() or not any((home / "blobs").rglob("*"))


def test_volcano_job_with_callback(cluster: Cluster) -> None:
    files = FileServer({"english.flac": EN_CLIP.read_bytes()})
    receiver = CallbackReceiver()
    try:
        submitted = httpx.post(
            f"{cluster.a.url}/api/v1/auc/submit",
            json={
                "app": {"appid": cluster.app["app_id"], "token": cluster.app["app_token"], "cluster": "c"},
                "user": {"uid": "u"},
                "audio": {"format": "flac", "url": f"{files.url}/english.flac"},
                "request": {"callback": receiver.url},
                "additions": {"language": "en-US"},
            },
        ).json()["resp"]
        assert submitted["code"] == 1000, submitted
        done = volcano_query(cluster.b, cluster.app, submitted["id"])
        assert done["code"] == 1000 and "paper" in done["text"].lower()
        assert receiver.event.wait(60), "the callback never came"
        assert receiver.bodies[0]["resp"]["text"] == done["text"]
    finally:
        receiver.close()
        files.close()


def test_synchronous_requests_store_nothing(cluster: Cluster) -> None:
    before = set(cluster.bucket_keys())
    recognized = httpx.post(
        f"{cluster.b.url}/v1/recognize?language=en",
        headers=bearer(cluster.app),
        files={"file": ("clip.flac", EN_CLIP.read_bytes())},
        timeout=300,
    )
    assert recognized.status_code == 200 and "paper" in recognized.json()["text"].lower()
    tagged = httpx.post(
        f"{cluster.a.url}/api/v1/invoke",
        json={
            "appkey": cluster.app["api_key"],
            "token": cluster.app["app_token"],
            "namespace": "MusicTagging",
            "payload": json.dumps({"task_flow": {"type": "merge", "task": [{"task_type": VOCAL}]}}),
            "data": base64.b64encode((FIXTURES / "music" / "loop_garzul_16k.flac").read_bytes()).decode(),
        },
        timeout=300,
    )
    assert tagged.status_code == 200 and tagged.json()["status_code"] == 20000000, tagged.text
    assert set(cluster.bucket_keys()) == before
    for home in (cluster.a.home, cluster.b.home):
        assert not [p for p in (home / "scratch").rglob("*") if p.is_file()]


def test_dataset_imported_on_a_trained_anywhere_served_on_b(cluster: Cluster) -> None:
    app = cluster.app
    a, b = f"{cluster.a.url}/v1/sound", f"{cluster.b.url}/v1/sound"
    model = httpx.post(f"{a}/models", headers=bearer(app), json={"name": "farm"}).json()
    dataset = httpx.post(f"{a}/datasets", headers=bearer(app), json={"name": "farm"}).json()
    buffer = io.BytesIO()
    chosen = [p for p in ESC10 if p.name.startswith(("dog_bark__", "rooster__"))][:12]
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in chosen:
            label, name = path.name.split("__")
            archive.writestr(f"{label}/{name}", path.read_bytes())
    imported = httpx.post(
        f"{a}/datasets/{dataset['id']}/imports", headers=bearer(app), content=buffer.getvalue(), timeout=300
    )
    assert imported.status_code == 202, imported.text
    report = cluster.a.wait_job(app, imported.json()["id"])
    assert report["status"] == "succeeded", report
    clips = sum(report["result"]["class_counts"].values())
    assert clips >= 10
    keys = cluster.bucket_keys()
    assert len([k for k in keys if k.startswith(f"{PREFIX}/datasets/{dataset['id']}/")]) == clips
    assert not any(imported.json()["id"] in k for k in keys)  # the archive went with its job

    version = httpx.post(
        f"{b}/models/{model['id']}/versions", headers=bearer(app), json={"dataset_id": dataset["id"]}
    ).json()
    trained = cluster.b.wait_job(app, version["job_id"], timeout=900)
    assert trained["status"] == "succeeded", trained
    published = httpx.put(
        f"{a}/services/farm_cluster",
        headers=bearer(app),
        json={"name": "farm", "model_id": model["id"], "version": 1},
        timeout=300,
    ).json()
    rooster = next(p for p in chosen if p.name.startswith("rooster__"))
    token = cluster.b.access_token(app)
    answer = httpx.post(
        f"{cluster.b.url}{published['url']}?access_token={token}",
        json={"sound": base64.b64encode(rooster.read_bytes()).decode(), "top_num": 2},
        timeout=300,
    ).json()
    assert answer["results"][0]["name"] == "rooster", answer
    exported = httpx.get(f"{b}/models/{model['id']}/versions/1/export", headers=bearer(app), timeout=600)
    assert exported.status_code == 200
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        assert {"sound_classifier.onnx", "labels.txt"} <= set(archive.namelist())
    assert any(k.endswith("/export.zip") for k in cluster.bucket_keys())


def test_sigkilled_worker_job_finishes_once_on_the_other(cluster: Cluster) -> None:
    response = httpx.post(
        f"{cluster.b.url}/v1/transcriptions?language=en",
        headers=bearer(cluster.app),
        content=long_speech(60),
        timeout=120,
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    owner = None
    deadline = time.monotonic() + 300
    while owner is None and time.monotonic() < deadline:
        engine = create_engine(cluster.database)
        with engine.connect() as connection:
            row = connection.execute(
                text("SELECT status, lease_owner FROM jobs WHERE id = :id"), {"id": job_id}
            ).one()
        engine.dispose()
        if row.status == "running" and row.lease_owner:
            owner = row.lease_owner
        time.sleep(0.2)
    assert owner is not None, "the job never started"
    victim = next(w for w in cluster.workers if w.process.pid == int(owner.split(":")[1]))
    time.sleep(1.0)
    victim.kill()
    done = cluster.a.wait_job(cluster.app, job_id, timeout=600)
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    assert done["result"]["text"].lower().count("paper") >= 5
    # One input object for the job, though two workers ran it.
    assert [key for key in cluster.bucket_keys() if job_id in key] == [f"{PREFIX}/jobs/{job_id}/input"]
    victim.start()  # as its supervisor would; its sweeper clears what the killed process left


def test_retention_leaves_only_datasets_and_models(cluster: Cluster) -> None:
    deadline = time.monotonic() + RETENTION_S + 240
    while time.monotonic() < deadline:
        jobs = cluster.scalar("SELECT count(*) FROM jobs")
        keys = cluster.bucket_keys()
        kinds = {key.split("/")[1] for key in keys}
        if jobs == 0 and kinds <= {"datasets", "models"}:
            break
        time.sleep(2)
    assert jobs == 0, "finished jobs were not purged"
    assert kinds == {"datasets", "models"}, keys
    owners = cluster.scalar("SELECT count(DISTINCT owner_kind) FROM stored_objects")
    assert owners == 2
    check = cluster.a.cli("storage", "check", check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)
    assert report["owners"]["job"]["objects"] == 0 and report["orphans"]["objects"] == 0
    assert report["owners"]["dataset"]["objects"] > 0 and report["owners"]["model_version"]["objects"] >= 3
    assert report["pending_uploads"]["count"] == 0
    deadline = time.monotonic() + 60
    leftovers: list[Path] = []
    while time.monotonic() < deadline:
        leftovers = [p for home in cluster.homes() for p in (home / "scratch").rglob("*") if p.is_file()]
        if not leftovers:
            break
        time.sleep(2)
    assert not leftovers
