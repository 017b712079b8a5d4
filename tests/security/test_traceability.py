"""Every error traceable, on a real server that fails for real (a broken model, then a blob store
that is not a directory): each 5xx is in the access log with its request id and logged once with its
traceback; the caller reads the request id, not the detail; the vendor ids the seeds tell users to
quote are on the access-log line of their request."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import FIXTURES, Server, bearer
from tests.security.helpers import EXCEPTION_NAME, access_line, log_records
from tingyin import audio

CLIP = FIXTURES / "foundation" / "BAC009S0252W0131.flac"


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    broken_model = tmp_path_factory.mktemp("broken-model")
    (broken_model / "model.bin").write_bytes(b"this is not a CTranslate2 model")
    (broken_model / "config.json").write_text("{}")
    server = Server(
        tmp_path_factory.mktemp("failing") / "home",
        env={"TINGYIN_ASR_MODEL": str(broken_model)},
        worker=False,
        preload=False,
    ).wait_ready(path="/healthz")
    yield server
    server.stop()


def errors_of(server: Server, request_id: str) -> list[dict[str, Any]]:
    return [r for r in log_records(server) if r.get("level") == "error" and r.get("request_id") == request_id]


def assert_clean(text: str, server: Server) -> None:
    assert not EXCEPTION_NAME.search(text) and str(server.home) not in text, text


def test_engine_failure_is_logged_once_and_answered_with_the_request_id(failing: Server) -> None:
    server = failing
    app = server.create_app("engine")
    native = httpx.post(
        f"{server.url}/v1/recognize",
        headers={**bearer(app), "X-Request-Id": "trace-engine"},
        content=CLIP.read_bytes(),
        timeout=300,
    )
    assert native.status_code == 500 and native.headers["x-request-id"] == "trace-engine"
    assert "trace-engine" in native.json()["error"]["message"]
    assert_clean(native.text, server)
    assert access_line(server, "trace-engine")["status"] == 500
    logged = errors_of(server, "trace-engine")
    assert len(logged) == 1 and "Traceback" in logged[0]["exception"], logged

    samples = audio.decode(CLIP).samples
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    baidu = httpx.post(
        f"{server.url}/server_api",
        headers={"X-Request-Id": "trace-baidu"},
        json={
            "format": "pcm",
            "rate": 16000,
            "channel": 1,
            "cuid": "c",
            "token": server.access_token(app),
            "speech": base64.b64encode(pcm).decode(),
            "len": len(pcm),
        },
        timeout=300,
    ).json()
    assert baidu["err_no"] == 3307 and "trace-baidu" in baidu["err_msg"]
    assert_clean(baidu["err_msg"], server)
    assert len(errors_of(server, "trace-baidu")) == 1
    # The sn the seed tells users to quote leads the operator to the request.
    assert access_line(server, "trace-baidu")["ids"]["sn"] == baidu["sn"]


def test_vendor_ids_are_logged_with_the_request_id(failing: Server) -> None:
    server = failing
    app = server.create_app("ids")
    easydl = httpx.post(
        f"{server.url}/rpc/2.0/ai_custom/v1/sound_cls/x?access_token={server.access_token(app)}",
        headers={"X-Request-Id": "trace-easydl"},
        json={},
    ).json()
    assert access_line(server, "trace-easydl")["ids"]["log_id"] == str(easydl["log_id"])
    sami = httpx.post(
        f"{server.url}/api/v1/invoke",
        headers={"X-Request-Id": "trace-sami"},
        json={"appkey": app["api_key"], "token": app["app_token"], "namespace": "MusicTagging", "payload": 1},
    ).json()
    assert access_line(server, "trace-sami")["ids"]["task_id"] == sami["task_id"]
    # A request id a client sends is honoured only when it is plain (no log injection).
    odd = httpx.get(f"{server.url}/healthz", headers={"X-Request-Id": 'x", "forged": "1'})
    assert odd.headers["x-request-id"] != 'x", "forged": "1' and len(odd.headers["x-request-id"]) == 32


def test_unexpected_exception_is_a_500_in_the_dialect_logged_once(failing: Server) -> None:
    server = failing
    app = server.create_app("unexpected")
    # Synchronous requests spool their bodies under scratch/requests: a file in its place is a fault no
    # input can cause.
    spools = Path(server.home / "scratch" / "requests")
    shutil.rmtree(spools, ignore_errors=True)
    spools.write_text("the request spool is not a directory any more")
    native = httpx.post(
        f"{server.url}/v1/recognize",
        headers={**bearer(app), "X-Request-Id": "trace-unhandled"},
        content=CLIP.read_bytes(),
    )
    assert native.status_code == 500 and native.json()["error"]["code"] == "internal_error"
    assert "trace-unhandled" in native.json()["error"]["message"]
    assert_clean(native.text, server)
    assert access_line(server, "trace-unhandled")["status"] == 500
    logged = errors_of(server, "trace-unhandled")
    assert len(logged) == 1 and "NotADirectoryError" in logged[0]["exception"], logged

    sami = httpx.post(
        f"{server.url}/api/v1/invoke",
        params={"appkey": app["api_key"], "token": app["app_token"], "namespace": "MusicTagging"},
        headers={"X-Request-Id": "trace-sami-500"},
        json={"payload": "{}", "data": ""},
    )
    assert sami.status_code == 500 and sami.json()["status_code"] == 50000000
    assert_clean(sami.text, server)
    assert access_line(server, "trace-sami-500")["status"] == 500
    assert len(errors_of(server, "trace-sami-500")) == 1
    # Nothing else reported these failures a second time (uvicorn's own "Exception in ASGI application").
    assert "Exception in ASGI application" not in server.log_path.read_text(errors="replace")
    spools.unlink()
    spools.mkdir()
