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
