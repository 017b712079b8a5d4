"""SAMI MusicTagging over real HTTP, with the seed's own Python example request."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import FIXTURES, Server
from tests.transcription.helpers import FileServer

MUSIC = FIXTURES / "music" / "loop_garzul_16k.flac"
SONG = FIXTURES / "music" / "morning_coffee_12s_16k.flac"
SPEECH = FIXTURES / "music" / "LJ001-0182_speech.flac"
SEED_TASKS = [
    {"task_type": "MusicTaggingGenre17"},
    {"task_type": "MusicTaggingMood10"},
    {"task_type": "MusicTaggingTheme24"},
    {"task_type": "MusicTaggingLang24"},
    {"task_type": "MusicTaggingVocal"},
    {"task_type": "MusicTaggingMTT"},
]


@pytest.fixture(scope="module")
def sami(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    server = Server(
        tmp_path_factory.mktemp("sami") / "home", env={"TINGYIN_FETCH_ALLOW": "127.0.0.1"}, worker=False
    ).wait_ready()
    yield server, server.create_app("sami-client")
    server.stop()


def seed_request(app: dict[str, str], audio_bytes: bytes, **payload_extra: object) -> dict[str, object]:
    """The request exactly as the seed's Python example builds it."""
    payload = json.dumps({"task_flow": {"type": "merge", "task": SEED_TASKS}, **payload_extra})
    return {
        "appkey": app["api_key"],
        "token": app["app_token"],
        "namespace": "MusicTagging",
        "payload": payload,
        "data": base64.b64encode(audio_bytes).decode("utf-8"),
    }


def test_seed_example_round_trip(sami: tuple[Server, dict[str, str]]) -> None:
    server, app = sami
    resp = requests.post(
        f"{server.url}/api/v1/invoke", json=seed_request(app, SONG.read_bytes()), timeout=300
    )
    assert resp.status_code == 200, resp.text
    sami_resp = resp.json()
    assert set(sami_resp) >= {"task_id", "namespace", "payload", "data", "status_code", "status_text"}
    assert sami_resp["status_code"] == 20000000 and sami_resp["namespace"] == "MusicTagging"
    inner = json.loads(sami_resp["payload"])
    results = inner["task_flow"]["result"]
    assert [r["task_type"] for r in results] == [
        t["task_type"] for t in SEED_TASKS if t["task_type"] in {r["task_type"] for r in results}
    ]
    total = sum(r["pred_dim"] for r in results)
    assert len(inner["pred"]) == total and all(0.0 <= p <= 1.0 for p in inner["pred"])
    for result in results:
        assert len(result["task_output"]["tags"]) == result["pred_dim"]
    vocal = next(r for r in results if r["task_type"] == "MusicTaggingVocal")
    assert vocal["task_output"]["tags"] == ["vocal", "non_vocal"]
    assert "embed" not in inner


def test_embedding_top_num_and_query_credentials(sami: tuple[Server, dict[str, str]]) -> None:
    server, app = sami
    body = seed_request(app, MUSIC.read_bytes(), extra={"enable_embed": True, "top_num": 2})
    credentials = {
        "appkey": body.pop("appkey"),
        "token": body.pop("token"),
        "namespace": body.pop("namespace"),
        "version": "v4",
    }
    resp = requests.post(f"{server.url}/api/v1/invoke", params=credentials, json=body, timeout=300).json()
    assert resp["status_code"] == 20000000, resp
    inner = json.loads(resp["payload"])
    assert inner["embed"] and all(isinstance(v, float) for v in inner["embed"])
    for result in inner["task_flow"]["result"]:
        assert result["pred_dim"] <= 2 and result["embed_dim"] > 0


def test_audio_from_url(sami: tuple[Server, dict[str, str]]) -> None:
    server, app = sami
    files = FileServer({"loop.flac": MUSIC.read_bytes()})
    try:
        body = seed_request(app, b"", url=f"{files.url}/loop.flac")
        resp = requests.post(f"{server.url}/api/v1/invoke", json=body, timeout=300).json()
        assert resp["status_code"] == 20000000, resp
        refused = seed_request(app, b"", url="http://10.0.0.1/song.mp3")
        answer = requests.post(f"{server.url}/api/v1/invoke", json=refused, timeout=60)
        assert answer.status_code == 400 and "refused" in answer.json()["status_text"]
    finally:
        files.close()


def test_refusals(sami: tuple[Server, dict[str, str]]) -> None:
    server, app = sami
    url = f"{server.url}/api/v1/invoke"
    speech = requests.post(url, json=seed_request(app, SPEECH.read_bytes()), timeout=300)
    assert speech.status_code == 400 and speech.json()["status_code"] == 40000001
    silence = requests.post(url, json=seed_request(app, bytes(16000 * 2 * 6)), timeout=300).json()
    assert silence["status_code"] in (40000000, 40000001)
    wrong_token = {**seed_request(app, MUSIC.read_bytes()), "token": "nope"}
    assert requests.post(url, json=wrong_token, timeout=60).json()["status_code"] == 40100000
    wrong_ns = {**seed_request(app, MUSIC.read_bytes()), "namespace": "SpeechRecognition"}
    assert requests.post(url, json=wrong_ns, timeout=60).json()["status_code"] == 40000000
    unknown_task = seed_request(app, MUSIC.read_bytes())
    unknown_task["payload"] = json.dumps({"task_flow": {"type": "merge", "task": [{"task_type": "Nope"}]}})
    assert requests.post(url, json=unknown_task, timeout=60).json()["status_code"] == 40000000
    not_json = {**seed_request(app, MUSIC.read_bytes()), "payload": "{nope"}
    assert requests.post(url, json=not_json, timeout=60).json()["status_code"] == 40000000
    bad_b64 = {**seed_request(app, MUSIC.read_bytes()), "data": "***"}
    assert requests.post(url, json=bad_b64, timeout=60).json()["status_code"] == 40000000
