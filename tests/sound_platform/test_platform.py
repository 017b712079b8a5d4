"""The EasyDL-style sound platform over real HTTP: zip import with its report, training with an
evaluation report, validation, publishing with a hot swap under load, ONNX export, the EasyDL wire
API and the official ``baidu-aip`` EasyDL client."""

from __future__ import annotations

import base64
import io
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import FIXTURES, Server, bearer
from tingyin import audio

CLIPS = sorted((FIXTURES / "esc10").glob("*.flac"))
CLASSES = ("dog_bark", "rooster", "rain")


def clips_of(label: str) -> list[Path]:
    return [p for p in CLIPS if p.name.startswith(label + "__")]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    server = Server(
        tmp_path_factory.mktemp("sound") / "home",
        env={"TINGYIN_MAX_MODELS_PER_TYPE": "3", "TINGYIN_JOB_LEASE_SECONDS": "20"},
    ).wait_ready()
    yield server, server.create_app("sound-owner")
    server.stop()


def make_zip(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def first_import(server: Server, app: dict[str, str], dataset_id: int) -> dict[str, Any]:
    entries = {
        f"{p.name.split('__')[0]}/{p.name.split('__')[1]}": p.read_bytes()
        for p in clips_of("dog_bark")[:6] + clips_of("rooster")[:6]
    }
    entries["dog_bark/copy_of_first.flac"] = clips_of("dog_bark")[0].read_bytes()  # duplicate content
    entries["狗叫/a.flac"] = clips_of("dog_bark")[6].read_bytes()  # class name not allowed
    entries["dog bark/b.flac"] = clips_of("dog_bark")[6].read_bytes()
    entries["rooster/broken.wav"] = b"RIFF\x00\x00\x00\x00WAVEgarbage" * 10
    entries["rooster/too_big.wav"] = audio.encode_wav(np.zeros(16000 * 140, dtype=np.float32))  # > 4 MB
    entries["../evil.wav"] = clips_of("rain")[0].read_bytes()
    entries["rooster/notes.txt"] = b"not audio"
    response = httpx.post(
        f"{server.url}/v1/sound/datasets/{dataset_id}/imports",
        headers=bearer(app),
        content=make_zip(entries, symlink="rooster/link.wav"),
        timeout=120,
    )
    assert response.status_code == 202, response.text
    job = server.wait_job(app, response.json()["id"])
    assert job["status"] == "succeeded", job
    return dict(job["result"])


def test_whole_flow(platform: tuple[Server, dict[str, str]], tmp_path: Path) -> None:
    server, app = platform
    base = f"{server.url}/v1/sound"
    model = httpx.post(
        f"{base}/models",
        headers=bearer(app),
        json={
            "name": "animals",
            "type": "sound_classification",
            "description": "farm sounds",
            "contact": "ops",
        },
    ).json()
    assert model["name"] == "animals" and model["versions"] == []
    dataset = httpx.post(f"{base}/datasets", headers=bearer(app), json={"name": "farm"}).json()

    report = first_import(server, app, dataset["id"])
    assert report["class_counts"] == {"dog_bark": 6, "rooster": 6}
    assert len(report["duplicates"]) == 1
    reasons = {r["name"]: r["reason"] for r in report["rejected"]}
    assert any("狗叫" in name for name in reasons) and any("dog bark" in name for name in reasons)
    assert "rooster/broken.wav" in reasons and "rooster/too_big.wav" in reasons
    assert "../evil.wav" in reasons and "rooster/link.wav" in reasons and "rooster/notes.txt" in reasons
    assert any("50" in warning for warning in report["warnings"])

    # A second upload merges classes of the same name and adds a new one; known content is not re-added.
    more = {
        f"{p.name.split('__')[0]}/{p.name.split('__')[1]}": p.read_bytes()
        for p in clips_of("dog_bark")[5:] + clips_of("rain")
    }
    second = httpx.post(
        f"{base}/datasets/{dataset['id']}/imports", headers=bearer(app), content=make_zip(more), timeout=120
    ).json()
    merged = server.wait_job(app, second["id"])["result"]
    assert merged["dataset_classes"] == {"dog_bark": 8, "rain": 8, "rooster": 6}
    assert len(merged["duplicates"]) == 1
    assert httpx.get(f"{base}/datasets/{dataset['id']}", headers=bearer(app)).json()["total"] == 22

    v1 = httpx.post(
        f"{base}/models/{model['id']}/versions",
        headers=bearer(app),
        json={"dataset_id": dataset["id"], "classes": list(CLASSES)},
    ).json()
    assert v1["name"] == "V1" and v1["status"] in ("queued", "training")
    assert server.wait_job(app, v1["job_id"])["status"] == "succeeded"
    trained = httpx.get(f"{base}/models/{model['id']}/versions/1", headers=bearer(app)).json()
    assert trained["status"] == "ready"
    evaluation = trained["report"]
    assert 0.0 <= evaluation["accuracy"] <= 1.0 and len(evaluation["confusion_matrix"]) == 3
    assert {c["name"] for c in evaluation["per_class"]} == set(CLASSES)
    assert evaluation.get("caution")  # fewer than 100 clips per class

    rooster = audio.encode_wav(audio.decode(clips_of("rooster")[-1]).samples)
    scored = httpx.post(
        f"{base}/models/{model['id']}/versions/1/predict?top_num=2",
        headers=bearer(app),
        content=rooster,
        timeout=60,
    ).json()["results"]
    assert len(scored) == 2 and scored[0]["score"] >= scored[1]["score"]
    assert scored[0]["name"] == "rooster", scored

    published = httpx.put(
        f"{base}/services/farm_sounds",
        headers=bearer(app),
        json={"name": "farm", "model_id": model["id"], "version": 1},
    ).json()
    assert published["url"] == "/rpc/2.0/ai_custom/v1/sound_cls/farm_sounds"
    token = server.access_token(app)
    url = f"{server.url}{published['url']}?access_token={token}"
    sound = base64.b64encode(rooster).decode()
    answer = httpx.post(url, json={"sound": sound, "top_num": 3}, timeout=60).json()
    assert isinstance(answer["log_id"], int) and next(r["name"] for r in answer["results"]) == "rooster"
    assert [r["score"] for r in answer["results"]] == sorted(
        (r["score"] for r in answer["results"]), reverse=True
    )

    from aip.easydl import EasyDL

    client = EasyDL(app["app_id"], app["api_key"], app["secret_key"])
    client._AipBase__accessTokenUrl = f"{server.url}/oauth/2.0/token"
    sdk = client.predictSound(f"{server.url}{published['url']}", rooster, {"top_num": 3})
    assert sdk["results"][0]["name"] == "rooster" and len(sdk["results"]) == 3

    # V2 iterates from V1: same classes, V1's weights as the start.
    v2 = httpx.post(
        f"{base}/models/{model['id']}/versions",
        headers=bearer(app),
        json={"dataset_id": dataset["id"], "base_version": 1},
    ).json()
    assert v2["name"] == "V2" and v2["classes"] == list(CLASSES)
    assert server.wait_job(app, v2["job_id"])["status"] == "succeeded"

    # Hot swap under load: requests keep flowing while V2 replaces V1 at the same URL.
    failures: list[str] = []
    served = 0
    stop = threading.Event()

    def hammer() -> None:
        nonlocal served
        while not stop.is_set():
            response = httpx.post(url, json={"sound": sound, "top_num": 1}, timeout=60)
            body = response.json()
            if response.status_code != 200 or "results" not in body:
                failures.append(response.text)
            served += 1

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    swapped = httpx.put(
        f"{base}/services/farm_sounds",
        headers=bearer(app),
        json={"name": "farm", "model_id": model["id"], "version": 2},
        timeout=120,
    ).json()
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join()
    assert swapped["version"] == 2 and not failures and served >= 4

    # Export: onnxruntime alone reproduces the server's scores.
    exported = httpx.get(f"{base}/models/{model['id']}/versions/2/export", headers=bearer(app), timeout=300)
    assert exported.status_code == 200
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        archive.extractall(tmp_path)
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "sound_classifier.onnx"))
    labels = (tmp_path / "labels.txt").read_text(encoding="utf-8").split("\n")
    samples = audio.decode(rooster).samples
    scores = session.run(None, {"audio": samples[None, :].astype(np.float32)})[0][0]
    served_scores = httpx.post(
        f"{base}/models/{model['id']}/versions/2/predict?top_num=3",
        headers=bearer(app),
        content=rooster,
        timeout=60,
    ).json()["results"]
    for item in served_scores:
        assert abs(float(scores[labels.index(item["name"])]) - item["score"]) < 2e-3

    # Cancelling a training run
    v3 = httpx.post(
        f"{base}/models/{model['id']}/versions", headers=bearer(app), json={"dataset_id": dataset["id"]}
    ).json()
    cancelled = httpx.post(f"{base}/models/{model['id']}/versions/3/cancel", headers=bearer(app)).json()
    job = server.wait_job(app, v3["job_id"])
    final = httpx.get(f"{base}/models/{model['id']}/versions/3", headers=bearer(app)).json()
    assert job["status"] == "cancelled" or cancelled["status"] == "cancelled"
    assert final["status"] == "cancelled"


