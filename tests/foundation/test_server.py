"""The HTTP server, for real: started as `tingyin serve` with its embedded worker, called over HTTP."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx

from tests.conftest import FIXTURES, Server, bearer

ZH_CLIP = FIXTURES / "foundation" / "BAC009S0252W0131.flac"
EN_CLIP = FIXTURES / "foundation" / "LJ001-0156.flac"


def test_health_readiness_and_openapi(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"
    ready = httpx.get(f"{server.url}/readyz").json()
    assert (
        ready["ready"] is True and ready["checks"]["database"] == "ok" and ready["checks"]["broker"] == "ok"
    )
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/transcriptions" in spec["paths"] and "/v1/recognize" in spec["paths"]
    assert httpx.get(f"{server.url}/docs").status_code == 200


def test_cli_credentials_shape(server: Server) -> None:
    created = server.create_app("shape-check")
    assert set(created) == {"app_id", "api_key", "secret_key", "app_token"}
    listed = json.loads(server.cli("apps", "list").stdout)
    assert any(a["name"] == "shape-check" and "secret_key" not in a for a in listed)
    rotated = json.loads(server.cli("apps", "rotate", "shape-check").stdout)
    assert rotated["app_id"] == created["app_id"] and rotated["app_token"] != created["app_token"]
    assert httpx.get(f"{server.url}/v1/app", headers=bearer(created)).status_code == 401
    assert httpx.get(f"{server.url}/v1/app", headers=bearer(rotated)).json()["name"] == "shape-check"
    server.cli("apps", "delete", "shape-check", "--yes")
    assert httpx.get(f"{server.url}/v1/app", headers=bearer(rotated)).status_code == 401
    failed = server.cli("apps", "create", "bad name!", check=False)
    assert failed.returncode == 2 and "error" in failed.stderr and "Traceback" not in failed.stderr


def test_errors_are_json_with_request_id(server: Server, demo_app: dict[str, str]) -> None:
    missing = httpx.get(f"{server.url}/no/such/route")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert missing.headers["x-request-id"] == missing.json()["error"]["request_id"]
    unauthorised = httpx.post(f"{server.url}/v1/recognize", content=b"x")
    assert unauthorised.status_code == 401 and unauthorised.json()["error"]["code"] == "unauthorized"
    wrong = httpx.get(f"{server.url}/v1/app", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    echoed = httpx.get(f"{server.url}/healthz", headers={"X-Request-Id": "trace-me-42"})
    assert echoed.headers["x-request-id"] == "trace-me-42"
    bad_option = httpx.post(
        f"{server.url}/v1/recognize?language=klingon", headers=bearer(demo_app), content=b"x"
    )
    assert bad_option.status_code == 400 and "language" in bad_option.json()["error"]["message"]
    not_audio = httpx.post(f"{server.url}/v1/recognize", headers=bearer(demo_app), content=b"plain text" * 50)
    assert not_audio.status_code == 400 and not_audio.json()["error"]["code"] == "audio_corrupt"
    unknown_job = httpx.get(f"{server.url}/v1/jobs/does-not-exist", headers=bearer(demo_app))
    assert unknown_job.status_code == 404 and unknown_job.json()["error"]["code"] == "not_found"


def _raw_request(server: Server, head: str, body: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head.encode() + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < 12:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.settimeout(2)
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            pass
    return int(data.split(b" ", 2)[1]), data.split(b"\r\n\r\n", 1)[1]


def test_body_over_limit_refused_before_reading(server: Server, demo_app: dict[str, str]) -> None:
    # Declares 10 GB and sends nothing: the answer comes at once, so the server never waited for the body.
    started = time.monotonic()
    status, body = _raw_request(
        server,
        "POST /v1/recognize HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n"
        f"Authorization: Bearer {demo_app['app_token']}\r\nConnection: close\r\n\r\n",
    )
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
    assert time.monotonic() - started < 10


def test_recognize_real_speech(server: Server, demo_app: dict[str, str]) -> None:
    response = httpx.post(
        f"{server.url}/v1/recognize?language=en",
        headers=bearer(demo_app),
        content=EN_CLIP.read_bytes(),
        timeout=120,
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert "paper" in result["text"].lower() and "printing" in result["text"].lower()
    assert result["language"] == "en" and 5000 <= result["duration_ms"] <= 5300
    multipart = httpx.post(
        f"{server.url}/v1/recognize?language=zh",
        headers=bearer(demo_app),
        files={"file": ("clip.flac", ZH_CLIP.read_bytes())},
        timeout=120,
    )
    assert multipart.status_code == 200, multipart.text
    assert "金融" in multipart.json()["text"]


def test_transcription_job_on_embedded_worker(
    server: Server, demo_app: dict[str, str], tmp_path: Path
) -> None:
    response = httpx.post(
        f"{server.url}/v1/transcriptions?language=zh", headers=bearer(demo_app), content=ZH_CLIP.read_bytes()
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] in ("queued", "running", "succeeded")
    done = server.wait_job(demo_app, job["id"])
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert isinstance(result, dict) and "金融" in result["text"]
    other = server.create_app("someone-else")
    assert httpx.get(f"{server.url}/v1/transcriptions/{job['id']}", headers=bearer(other)).status_code == 404


def test_an_idle_keep_alive_connection_outlives_a_client_pool_expiry(server: Server) -> None:
    """A connection idle for 6 s (past httpx's 5 s pool expiry, and uvicorn's 5 s default) still answers:
    the server keeps it open for TINGYIN_HTTP_KEEP_ALIVE_S (75 s)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", "/healthz")
        first = connection.getresponse()
        assert first.status == 200 and json.loads(first.read())["status"] == "ok"
        time.sleep(6)
        connection.request("GET", "/healthz")  # the same socket: http.client reconnects only if told to
        second = connection.getresponse()
        assert second.status == 200 and json.loads(second.read())["status"] == "ok"
        assert second.getheader("connection", "").lower() != "close"
    finally:
        connection.close()
