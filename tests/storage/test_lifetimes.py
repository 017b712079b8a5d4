"""Lifetimes of stored bytes over real HTTP: refused and failed uploads leave nothing (in a bucket of
moto's S3 server, unfinished multipart uploads included), and after retention a data directory holds
only datasets and models, whatever kinds of jobs and requests went through it."""

from __future__ import annotations

import base64
import io
import json
import socket
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import requests
from qiniu import QiniuMacAuth
from qiniu.auth import QiniuMacRequestsAuth
from sqlalchemy import create_engine, text

from tests.conftest import FIXTURES, Server, bearer, free_port
from tests.storage.conftest import MotoServer
from tests.transcription.helpers import EN_CLIP, SPEAKER_B, FileServer
from tingyin import audio


def qiniu_submit(server: Server, app: dict[str, str], audio_bytes: bytes, secret: str | None = None) -> Any:
    return requests.post(
        f"{server.url}/?cmd=async",
        json={"voice_id": "v", "audio": base64.b64encode(audio_bytes).decode()},
        auth=QiniuMacRequestsAuth(QiniuMacAuth(app["api_key"], secret or app["secret_key"])),
        timeout=300,
    )


def wait_all(server: Server, app: dict[str, str], job_ids: list[str]) -> dict[str, str]:
    """Poll every job until each has been seen to end (retention is short: a job is purged seconds
    after it ends, so all are watched at once)."""
    ended: dict[str, str] = {}
    deadline = time.monotonic() + 900
    while len(ended) < len(job_ids) and time.monotonic() < deadline:
        for job_id in job_ids:
            if job_id not in ended:
                job = httpx.get(f"{server.url}/v1/jobs/{job_id}", headers=bearer(app)).json()
                assert "status" in job, f"job {job_id} was purged before it was seen to end: {job}"
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    ended[job_id] = job["status"]
        time.sleep(0.5)
    return ended


def noise_wav(seconds: float) -> bytes:
    return audio.encode_wav(np.random.default_rng(0).normal(0, 0.05, int(seconds * 16000)).astype(np.float32))


def test_refused_and_failed_uploads_leave_nothing(moto: MotoServer, tmp_path: Path) -> None:
    bucket = moto.new_bucket()
    # No worker, and a broker that is down: every submission fails after its upload arrived.
    env = {**moto.env(bucket), "TINGYIN_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    server = Server(tmp_path / "home", env=env, worker=False).wait_ready(path="/healthz")
    try:
        app = server.create_app("refusals")
        big = noise_wav(400)  # 12.8 MB: a multipart upload is under way when the signature is checked
        wrong = qiniu_submit(server, app, big, secret="not-the-secret")
        assert wrong.status_code == 401, wrong.text
        undecodable = qiniu_submit(server, app, b"plain text, not audio " * 1000)
        assert undecodable.json()["ret"] == 119, undecodable.text
        no_broker = qiniu_submit(server, app, EN_CLIP.read_bytes())
        assert no_broker.status_code == 503 and no_broker.json()["ret"] == 101, no_broker.text
        native = httpx.post(f"{server.url}/v1/transcriptions", headers=bearer(app), content=big, timeout=120)
        assert native.status_code == 503, native.text
        missing = httpx.post(
            f"{server.url}/v1/sound/datasets/9999/imports", headers=bearer(app), content=b"PK" * 1000
        )
        assert missing.status_code == 404
        # A client that hangs up half-way through a 20 MB body.
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(
                b"POST /v1/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n"
                + f"Authorization: Bearer {app['app_token']}\r\n\r\n".encode()
                + big[:10_000_000]
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pending = moto.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])  # type: ignore[attr-defined]
            if not pending and not moto.keys(bucket):
                break
            time.sleep(0.5)
        assert moto.keys(bucket) == []
        assert pending == []
        assert not [p for p in (server.home / "scratch").rglob("*") if p.is_file()]
    finally:
        server.stop()


