"""No byte before authentication, against a real ``tingyin serve``: a refused request leaves the data
directory as it was (50 MB bodies, every API), credentials outside the body are checked before the
body is read, and failed authentications and held bodies are limited."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, bearer
from tests.security.helpers import BlobWatch, data_files, du, head_only

FIFTY_MB = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    """A server with no worker (nothing else writes to its data directory) and no failure limits."""
    server = Server(
        tmp_path_factory.mktemp("refusals") / "home",
        env={"TINGYIN_AUTH_FAILURES_PER_ADDRESS": "0", "TINGYIN_AUTH_FAILURES_PER_KEY": "0"},
        worker=False,
        preload=False,
    ).wait_ready(path="/healthz")
    yield server, server.create_app("refusals")
    server.stop()


@pytest.fixture(scope="module")
def fifty_mb_base64() -> str:
    return base64.b64encode(os.urandom(FIFTY_MB * 3 // 4)).decode()


def refused_without_trace(server: Server, send: object) -> httpx.Response:
    """Run ``send()`` and check that the data directory is as before and that nothing ever
    appeared in the blob store meanwhile."""
    before = data_files(server.home)
    with BlobWatch(server.home) as watch:
        response = send()  # type: ignore[operator]
    assert watch.seen == set(), watch.seen
    assert data_files(server.home) == before
    assert isinstance(response, httpx.Response)
    return response


def test_sami_body_credentials_refused_leave_nothing(
    guarded: tuple[Server, dict[str, str]], fifty_mb_base64: str
) -> None:
    """The issue's probe: a bad token and 50 MB of base64 used to leave a 37.5 MB blob per retry."""
    server, app = guarded
    body = {
        "appkey": app["api_key"],
        "token": "not-the-token",
        "namespace": "MusicTagging",
        "payload": json.dumps({"task_flow": {"type": "merge", "task": [{"task_type": "MusicTaggingVocal"}]}}),
        "data": fifty_mb_base64,
    }
    files_before = du(server.home)
    for _ in range(3):
        response = refused_without_trace(
            server, lambda: httpx.post(f"{server.url}/api/v1/invoke", json=body, timeout=300)
        )
        assert response.status_code == 401 and response.json()["status_code"] == 40100000
    assert du(server.home) == files_before
    # The same body in credentials of another form: the appkey of nobody.
    body["appkey"] = "0" * 24
    response = refused_without_trace(
        server, lambda: httpx.post(f"{server.url}/api/v1/invoke", json=body, timeout=300)
    )
    assert response.json()["status_code"] == 40100000


def test_qiniu_bad_signature_over_the_body_leaves_nothing(
    guarded: tuple[Server, dict[str, str]], fifty_mb_base64: str
) -> None:
    """A real AccessKey and a wrong signature over a 50 MB signed body (the body must be read to
    check the signature): held in a private temporary, gone with the refusal."""
    server, app = guarded
    content = json.dumps({"voice_id": "v", "audio": fifty_mb_base64}).encode()
    response = refused_without_trace(
        server,
        lambda: httpx.post(
            f"{server.url}/?cmd=async",
            content=content,
            headers={"Content-Type": "application/json", "Authorization": f"Qiniu {app['api_key']}:Zm9vYmFy"},
            timeout=300,
        ),
    )
    assert response.status_code == 401 and response.json()["ret"] == 401
    assert not list((server.home / "tmp").rglob("body-*"))


def test_baidu_json_credentials_refused_leave_nothing(guarded: tuple[Server, dict[str, str]]) -> None:
    """Baidu JSON carries its token inside a body of at most 10 MB (held in memory, never on disk)."""
    server, _ = guarded
    speech = base64.b64encode(os.urandom(7 * 1024 * 1024)).decode()
    body = {"format": "pcm", "rate": 16000, "channel": 1, "cuid": "c", "token": "24.bad", "speech": speech}
    response = refused_without_trace(
        server, lambda: httpx.post(f"{server.url}/pro_api", json=body, timeout=300)
    )
    assert response.json()["err_no"] == 3302