def test_model_limits_and_errors(platform: tuple[Server, dict[str, str]]) -> None:
    server, _ = platform
    app = server.create_app("sound-limits")
    base = f"{server.url}/v1/sound"
    for index in range(3):
        assert (
            httpx.post(f"{base}/models", headers=bearer(app), json={"name": f"m{index}"}).status_code == 201
        )
    fourth = httpx.post(f"{base}/models", headers=bearer(app), json={"name": "m3"})
    assert fourth.status_code == 400 and "at most 3" in fourth.json()["error"]["message"]
    assert (
        httpx.post(f"{base}/models", headers=bearer(app), json={"name": "x", "type": "nope"}).status_code
        == 400
    )
    dataset = httpx.post(f"{base}/datasets", headers=bearer(app), json={"name": "empty"}).json()
    one_class = httpx.post(
        f"{base}/models/1/versions", headers=bearer(app), json={"dataset_id": dataset["id"]}
    )
    assert one_class.status_code == 404  # model 1 belongs to another app
    own = httpx.get(f"{base}/models", headers=bearer(app)).json()["models"][0]
    too_few = httpx.post(
        f"{base}/models/{own['id']}/versions", headers=bearer(app), json={"dataset_id": dataset["id"]}
    )
    assert too_few.status_code == 400 and "2 classes" in too_few.json()["error"]["message"]
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("dog/bomb.wav", bytes(300 * 1024 * 1024))
    job = httpx.post(
        f"{base}/datasets/{dataset['id']}/imports", headers=bearer(app), content=bomb.getvalue()
    ).json()
    outcome = server.wait_job(app, job["id"])
    rejected = (outcome.get("result") or {}).get("rejected", [])
    # 300 MB of zeros in a 300 KB zip: refused (as a bomb, or for its size while inflating), nothing added
    assert outcome["status"] == "failed" or [r["name"] for r in rejected] == ["dog/bomb.wav"]
    assert httpx.get(f"{base}/datasets/{dataset['id']}", headers=bearer(app)).json()["total"] == 0


