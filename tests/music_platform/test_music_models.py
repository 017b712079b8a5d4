"""Custom music taggers (model type ``music_tagging``) over real HTTP: a two-class taxonomy cut from the
music fixtures is imported, trained on musicnn embeddings, validated on held-out windows, published and
called through the EasyDL wire API; plus the classifier's record of its embedder (old ones still load)."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import FIXTURES, Server, bearer
from tingyin import audio
from tingyin.errors import InvalidRequest
from tingyin.music.embedder import DEFAULT_MUSIC_EMBEDDER, MusicEmbedder, get_music_embedder
from tingyin.music.tagger import music_embedding
from tingyin.sound.classifier import META_FILE, WHISPER_EMBEDDER, TrainedClassifier
from tingyin.sound.features import FeatureSpec
from tingyin.sound.whisper_onnx import EmbedderSpec

RATE = 16000
WINDOW = 3 * RATE


def track(name: str) -> np.ndarray:
    return audio.decode(FIXTURES / "music" / name).samples


def windows(samples: np.ndarray, starts_s: list[float]) -> list[np.ndarray]:
    return [samples[int(s * RATE) : int(s * RATE) + WINDOW] for s in starts_s]


def taxonomy() -> tuple[dict[str, list[np.ndarray]], dict[str, np.ndarray]]:
    """Training windows (with gain/shift variants) and one held-out window per class."""
    loop = track("loop_garzul_16k.flac")  # 8 s electronic loop
    coffee = track("morning_coffee_12s_16k.flac")  # 12 s instrumental
    training = {
        "electronic": windows(loop, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]),
        "lounge": windows(coffee, [0.0, 0.75, 1.5, 2.25, 3.0, 3.75, 4.5, 5.25, 6.0]),
    }
    for label in training:
        base = training[label]
        training[label] = base + [0.6 * w for w in base[:2]] + [np.roll(w, RATE // 10) for w in base[2:4]]
    held_out = {"electronic": windows(loop, [5.0])[0], "lounge": windows(coffee, [9.0])[0]}
    return training, held_out


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    server = Server(
        tmp_path_factory.mktemp("music") / "home",
        env={"TINGYIN_MAX_MODELS_PER_TYPE": "1", "TINGYIN_JOB_LEASE_SECONDS": "20"},
    ).wait_ready()
    yield server, server.create_app("music-owner")
    server.stop()


def test_music_tagging_flow(platform: tuple[Server, dict[str, str]], tmp_path: Path) -> None:
    server, app = platform
    base = f"{server.url}/v1/sound"
    model = httpx.post(
        f"{base}/models", headers=bearer(app), json={"name": "moods", "type": "music_tagging"}
    ).json()
    assert model["type"] == "music_tagging", model
    # The limit (1 here) counts per type: a second music model is refused, a sound model is not.
    second = httpx.post(f"{base}/models", headers=bearer(app), json={"name": "m2", "type": "music_tagging"})
    assert second.status_code == 400 and "music_tagging" in second.json()["error"]["message"]
    assert httpx.post(f"{base}/models", headers=bearer(app), json={"name": "snd"}).status_code == 201

    training, held_out = taxonomy()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for label, clips in training.items():
            for index, clip in enumerate(clips):
                archive.writestr(f"{label}/{index:02d}.wav", audio.encode_wav(clip, RATE))
    dataset = httpx.post(f"{base}/datasets", headers=bearer(app), json={"name": "music"}).json()
    imported = httpx.post(
        f"{base}/datasets/{dataset['id']}/imports", headers=bearer(app), content=buffer.getvalue(), timeout=60
    ).json()
    report = server.wait_job(app, imported["id"])["result"]
    assert report["class_counts"] == {"electronic": 12, "lounge": 13}, report

    v1 = httpx.post(
        f"{base}/models/{model['id']}/versions", headers=bearer(app), json={"dataset_id": dataset["id"]}
    ).json()
    job = server.wait_job(app, v1["job_id"])
    assert job["status"] == "succeeded", job
    trained = httpx.get(f"{base}/models/{model['id']}/versions/1", headers=bearer(app)).json()
    assert trained["status"] == "ready" and trained["report"]["accuracy"] >= 0.8, trained["report"]

    for label, clip in held_out.items():
        scored = httpx.post(
            f"{base}/models/{model['id']}/versions/1/predict?top_num=2",
            headers=bearer(app),
            content=audio.encode_wav(clip, RATE),
            timeout=60,
        ).json()["results"]
        assert scored[0]["name"] == label and scored[0]["score"] > 0.5, (label, scored)

    # Export: the self-contained ONNX (musicnn front end, tagger, patch mean, head) reproduces the server.
    exported = httpx.get(f"{base}/models/{model['id']}/versions/1/export", headers=bearer(app), timeout=120)
    assert exported.status_code == 200, exported.text
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        archive.extractall(tmp_path)
    session = ort.InferenceSession(
        str(tmp_path / "sound_classifier.onnx"), providers=["CPUExecutionProvider"]
    )
    labels = (tmp_path / "labels.txt").read_text(encoding="utf-8").split("\n")
    for clip in held_out.values():
        served = httpx.post(
            f"{base}/models/{model['id']}/versions/1/predict?top_num=2",
            headers=bearer(app),
            content=audio.encode_wav(clip, RATE),
            timeout=60,
        ).json()["results"]
        decoded = audio.decode(audio.encode_wav(clip, RATE)).samples  # what the server scored
        scores = session.run(["scores"], {"audio": decoded[None].astype(np.float32)})[0][0]
        for item in served:
            assert abs(float(scores[labels.index(item["name"])]) - item["score"]) < 1e-3, (served, scores)

    published = httpx.put(
        f"{base}/services/my_moods",
        headers=bearer(app),
        json={"name": "moods", "model_id": model["id"], "version": 1},
    ).json()
    token = server.access_token(app)
    sound = base64.b64encode(audio.encode_wav(held_out["lounge"], RATE)).decode()
    answer = httpx.post(
        f"{server.url}{published['url']}?access_token={token}",
        json={"sound": sound, "top_num": 2},
        timeout=60,
    ).json()
    assert [r["name"] for r in answer["results"]] == ["lounge", "electronic"], answer
    assert answer["results"][0]["score"] >= answer["results"][1]["score"]

    # V2 iterates from V1 on the same (music) embedder.
    v2 = httpx.post(
        f"{base}/models/{model['id']}/versions",
        headers=bearer(app),
        json={"dataset_id": dataset["id"], "base_version": 1},
    ).json()
    assert server.wait_job(app, v2["job_id"])["status"] == "succeeded"
    validated = httpx.post(
        f"{base}/models/{model['id']}/versions/2/predict?top_num=1",
        headers=bearer(app),
        content=audio.encode_wav(held_out["electronic"], RATE),
        timeout=60,
    ).json()["results"]
    assert validated[0]["name"] == "electronic", validated


def test_music_embedder_matches_the_tagger_embeddings() -> None:
    _, held_out = taxonomy()
    clips = [held_out["electronic"], held_out["lounge"], track("morning_coffee_12s_16k.flac")]
    assert MusicEmbedder().name == DEFAULT_MUSIC_EMBEDDER == "musicnn-mtt"
    embedder = get_music_embedder("musicnn-mtt-msd")
    batch = embedder.embed_batch(clips)
    assert batch.shape == (3, embedder.dim) == (3, 400)
    for clip, row in zip(clips, batch, strict=True):
        expected = np.concatenate(
            [music_embedding(clip, "MTT_musicnn"), music_embedding(clip, "MSD_musicnn")]
        )
        np.testing.assert_allclose(row, expected, atol=1e-4)
    np.testing.assert_allclose(embedder.embed(clips[2]), batch[2], atol=1e-4)
    with pytest.raises(InvalidRequest):
        embedder.embed(np.zeros(0, dtype=np.float32))
    with pytest.raises(InvalidRequest):
        get_music_embedder("musicnn-nope")


def small_classifier(embedder_model: str, dim: int) -> TrainedClassifier:
    rng = np.random.default_rng(0)
    features = (
        FeatureSpec(whisper=EmbedderSpec(layers=(1, 2, 3)))
        if embedder_model == WHISPER_EMBEDDER
        else FeatureSpec(music=embedder_model)
    )
    return TrainedClassifier(
        classes=["a", "b", "c"],
        features=features,
        mean=rng.normal(size=dim).astype(np.float32),
        scale=np.abs(rng.normal(size=dim)).astype(np.float32) + 0.5,
        weights=[rng.normal(size=(dim, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)],
        info={"seed": 0},
    )


@pytest.mark.parametrize("old_embedder", ["no name", "absent"])
def test_whisper_classifier_saved_before_music_models_loads(tmp_path: Path, old_embedder: str) -> None:
    original = small_classifier(WHISPER_EMBEDDER, 1536)
    original.save(tmp_path)
    meta_path = tmp_path / META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["format_version"] = 1  # as written before feature sets: only the embedder record
    for key in ("features", "temperature", "normalize_rows", "open_set"):
        del meta[key]
    if old_embedder == "absent":
        del meta["embedder"]
    else:
        del meta["embedder"]["name"]
    meta_path.write_text(json.dumps(meta), encoding="utf-8")

    loaded = TrainedClassifier.load(tmp_path)
    assert loaded.features == FeatureSpec(whisper=EmbedderSpec(layers=(1, 2, 3)), quantized=True)
    assert not loaded.is_music and loaded.temperature == 1.0 and loaded.open_set is None
    features = np.random.default_rng(1).normal(size=(4, 1536)).astype(np.float32)
    np.testing.assert_allclose(
        loaded.scores_from_embeddings(features), original.scores_from_embeddings(features), atol=1e-6
    )


def test_music_classifier_round_trip_and_export(tmp_path: Path) -> None:
    original = small_classifier(DEFAULT_MUSIC_EMBEDDER, 200)
    original.save(tmp_path)
    assert json.loads((tmp_path / META_FILE).read_text())["embedder"]["name"] == "musicnn-mtt"
    loaded = TrainedClassifier.load(tmp_path)
    assert loaded.is_music and loaded.embedder().dim == 200
    _, held_out = taxonomy()
    predicted = loaded.predict(held_out["lounge"], top_num=3)
    expected = original.scores_from_embeddings(MusicEmbedder().embed(held_out["lounge"])[None])[0]
    assert [name for name, _ in predicted] == [original.classes[i] for i in np.argsort(-expected)]
    onnx_path, labels_path = loaded.export_onnx(tmp_path / "export")
    assert labels_path.read_text(encoding="utf-8").split() == original.classes
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for clip in (held_out["lounge"], track("morning_coffee_12s_16k.flac"), held_out["electronic"][:8000]):
        exported = session.run(["scores"], {"audio": clip[None].astype(np.float32)})[0][0]
        served = dict(loaded.predict(clip, top_num=3))
        np.testing.assert_allclose(exported, [served[name] for name in original.classes], atol=1e-3)