CREDENTIALS_OUTSIDE_THE_BODY = {
    # name: (method, target, headers, declared body length, (status, dialect field, code))
    "native recognize": (
        "POST",
        "/v1/recognize",
        {"Authorization": "Bearer bad"},
        FIFTY_MB,
        (401, "error", None),
    ),
    "native transcriptions": (
        "POST",
        "/v1/transcriptions",
        {"Authorization": "Bearer bad"},
        FIFTY_MB,
        (401, "error", None),
    ),
    "native zip import": (
        "POST",
        "/v1/sound/datasets/1/imports",
        {"Authorization": "Bearer bad"},
        FIFTY_MB,
        (401, "error", None),
    ),
    "native vocabulary": (
        "PUT",
        "/v1/vocabulary",
        {"Authorization": "Bearer bad", "Content-Type": "application/json"},
        1024 * 1024,
        (401, "error", None),
    ),
    "native JSON body": (
        "POST",
        "/v1/sound/models",
        {"Authorization": "Bearer bad", "Content-Type": "application/json"},
        60 * 1024,
        (401, "error", None),
    ),
    "sami query credentials": (
        "POST",
        "/api/v1/invoke?appkey={api_key}&token=bad&namespace=MusicTagging",
        {"Content-Type": "application/json"},
        FIFTY_MB,
        (401, "status_code", 40100000),
    ),
    "qiniu unknown AccessKey": (
        "POST",
        "/?cmd=async",
        {"Content-Type": "application/json", "Authorization": "Qiniu nobody:Zm9v"},
        FIFTY_MB,
        (401, "ret", 401),
    ),
    "qiniu unsigned body": (
        "POST",
        "/?cmd=async",
        {"Content-Type": "application/octet-stream", "Authorization": "Qiniu {api_key}:Zm9v"},
        FIFTY_MB,
        (401, "ret", 401),
    ),
    "baidu raw upload": (
        "POST",
        "/pro_api?cuid=c&token=24.bad",
        {"Content-Type": "audio/pcm;rate=16000"},
        9 * 1024 * 1024,
        (200, "err_no", 3302),
    ),
    "baidu json, token in query": (
        "POST",
        "/server_api?token=24.bad",
        {"Content-Type": "application/json"},
        9 * 1024 * 1024,
        (200, "err_no", 3302),
    ),
    "easydl": (
        "POST",
        "/rpc/2.0/ai_custom/v1/sound_cls/anything?access_token=24.bad",
        {"Content-Type": "application/json"},
        4 * 1024 * 1024,
        (200, "error_code", 110),
    ),
    "volcano header token": (
        "POST",
        "/api/v1/auc/submit",
        {"Content-Type": "application/json", "Authorization": "Bearer; bad"},
        1000 * 1024,
        (200, "resp", 1002),
    ),
}


@pytest.mark.parametrize("case", sorted(CREDENTIALS_OUTSIDE_THE_BODY))
def test_credentials_outside_the_body_are_checked_before_it_is_read(
    guarded: tuple[Server, dict[str, str]], case: str
) -> None:
    server, app = guarded
    method, target, headers, length, (status, field, code) = CREDENTIALS_OUTSIDE_THE_BODY[case]
    target = target.format(api_key=app["api_key"])
    headers = {k: v.format(api_key=app["api_key"]) for k, v in headers.items()}
    before = du(server.home)
    got_status, body = head_only(server, method, target, headers, length)
    assert got_status == status, body
    if field == "error":
        assert body["error"]["code"] == "unauthorized"
    elif field == "resp":
        assert body["resp"]["code"] == code
    else:
        assert body[field] == code, body
    assert du(server.home) == before