def test_easydl_error_codes(platform: tuple[Server, dict[str, str]]) -> None:
    server, app = platform
    token = server.access_token(app)
    other = server.create_app("sound-stranger")
    other_token = server.access_token(other)
    base = f"{server.url}/rpc/2.0/ai_custom/v1/sound_cls"
    sound = base64.b64encode(CLIPS[0].read_bytes()).decode()

    def code(suffix: str, body: Any, access_token: str = token, raw: bytes | None = None) -> int:
        url = f"{base}/{suffix}?access_token={access_token}"
        response = httpx.post(url, content=raw) if raw is not None else httpx.post(url, json=body)
        assert response.status_code == 200
        return int(response.json().get("error_code", 0))

    if not any(
        s["suffix"] == "farm_sounds"
        for s in httpx.get(f"{server.url}/v1/sound/services", headers=bearer(app)).json()["services"]
    ):
        pytest.skip("needs the service published by test_whole_flow")
    assert code("farm_sounds", {"sound": sound}, access_token="24.bogus") == 110
    # Another app's service answers exactly as a suffix nobody uses.
    foreign = httpx.post(f"{base}/farm_sounds?access_token={other_token}", json={"sound": sound}).json()
    unused = httpx.post(f"{base}/farm_sound?access_token={other_token}", json={"sound": sound}).json()
    assert foreign["error_code"] == unused["error_code"] == 216102
    assert foreign["error_msg"].replace("farm_sounds", "X") == unused["error_msg"].replace("farm_sound", "X")
    assert code("no_such_service", {"sound": sound}) == 216102
    assert code("farm_sounds", {"top_num": 3}) == 216101
    assert code("farm_sounds", {"sound": sound, "top_num": "three"}) == 216100
    assert code("farm_sounds", {"sound": sound, "top_num": 10**19}) == 216100  # once accepted silently
    assert code("farm_sounds", {"sound": sound, "top_num": 1e19}) == 216100
    assert code("farm_sounds", {"sound": sound, "top_num": True}) == 216100
    assert code("farm_sounds", {"sound": "A" * (4 * 1024 * 1024 + 8)}) == 216103
    assert code("farm_sounds", {"sound": "data:audio/wav;base64," + sound}) == 336001
    assert code("farm_sounds", None, raw=b"sound=abc") == 336001
    assert code("farm_sounds", {"sound": base64.b64encode(b"not audio at all" * 10).decode()}) == 336001
    assert code("farm_sounds", {"sound": sound}) == 0