def test_after_retention_only_datasets_and_models_remain(tmp_path: Path) -> None:
    env = {
        "TINGYIN_JOB_RETENTION_S": "8",
        "TINGYIN_JOB_LEASE_SECONDS": "10",
        "TINGYIN_FETCH_ALLOW": "127.0.0.1",
        "TINGYIN_STORAGE_SWEEP_INTERVAL_S": "2",
    }
    server = Server(tmp_path / "home", env=env).wait_ready()
    files = FileServer({"english.flac": EN_CLIP.read_bytes()})
    try:
        app = server.create_app("every-kind")
        jobs: list[str] = []
        # Synchronous: native recognition, SAMI tagging.
        recognized = httpx.post(
            f"{server.url}/v1/recognize?language=en",
            headers=bearer(app),
            content=EN_CLIP.read_bytes(),
            timeout=300,
        )
        assert recognized.status_code == 200, recognized.text
        tagged = requests.post(
            f"{server.url}/api/v1/invoke",
            json={
                "appkey": app["api_key"],
                "token": app["app_token"],
                "namespace": "MusicTagging",
                "payload": json.dumps(
                    {"task_flow": {"type": "merge", "task": [{"task_type": "MusicTaggingMood10"}]}}
                ),
                "data": base64.b64encode((FIXTURES / "music" / "loop_garzul_16k.flac").read_bytes()).decode(),
            },
            timeout=300,
        )
        assert tagged.json()["status_code"] == 20000000, tagged.text
        # Jobs: native transcription, Qiniu (one good, one undecodable), Volcano from a URL.
        native = httpx.post(
            f"{server.url}/v1/transcriptions?language=en", headers=bearer(app), content=EN_CLIP.read_bytes()
        )
        jobs.append(native.json()["id"])
        accepted = qiniu_submit(server, app, SPEAKER_B[0].read_bytes()).json()
        assert accepted["ret"] == 0, accepted
        jobs.append(accepted["session_id"])
        assert qiniu_submit(server, app, b"\x00\x01garbage" * 500).json()["ret"] == 119
        volcano = httpx.post(
            f"{server.url}/api/v1/auc/submit",
            json={
                "app": {"appid": app["app_id"], "token": app["app_token"], "cluster": "c"},
                "user": {"uid": "u"},
                "audio": {"format": "flac", "url": f"{files.url}/english.flac"},
                "additions": {"language": "en-US"},
            },
        ).json()["resp"]
        jobs.append(volcano["id"])
        # A dataset, a trained version and its export: these stay.
        sound = f"{server.url}/v1/sound"
        model = httpx.post(f"{sound}/models", headers=bearer(app), json={"name": "m"}).json()
        dataset = httpx.post(f"{sound}/datasets", headers=bearer(app), json={"name": "d"}).json()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for path in sorted((FIXTURES / "esc10").glob("*.flac")):
                label, name = path.name.split("__")
                if label in ("dog_bark", "rain"):
                    archive.writestr(f"{label}/{name}", path.read_bytes())
        imported = httpx.post(
            f"{sound}/datasets/{dataset['id']}/imports", headers=bearer(app), content=buffer.getvalue()
        ).json()
        jobs.append(imported["id"])
        assert set(wait_all(server, app, jobs).values()) == {"succeeded"}
        version = httpx.post(
            f"{sound}/models/{model['id']}/versions", headers=bearer(app), json={"dataset_id": dataset["id"]}
        ).json()
        assert wait_all(server, app, [version["job_id"]]) == {version["job_id"]: "succeeded"}
        exported = httpx.get(
            f"{sound}/models/{model['id']}/versions/1/export", headers=bearer(app), timeout=300
        )
        assert exported.status_code == 200

        engine = create_engine(f"sqlite:///{server.home / 'tingyin.db'}")
        blobs = server.home / "blobs"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                remaining = connection.execute(text("SELECT count(*) FROM jobs")).scalar()
            stored = sorted(p.relative_to(blobs).as_posix() for p in blobs.rglob("*") if p.is_file())
            if remaining == 0 and all(s.startswith(("datasets/", "models/")) for s in stored):
                break
            time.sleep(1)
        engine.dispose()
        assert remaining == 0, "finished jobs were not purged"
        assert stored and all(s.startswith(("datasets/", "models/")) for s in stored), stored
        assert any(s.endswith("/export.zip") for s in stored)
        assert not [p for p in (server.home / "scratch").rglob("*") if p.is_file()]
        check = server.cli("storage", "check", check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        report = json.loads(check.stdout)
        assert report["owners"]["job"]["objects"] == 0
        assert report["owners"]["dataset"]["objects"] == len([s for s in stored if s.startswith("datasets/")])
    finally:
        files.close()
        server.stop()