def test_bodies_over_the_limit_are_refused_unread(guarded: tuple[Server, dict[str, str]]) -> None:
    """Baidu (10 MB), Volcano (1 MB) and EasyDL (4 MB) refuse a 50 MB body by its declared length."""
    server, _ = guarded
    before = du(server.home)
    assert (
        head_only(server, "POST", "/pro_api", {"Content-Type": "application/json"}, FIFTY_MB)[1]["err_no"]
        == 3310
    )
    volcano = head_only(server, "POST", "/api/v1/auc/submit", {"Content-Type": "application/json"}, FIFTY_MB)
    assert volcano[1]["resp"]["code"] == 1011
    easydl = head_only(server, "POST", "/rpc/2.0/ai_custom/v1/sound_cls/x?access_token=t", {}, FIFTY_MB)
    assert easydl[1]["error_code"] == 216103
    assert du(server.home) == before


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    """A server with small limits: 6 failures per address, 3 per key, in a 4 s window; 1 MB held."""
    server = Server(
        tmp_path_factory.mktemp("strict") / "home",
        env={
            "TINGYIN_AUTH_FAILURES_PER_ADDRESS": "6",
            "TINGYIN_AUTH_FAILURES_PER_KEY": "3",
            "TINGYIN_AUTH_FAILURE_WINDOW_S": "4",
            "TINGYIN_UNAUTHENTICATED_BODY_BYTES": str(1024 * 1024),
        },
        worker=False,
        preload=False,
    ).wait_ready(path="/healthz")
    yield server, server.create_app("strict")
    server.stop()


def test_failed_authentications_are_limited_per_key_and_per_address(
    strict: tuple[Server, dict[str, str]],
) -> None:
    server, app = strict
    other = server.create_app("strict-other")

    def sami(appkey: str, token: str) -> int:
        response = httpx.post(
            f"{server.url}/api/v1/invoke",
            params={"appkey": appkey, "token": token, "namespace": "MusicTagging"},
            json={"payload": "{}"},
        )
        return int(response.json()["status_code"])

    # Three wrong tokens for one appkey: the fourth try is refused whatever it holds, the right token too.
    assert [sami(app["api_key"], f"guess-{i}") for i in range(3)] == [40100000] * 3
    assert sami(app["api_key"], app["app_token"]) == 42900000
    # The address has 3 failures of 6: another app still gets through (its payload is what is wrong).
    assert sami(other["api_key"], other["app_token"]) == 40000000
    # Three more failures, on other keys: the address is over its limit, for every API and route.
    for key in ("k1", "k2", "k3"):
        assert sami(key, "guess") == 40100000
    assert sami(other["api_key"], other["app_token"]) == 42900000
    assert httpx.get(f"{server.url}/v1/app", headers=bearer(other)).status_code == 429
    baidu = httpx.post(f"{server.url}/pro_api", json={"token": "t"}).json()
    assert baidu["err_no"] == 3304
    # Refused before the body: a declared 50 MB upload is answered at once.
    assert head_only(server, "POST", "/v1/recognize", bearer(other), FIFTY_MB)[0] == 429
    # Liveness still answers (an orchestrator may share the address).
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    time.sleep(4.5)  # the window passes
    assert httpx.get(f"{server.url}/v1/app", headers=bearer(other)).status_code == 200
    assert sami(app["api_key"], app["app_token"]) == 40000000


def test_held_bodies_have_a_byte_budget(strict: tuple[Server, dict[str, str]]) -> None:
    """Bodies waiting for their credentials hold at most TINGYIN_UNAUTHENTICATED_BODY_BYTES at once."""
    server, app = strict
    before = data_files(server.home)
    body = {
        "appkey": app["api_key"],
        "token": app["app_token"],
        "namespace": "MusicTagging",
        "payload": "{}",
        "data": base64.b64encode(os.urandom(1024 * 1024)).decode(),
    }
    response = httpx.post(f"{server.url}/api/v1/invoke", json=body, timeout=120)
    assert response.status_code == 503 and response.json()["status_code"] == 50300000
    assert data_files(server.home) == before
    assert not list(Path(server.home / "tmp").rglob("body-*"))