def _tone(seconds: float = 5.0) -> bytes:
    time_axis = np.arange(int(seconds * 16000)) / 16000
    return audio.encode_wav((0.3 * np.sin(2 * np.pi * 440 * time_axis)).astype(np.float32))


def test_easydl_seed_details_with_the_official_client(platform: tuple[Server, dict[str, str]]) -> None:
    """Issue 15 (EasyDL): 100 vs 110 for the access token, top_num as a number in any JSON form, the open-set
    answer of a service, and a report that describes the served model."""
    from aip.easydl import EasyDL

    server, app = platform
    base = f"{server.url}/v1/sound"
    services = httpx.get(f"{base}/services", headers=bearer(app)).json()["services"]
    farm = next((s for s in services if s["suffix"] == "farm_sounds"), None)
    if farm is None:
        pytest.skip("needs the service published by test_whole_flow")
    url = f"{server.url}{farm['url']}"
    rooster = audio.encode_wav(audio.decode(clips_of("rooster")[-1]).samples)
    sound = base64.b64encode(rooster).decode()

    # The seed: 100 "Invalid parameter" (the access_token parameter is missing), 110 (not a valid token).
    missing = httpx.post(url, json={"sound": sound}).json()
    assert missing["error_code"] == 100 and "access_token" in missing["error_msg"]
    assert httpx.post(f"{url}?access_token=", json={"sound": sound}).json()["error_code"] == 100
    assert httpx.post(f"{url}?access_token=24.nope", json={"sound": sound}).json()["error_code"] == 110

    # The official client fetches a new token and retries when it hears 110 (aip/base.py): a client
    # holding a token the server no longer knows recovers by itself.
    client = EasyDL(app["app_id"], app["api_key"], app["secret_key"])
    client._AipBase__accessTokenUrl = f"{server.url}/oauth/2.0/token"
    assert client.predictSound(url, rooster, {"top_num": 1})["results"][0]["name"] == "rooster"
    client._authObj["access_token"] = "24.revoked-or-forgotten"
    recovered = client.predictSound(url, rooster, {"top_num": 1})
    assert recovered["results"][0]["name"] == "rooster", recovered
    assert client._authObj["access_token"] != "24.revoked-or-forgotten"

    # top_num: 2, "2" and 2.0 mean the same; more than the classes gives every class once.
    for top_num in (2, "2", 2.0, " 2 "):
        answer = client.predictSound(url, rooster, {"top_num": top_num})
        assert len(answer["results"]) == 2, (top_num, answer)
    assert len(client.predictSound(url, rooster, {"top_num": 6})["results"]) == len(CLASSES)
    assert len(client.predictSound(url, rooster, {"top_num": "1000"})["results"]) == len(CLASSES)
    assert len(client.predictSound(url, rooster, {"top_num": None})["results"]) == len(CLASSES)  # default 6
    for bad in (2.5, "two", True, 0, -1, [2]):
        answer = client.predictSound(url, rooster, {"top_num": bad})
        assert answer.get("error_code") == 216100, (bad, answer)

    # The open set is off by default; published with unknown_threshold "auto", a pure tone (no dog, rain
    # or rooster) is answered "[unknown]" first, while a rooster stays a rooster.
    assert client.predictSound(url, _tone(), {"top_num": 1})["results"][0]["name"] in CLASSES
    model_id = farm["model_id"]
    republished = httpx.put(
        f"{base}/services/farm_sounds",
        headers=bearer(app),
        json={"name": "farm", "model_id": model_id, "version": farm["version"], "unknown_threshold": "auto"},
    ).json()
    assert republished["unknown_threshold"] == "auto"
    unknown = client.predictSound(url, _tone(), {"top_num": 2})["results"]
    assert unknown[0]["name"] == "[unknown]" and len(unknown) == 2, unknown
    assert client.predictSound(url, rooster, {"top_num": 1})["results"][0]["name"] == "rooster"
    wrong = httpx.put(
        f"{base}/services/farm_sounds",
        headers=bearer(app),
        json={"name": "farm", "model_id": model_id, "version": farm["version"], "unknown_threshold": 1.5},
    )
    assert wrong.status_code in (400, 422)
    validated = httpx.post(
        f"{base}/models/{model_id}/versions/{farm['version']}/predict?top_num=1&unknown_threshold=0.05",
        headers=bearer(app),
        content=_tone(),
        timeout=60,
    ).json()["results"]
    assert validated[0]["name"] == "[unknown]"

    # The report describes the served version: leave-one-out of its own recipe, features named.
    version = httpx.get(f"{base}/models/{model_id}/versions/{farm['version']}", headers=bearer(app)).json()
    report = version["report"]
    assert "leave-one-out" in report["method"] and report["held_out_count"] == report["train_count"]
    assert report["details"]["features"].startswith("whisper-base")
    assert report["details"]["selection"] and 0.0 <= report["details"]["expected_calibration_error"] <= 1.0


