"""An S3-compatible server for the storage tests: moto's standalone server (``moto_server``), a real
HTTP process on loopback that boto3 talks to exactly as it talks to MinIO or AWS."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import _reset, free_port

S3_KEYS = {"TINGYIN_S3_ACCESS_KEY_ID": "tingyin-test", "TINGYIN_S3_SECRET_ACCESS_KEY": "tingyin-test-secret"}


class MotoServer:
    def __init__(self, log_dir: Path) -> None:
        binary = shutil.which("moto_server")
        if binary is None:
            if os.environ.get("CI"):
                raise RuntimeError("CI needs moto_server (pip install 'moto[server]', the dev extra)")
            pytest.skip("moto_server is not installed")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (log_dir / "moto.log").open("wb")
        self.process = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited: {(log_dir / 'moto.log').read_text()[-2000:]}")
            try:
                httpx.get(self.url + "/moto-api/", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("moto_server did not start in 60 s")

    def client(self) -> object:
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=S3_KEYS["TINGYIN_S3_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["TINGYIN_S3_SECRET_ACCESS_KEY"],
        )

    def new_bucket(self) -> str:
        name = f"tingyin-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def keys(self, bucket: str) -> list[str]:
        client = self.client()
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)  # type: ignore[attr-defined]
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def env(self, bucket: str, prefix: str = "deploy") -> dict[str, str]:
        return {
            "TINGYIN_BLOB_URL": f"s3://{bucket}/{prefix}",
            "TINGYIN_S3_ENDPOINT_URL": self.url,
            "TINGYIN_S3_REGION": "us-east-1",
            "TINGYIN_S3_ADDRESSING_STYLE": "path",
            **S3_KEYS,
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(params=["local", "s3"])
def any_store(
    request: pytest.FixtureRequest,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """Runs the test with the blob store in the local directory, then in a bucket of moto's S3."""
    if request.param == "s3":
        moto: MotoServer = request.getfixturevalue("moto")
        bucket = moto.new_bucket()
        for name, value in moto.env(bucket).items():
            monkeypatch.setenv(name, value)
        _reset()
        return bucket
    return ""
