"""Credentials that really rotate, driven by the official ``baidu-aip`` SDK against a real server:
rotation and deletion revoke every token at once, the refresh grant needs the client credentials
and uses its token up, refresh tokens expire, revocation works, and no secret reaches the log."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import FIXTURES, Server
from tingyin import audio

ZH_CLIP = FIXTURES / "foundation" / "BAC009S0252W0131.flac"


def pcm16k(path: Path) -> bytes:
    samples = audio.decode(path).samples
    return bytes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(
        tmp_path_factory.mktemp("credentials") / "home",
        # Recognition is not what these tests measure: generous timeouts for a loaded machine.
        env={
            "TINGYIN_AUTH_FAILURES_PER_ADDRESS": "0",
            "TINGYIN_AUTH_FAILURES_PER_KEY": "0",
            "TINGYIN_ASR_DECODE_TIMEOUT_S": "300",
            "TINGYIN_ASR_RECOGNIZE_TIMEOUT_S": "600",
        },
        worker=False,
    ).wait_ready()
    yield server
    server.stop()


def speech_client(server: Server, app: dict[str, str]) -> Any:
    from aip import AipSpeech

    client = AipSpeech(app["app_id"], app["api_key"], app["secret_key"])
    # The SDK keeps its endpoints in name-mangled attributes; point them at our server.
    client._AipBase__accessTokenUrl = f"{server.url}/oauth/2.0/token"
    client._AipSpeech__asrUrl = f"{server.url}/server_api"
    client.setSocketTimeoutInMillis(600_000)  # its 60 s default is short on a loaded machine
    return client


def easydl_client(server: Server, app: dict[str, str]) -> Any:
    from aip.easydl import EasyDL

    client = EasyDL(app["app_id"], app["api_key"], app["secret_key"])
    client._AipBase__accessTokenUrl = f"{server.url}/oauth/2.0/token"
    return client


def token_call(server: Server, **params: str) -> httpx.Response:
    return httpx.post(f"{server.url}/oauth/2.0/token", data=params)


def test_rotation_revokes_what_the_sdk_holds(keyed: Server) -> None:
    server = keyed
    created = server.create_app("rotating")
    client = speech_client(server, created)
    first = client.asr(pcm16k(ZH_CLIP), "pcm", 16000, {"dev_pid": 1537})
    assert first["err_no"] == 0, first
    cached = client._authObj["access_token"]

    rotated = json.loads(server.cli("apps", "rotate", "rotating").stdout)
    # The SDK still holds the token it got with the old credentials: refused at once (the issue's
    # probe answered err_no 0 here).
    after = client.asr(pcm16k(ZH_CLIP), "pcm", 16000, {"dev_pid": 1537})
    assert client._authObj["access_token"] == cached and after["err_no"] == 3302, after
    # Asking for a new token with the old credentials fails; the SDK surfaces the OAuth error.
    assert client._auth(refresh=True)["error"] == "invalid_client"
    # A client configured with the new credentials works.
    fresh = speech_client(server, rotated).asr(pcm16k(ZH_CLIP), "pcm", 16000, {"dev_pid": 1537})
    assert fresh["err_no"] == 0, fresh


def test_revocation_and_the_sdks_own_refresh(keyed: Server) -> None:
    """``apps revoke`` drops every token; the EasyDL SDK, answered 110, fetches a new token with its
    (unchanged) credentials and retries by itself: its retry reaches the service lookup (216102)."""
    server = keyed
    app = server.create_app("revoking")
    client = easydl_client(server, app)
    url = f"{server.url}/rpc/2.0/ai_custom/v1/sound_cls/not_published"
    assert client.predictSound(url, b"RIFF")["error_code"] == 216102
    held = client._authObj["access_token"]
    revoked = json.loads(server.cli("apps", "revoke", "revoking").stdout)
    assert revoked == {"name": "revoking", "revoked_tokens": 2}
    held_answer = httpx.post(f"{url}?access_token={held}", json={"sound": "UklGRg=="}).json()
    assert held_answer["error_code"] == 110
    assert client.predictSound(url, b"RIFF")["error_code"] == 216102
    assert client._authObj["access_token"] != held  # the SDK refreshed after the 110


def test_refresh_grant(keyed: Server) -> None:
    server = keyed
    app = server.create_app("refreshing")
    stranger = server.create_app("refresh-stranger")
    pair = token_call(
        server, grant_type="client_credentials", client_id=app["api_key"], client_secret=app["secret_key"]
    ).json()
    refresh = pair["refresh_token"]
    assert int(refresh.split(".")[2]) == 30 * 24 * 3600  # the refresh TTL in Baidu's token layout

    def refresh_with(**credentials: str) -> httpx.Response:
        return token_call(server, grant_type="refresh_token", refresh_token=refresh, **credentials)

    # The probes: no secret, the wrong client: refused, and the token is not used up by them.
    assert refresh_with().status_code == 400
    assert refresh_with(client_id=app["api_key"]).json()["error"] == "invalid_request"
    wrong = refresh_with(client_id="nobody", client_secret="nothing")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert refresh_with(client_id=app["api_key"], client_secret="wrong").json()["error"] == "invalid_client"
    foreign = refresh_with(client_id=stranger["api_key"], client_secret=stranger["secret_key"])
    assert foreign.status_code == 400 and foreign.json()["error"] == "invalid_grant"
    # The owner's credentials: a new pair, once.
    renewed = refresh_with(client_id=app["api_key"], client_secret=app["secret_key"])
    assert renewed.status_code == 200 and renewed.headers["cache-control"] == "no-store"
    assert renewed.json()["access_token"] != pair["access_token"]
    again = refresh_with(client_id=app["api_key"], client_secret=app["secret_key"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # After a rotation neither the new refresh token nor the new secret with it works.
    rotated = json.loads(server.cli("apps", "rotate", "refreshing").stdout)
    old_secret = token_call(
        server,
        grant_type="refresh_token",
        refresh_token=renewed.json()["refresh_token"],
        client_id=app["api_key"],
        client_secret=app["secret_key"],
    )
    assert old_secret.json()["error"] == "invalid_client"
    new_secret = token_call(
        server,
        grant_type="refresh_token",
        refresh_token=renewed.json()["refresh_token"],
        client_id=rotated["api_key"],
        client_secret=rotated["secret_key"],
    )
    assert new_secret.json()["error"] == "invalid_grant"


def test_revoke_endpoint_and_deletion(keyed: Server) -> None:
    server = keyed
    app = server.create_app("endpoint-revoke")
    pair = token_call(
        server, grant_type="client_credentials", client_id=app["api_key"], client_secret=app["secret_key"]
    ).json()
    asr = {"format": "pcm", "rate": 16000, "channel": 1, "cuid": "c", "speech": "", "len": 0}

    def err_no(token: str) -> int:
        return int(httpx.post(f"{server.url}/pro_api", json={**asr, "token": token}).json()["err_no"])

    assert err_no(pair["access_token"]) == 2000  # accepted: the speech is what is missing
    unauthorised = httpx.post(
        f"{server.url}/oauth/2.0/revoke",
        data={"token": pair["access_token"], "client_id": app["api_key"], "client_secret": "wrong"},
    )
    assert unauthorised.status_code == 401 and err_no(pair["access_token"]) == 2000
    done = httpx.post(
        f"{server.url}/oauth/2.0/revoke",
        data={"token": pair["access_token"], "client_id": app["api_key"], "client_secret": app["secret_key"]},
    )
    assert done.status_code == 200 and err_no(pair["access_token"]) == 3302
    # Deleting the app: its refresh token is gone with it.
    server.cli("apps", "delete", "endpoint-revoke", "--yes")
    refreshed = token_call(
        server,
        grant_type="refresh_token",
        refresh_token=pair["refresh_token"],
        client_id=app["api_key"],
        client_secret=app["secret_key"],
    )
    assert refreshed.status_code == 401


def test_refresh_tokens_expire(tmp_path: Path) -> None:
    server = Server(
        tmp_path / "home", env={"TINGYIN_REFRESH_TOKEN_TTL_SECONDS": "1"}, worker=False, preload=False
    ).wait_ready(path="/healthz")
    try:
        app = server.create_app("short-refresh")
        pair = token_call(
            server, grant_type="client_credentials", client_id=app["api_key"], client_secret=app["secret_key"]
        ).json()
        time.sleep(1.5)
        late = token_call(
            server,
            grant_type="refresh_token",
            refresh_token=pair["refresh_token"],
            client_id=app["api_key"],
            client_secret=app["secret_key"],
        )
        assert late.status_code == 400 and late.json()["error"] == "invalid_grant"
    finally:
        server.stop()


def test_no_secret_in_the_log(keyed: Server) -> None:
    """After every call above (tokens in query strings, bodies, forms, failures included), the log
    holds none of the secrets, tokens or signatures."""
    server = keyed
    app = server.create_app("log-check")
    pair = token_call(
        server, grant_type="client_credentials", client_id=app["api_key"], client_secret=app["secret_key"]
    ).json()
    httpx.post(f"{server.url}/pro_api", params={"token": pair["access_token"], "cuid": "c"}, content=b"")
    httpx.post(
        f"{server.url}/api/v1/invoke",
        params={"appkey": app["api_key"], "token": app["app_token"], "namespace": "MusicTagging"},
        json={"payload": "{}", "data": base64.b64encode(b"x").decode()},
    )
    httpx.get(f"{server.url}/v1/app", headers={"Authorization": f"Bearer {app['app_token']}x"})
    log = server.log_path.read_text(encoding="utf-8", errors="replace")
    for secret in (app["secret_key"], app["app_token"], pair["access_token"], pair["refresh_token"]):
        assert secret not in log
    assert pair["access_token"].split(".")[1] not in log
