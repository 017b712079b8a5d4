#!/usr/bin/env python
"""Peak memory of large uploads: a dataset zip import (default 1 GB) and a Qiniu async upload
(default 100 MB of audio, ~134 MB of base64 JSON), through real ``tingyin serve`` and ``tingyin worker``
processes, with the blob store in the local directory or (``--s3``) in moto's S3 server.

For each process it prints the resident memory before the upload and its peak (VmHWM, reset just before
the upload through /proc/PID/clear_refs), so the difference is what the upload cost. The zip holds
distinct noise clips just under the 4 MB per-file limit, stored uncompressed; the Qiniu audio is a WAV of
noise. The Qiniu job is cancelled once accepted (the figure is the upload's, not a transcription's).

    python scripts/bench_storage.py [--zip-mb 1024] [--qiniu-mb 100] [--s3] [--workdir DIR]

(``--zip-mb 0`` or ``--qiniu-mb 0`` skips that part.)
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import wave
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

CLIP_SECONDS = 120  # 16 kHz 16-bit mono: 3.84 MB, under the 4 MB per-file limit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) // 1024
    return fields["VmRSS"], fields["VmHWM"]


def reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def noise_wav(seconds: float, seed: int) -> bytes:
    samples = np.random.default_rng(seed).normal(0, 2000, int(seconds * 16000)).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(samples.tobytes())
    return buffer.getvalue()


def build_zip(path: Path, megabytes: int) -> int:
    clips = max(2, megabytes * 1024 * 1024 // (CLIP_SECONDS * 32000))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for index in range(clips):
            archive.writestr(f"class_{index % 2}/{index:05d}.wav", noise_wav(CLIP_SECONDS, index))
    return clips


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(1024 * 1024):
            yield block


class Processes:
    def __init__(self) -> None:
        self.items: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            args, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
        )
        self.items.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for process in reversed(self.items):
            self.stop(process)


def wait_http(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zip-mb", type=int, default=1024)
    parser.add_argument("--qiniu-mb", type=int, default=100)
    parser.add_argument("--s3", action="store_true", help="blob store in moto's S3 server")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tingyin-bench-storage-"))
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "home"
    processes = Processes()
    env = {**os.environ, "TINGYIN_HOME": str(home), "TINGYIN_LOG_LEVEL": "WARNING"}
    try:
        if args.s3:
            moto = free_port()
            processes.start(
                [shutil.which("moto_server") or "moto_server", "-H", "127.0.0.1", "-p", str(moto)],
                env,
                workdir / "moto.log",
            )
            wait_http(f"http://127.0.0.1:{moto}/moto-api/")
            import boto3

            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            keys = {"TINGYIN_S3_ACCESS_KEY_ID": "bench", "TINGYIN_S3_SECRET_ACCESS_KEY": "bench"}
            boto3.client(
                "s3",
                endpoint_url=f"http://127.0.0.1:{moto}",
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
            ).create_bucket(Bucket=bucket)
            env.update(
                TINGYIN_BLOB_URL=f"s3://{bucket}/bench",
                TINGYIN_S3_ENDPOINT_URL=f"http://127.0.0.1:{moto}",
                TINGYIN_S3_REGION="us-east-1",
                TINGYIN_S3_ADDRESSING_STYLE="path",
                **keys,
            )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cli = [sys.executable, "-m", "tingyin.cli"]
        created = subprocess.run([*cli, "apps", "create", "bench"], env=env, capture_output=True, check=True)
        app = json.loads(created.stdout)
        server = processes.start(
            [*cli, "serve", "--no-worker", "--no-preload", "--port", str(port)], env, workdir / "serve.log"
        )
        worker = processes.start([*cli, "worker", "--name", "bench"], env, workdir / "worker.log")
        wait_http(f"{base}/healthz")
        headers = {"Authorization": f"Bearer {app['app_token']}"}
        store = "S3 (moto_server)" if args.s3 else "local directory"
        print(f"blob store: {store}; load average {os.getloadavg()}")

        if args.zip_mb:
            measure_zip(args.zip_mb, base, headers, workdir, server.pid, worker.pid)
        if args.qiniu_mb:
            processes.stop(worker)  # the figure is the upload's, not a transcription's
            measure_qiniu(args.qiniu_mb, base, headers, app, server.pid)
        print(f"\nload average after: {os.getloadavg()}")
    finally:
        processes.stop_all()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def wait_job(base: str, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    while True:
        job = httpx.get(f"{base}/v1/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return dict(job)
        time.sleep(1)


def measure_zip(
    megabytes: int, base: str, headers: dict[str, str], workdir: Path, server: int, worker: int
) -> None:
    archive = workdir / "dataset.zip"
    clips = build_zip(archive, megabytes)
    size_mb = archive.stat().st_size / 2**20
    dataset = httpx.post(f"{base}/v1/sound/datasets", headers=headers, json={"name": "bench"}).json()
    time.sleep(5)  # the worker finishes starting
    before = {"serve": rss(server), "worker": rss(worker)}
    reset = reset_peak(server) and reset_peak(worker)
    started = time.perf_counter()
    response = httpx.post(
        f"{base}/v1/sound/datasets/{dataset['id']}/imports",
        headers=headers,
        content=file_chunks(archive),
        timeout=3600,
    )
    uploaded = time.perf_counter() - started
    assert response.status_code == 202, response.text
    job = wait_job(base, headers, response.json()["id"])
    imported = time.perf_counter() - started
    assert job["status"] == "succeeded", job
    print(
        f"\ndataset zip: {size_mb:.0f} MiB, {clips} clips ({len(job['result']['accepted'])} accepted); "
        f"upload {uploaded:.1f} s, import done after {imported:.1f} s; peak reset before upload: {reset}"
    )
    for name, pid in (("serve", server), ("worker", worker)):
        print(f"  {name:6s} RSS before {before[name][0]:5d} MiB   peak during {rss(pid)[1]:5d} MiB")
    archive.unlink()


def measure_qiniu(
    megabytes: int, base: str, headers: dict[str, str], app: dict[str, str], server: int
) -> None:
    import requests
    from qiniu import QiniuMacAuth
    from qiniu.auth import QiniuMacRequestsAuth

    audio = noise_wav((megabytes * 2**20 - 64) / 32000, 1)  # just under the limit, header included
    body = b'{"voice_id": "bench", "audio": "' + base64.b64encode(audio) + b'"}'
    del audio
    before = rss(server)
    reset_peak(server)
    started = time.perf_counter()
    answer = requests.post(
        f"{base}/?cmd=async",
        data=body,
        headers={"Content-Type": "application/json"},
        auth=QiniuMacRequestsAuth(QiniuMacAuth(app["api_key"], app["secret_key"])),
        timeout=3600,
    ).json()
    elapsed = time.perf_counter() - started
    assert answer["ret"] == 0, answer
    print(
        f"\nqiniu async: {megabytes} MiB of audio in {len(body) / 2**20:.0f} MiB of JSON, "
        f"accepted in {elapsed:.1f} s"
    )
    print(f"  serve  RSS before {before[0]:5d} MiB   peak during {rss(server)[1]:5d} MiB")
    cancelled = httpx.delete(f"{base}/v1/transcriptions/{answer['session_id']}", headers=headers).json()
    assert cancelled["status"] == "cancelled", cancelled


if __name__ == "__main__":
    main()