def test_unpublish_before_delete(platform: tuple[Server, dict[str, str]]) -> None:
    """Deleting what backs a live service is refused with a clear message; unpublish, then delete."""
    server, app = platform
    base = f"{server.url}/v1/sound"
    services = httpx.get(f"{base}/services", headers=bearer(app)).json()["services"]
    farm = next((s for s in services if s["suffix"] == "farm_sounds"), None)
    if farm is None:
        pytest.skip("needs the service published by test_whole_flow")
    model_id, served = farm["model_id"], farm["version"]

    refused = httpx.delete(f"{base}/models/{model_id}", headers=bearer(app))
    assert refused.status_code == 409, refused.text
    message = refused.json()["error"]["message"]
    assert "farm_sounds" in message and "unpublish" in message
    refused_version = httpx.delete(f"{base}/models/{model_id}/versions/{served}", headers=bearer(app))
    assert refused_version.status_code == 409 and "unpublish" in refused_version.json()["error"]["message"]
    # A version nobody serves can go; the service keeps working.
    other = 1 if served != 1 else 2
    assert httpx.delete(f"{base}/models/{model_id}/versions/{other}", headers=bearer(app)).status_code == 200
    assert httpx.get(f"{base}/models/{model_id}/versions/{other}", headers=bearer(app)).status_code == 404
    token = server.access_token(app)
    url = f"{server.url}{farm['url']}?access_token={token}"
    sound = base64.b64encode(clips_of("rooster")[0].read_bytes()).decode()
    assert "results" in httpx.post(url, json={"sound": sound}, timeout=60).json()

    gone = httpx.delete(f"{base}/services/farm_sounds", headers=bearer(app))
    assert gone.status_code == 200 and gone.json()["unpublished"]["version"] == served
    assert httpx.post(url, json={"sound": sound}, timeout=60).json()["error_code"] == 216102
    assert httpx.delete(f"{base}/services/farm_sounds", headers=bearer(app)).status_code == 404
    assert httpx.delete(f"{base}/models/{model_id}", headers=bearer(app)).status_code == 200
    assert httpx.get(f"{base}/models/{model_id}", headers=bearer(app)).status_code == 404
