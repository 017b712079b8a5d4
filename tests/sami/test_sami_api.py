"""SAMI MusicTagging over real HTTP, with the seed's own Python example request."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import FIXTURES, Server
from tests.transcription.helpers import FileServer
from tingyin.music.taxonomy import SAMI_GENRE34, SAMI_LANG30, SAMI_MOOD10, SAMI_VOCAL

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
# The task types of the seed's model list that this server answers, and their documented sizes.
DOCUMENTED_TASKS = [
    {"task_type": "MusicTaggingVocal"},
    {"task_type": "MusicTaggingMood10"},
    {"task_type": "MusicTaggingGenre34"},
    {"task_type": "MusicTaggingLang30"},
]
DOCUMENTED_SIZES = [2, 10, 34, 30]


@pytest.fixture(scope="module")
def sami(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    server = Server(
        tmp_path_factory.mktemp("sami") / "home", env={"TINGYIN_FETCH_ALLOW": "127.0.0.1"}, worker=False
    ).wait_ready()
    yield server, server.create_app("sami-client")
    server.stop()


def seed_request(
    app: dict[str, str],
    audio_bytes: bytes,
    tasks: list[dict[str, str]] | None = None,
    **payload_extra: object,
) -> dict[str, object]:
    """The request as the seed's Python example builds it (its own task list unless ``tasks``)."""
    payload = json.dumps({"task_flow": {"type": "merge", "task": tasks or SEED_TASKS}, **payload_extra})
    return {
        "appkey": app["api_key"],
        "token": app["app_token"],
        "namespace": "MusicTagging",
        "payload": payload,
        "data": base64.b64encode(audio_bytes).decode("utf-8"),
    }


def test_seed_example_names_the_tasks_it_cannot_answer(sami: tuple[Server, dict[str, str]]) -> None:
    """The seed's example asks for Genre17, Theme24 and Lang24: no published tag list or almost no scorable
    tag, so an explicit error rather than labels a client would read shifted."""
    server, app = sami
    resp = requests.post(
        f"{server.url}/api/v1/invoke", json=seed_request(app, SONG.read_bytes()), timeout=300
    )
    answer = resp.json()
    assert resp.status_code == 400 and answer["status_code"] == 40000000, answer
    for task_type in ("MusicTaggingGenre17", "MusicTaggingTheme24", "MusicTaggingLang24"):
        assert task_type in answer["status_text"]
    assert "not supported" in answer["status_text"] and "payload" not in answer


def test_documented_tasks_read_by_position(sami: tuple[Server, dict[str, str]]) -> None:
    """The seed's request shape with the documented task types: every tag in the documented order when
    top_num covers the task, and the seed's default top_num of 1 otherwise."""
    server, app = sami
    body = seed_request(app, SONG.read_bytes(), DOCUMENTED_TASKS, extra={"top_num": 100})
    resp = requests.post(f"{server.url}/api/v1/invoke", json=body, timeout=300)
    assert resp.status_code == 200, resp.text
    sami_resp = resp.json()
    assert set(sami_resp) >= {"task_id", "namespace", "payload", "data", "status_code", "status_text"}
    assert sami_resp["status_code"] == 20000000 and sami_resp["namespace"] == "MusicTagging"
    inner = json.loads(sami_resp["payload"])
    results = inner["task_flow"]["result"]
    assert [r["task_type"] for r in results] == [t["task_type"] for t in DOCUMENTED_TASKS]
    assert [r["pred_dim"] for r in results] == DOCUMENTED_SIZES
    assert len(inner["pred"]) == sum(DOCUMENTED_SIZES) and all(0.0 <= p <= 1.0 for p in inner["pred"])
    assert [r["task_output"]["tags"] for r in results] == [
        list(SAMI_VOCAL),
        list(SAMI_MOOD10),
        list(SAMI_GENRE34),
        list(SAMI_LANG30),
    ]
    assert "embed" not in inner
    # The instrumental track has no language: all 30 language probabilities are 0.
    assert max(inner["pred"][-30:]) == 0.0

    default = requests.post(
        f"{server.url}/api/v1/invoke",
        json=seed_request(app, SONG.read_bytes(), DOCUMENTED_TASKS),
        timeout=300,
    ).json()
    assert default["status_code"] == 20000000, default
    results = json.loads(default["payload"])["task_flow"]["result"]
    assert [r["pred_dim"] for r in results] == [1, 1, 1, 0]
    assert results[0]["task_output"]["tags"] == ["non_vocal"] and results[3]["task_output"]["tags"] == []


def test_embedding_top_num_and_query_credentials(sami: tuple[Server, dict[str, str]]) -> None:
    server, app = sami
    body = seed_request(app, MUSIC.read_bytes(), DOCUMENTED_TASKS, extra={"enable_embed": True, "top_num": 2})
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
        body = seed_request(app, b"", DOCUMENTED_TASKS, url=f"{files.url}/loop.flac")
        resp = requests.post(f"{server.url}/api/v1/invoke", json=body, timeout=300).json()
        assert resp["status_code"] == 20000000, resp
        refused = seed_request(app, b"", DOCUMENTED_TASKS, url="http://10.0.0.1/song.mp3")
        answer = requests.post(f"{server.url}/api/v1/invoke", json=refused, timeout=60)
        assert answer.status_code == 400 and "refused" in answer.json()["status_text"]
    finally:
        files.close()


def test_refusals(sami: tuple[Server, dict[str, str]]) -> None:
    server, app = sami
    url = f"{server.url}/api/v1/invoke"
    speech = requests.post(url, json=seed_request(app, SPEECH.read_bytes(), DOCUMENTED_TASKS), timeout=300)
    assert speech.status_code == 400 and speech.json()["status_code"] == 40000001
    assert "speech" in speech.json()["status_text"]
    silence = requests.post(
        url, json=seed_request(app, bytes(16000 * 2 * 6), DOCUMENTED_TASKS), timeout=300
    ).json()
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


RENDERED = sorted((FIXTURES / "music").glob("render_*.ogg"))


def test_rendered_instruments_are_tagged_and_speech_refused(sami: tuple[Server, dict[str, str]]) -> None:
    """Solo instruments and ensembles (General MIDI renders of real pieces, sent as Ogg) are tagged; read
    English and Mandarin are refused as speech."""
    server, app = sami
    url = f"{server.url}/api/v1/invoke"
    assert len(RENDERED) >= 8
    for path in RENDERED:
        answer = requests.post(
            url, json=seed_request(app, path.read_bytes(), DOCUMENTED_TASKS), timeout=300
        ).json()
        assert answer["status_code"] == 20000000, (path.name, answer)
        results = json.loads(answer["payload"])["task_flow"]["result"]
        assert [r["pred_dim"] for r in results][:3] == [1, 1, 1]
    for path in (SPEECH, FIXTURES / "speech" / "BAC009S0252W0131.flac"):
        resp = requests.post(url, json=seed_request(app, path.read_bytes(), DOCUMENTED_TASKS), timeout=300)
        answer = resp.json()
        assert resp.status_code == 400 and answer["status_code"] == 40000001, (path.name, answer)
        assert "speech" in answer["status_text"]
