"""The native endpoints behind the web console, over real HTTP: cookie sessions with CSRF, resumable
uploads into a dataset import, dataset curation, usage per API per day, transcription downloads,
music tags, and the console / offline docs being served."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FIXTURES, Server, bearer, fresh_redis_url
from tests.security.helpers import head_only

CLIPS = sorted((FIXTURES / "esc10").glob("*.flac"))


def clips_of(label: str) -> list[Path]:
    return [p for p in CLIPS if p.name.startswith(label + "__")]


def signed_in(server: Server, app: dict[str, str]) -> tuple[httpx.Client, str]:
    """A client holding the console cookie, and the CSRF token of its session."""
    client = httpx.Client(base_url=server.url, timeout=60)
    response = client.post("/v1/session", json={"api_key": app["api_key"], "secret_key": app["secret_key"]})
    assert response.status_code == 200, response.text
    return client, str(response.json()["csrf_token"])


def test_session_cookie_csrf_and_sign_out(server: Server) -> None:
    app = server.create_app("console-session")
    other = server.create_app("console-other")
    wrong = httpx.post(f"{server.url}/v1/session", json={"api_key": app["api_key"], "secret_key": "nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    assert httpx.post(f"{server.url}/v1/session", json={}).status_code == 401

    client, csrf = signed_in(server, app)
    cookie = client.cookies.jar
    set_cookie = httpx.post(
        f"{server.url}/v1/session", json={"api_key": app["api_key"], "secret_key": app["secret_key"]}
    ).headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie and "Path=/" in set_cookie
    assert len(list(cookie)) == 1
    assert client.get("/v1/app").json()["name"] == "console-session"
    assert client.get("/v1/session").json()["app"]["app_id"] == app["app_id"]

    # State-changing calls need the CSRF token as well as the cookie.
    missing = client.post("/v1/sound/datasets", json={"name": "no_csrf"})
    assert missing.status_code == 403 and missing.json()["error"]["code"] == "forbidden"
    forged = client.post("/v1/sound/datasets", json={"name": "forged"}, headers={"X-CSRF-Token": "guess"})
    assert forged.status_code == 403
    cross_site = client.post(
        "/v1/sound/datasets",
        json={"name": "cross"},
        headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
    )
    assert cross_site.status_code == 403 and "cross-site" in cross_site.json()["error"]["message"]
    login_elsewhere = httpx.post(
        f"{server.url}/v1/session",
        json={"app_token": app["app_token"]},
        headers={"Origin": "https://evil.example"},
    )
    assert login_elsewhere.status_code == 403
    made = client.post("/v1/sound/datasets", json={"name": "with_csrf"}, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201, made.text
    # Scoped to the signed-in app; the bearer token still works beside the cookie.
    assert [d["name"] for d in client.get("/v1/sound/datasets").json()["datasets"]] == ["with_csrf"]
    assert httpx.get(f"{server.url}/v1/sound/datasets", headers=bearer(other)).json()["datasets"] == []
    by_token = httpx.post(f"{server.url}/v1/session", json={"app_token": app["app_token"]})
    assert by_token.status_code == 200 and by_token.json()["app"]["name"] == "console-session"

    assert client.delete("/v1/session").status_code == 403  # signing out is state-changing too
    assert client.delete("/v1/session", headers={"X-CSRF-Token": csrf}).json() == {"signed_out": True}
    stale = httpx.get(f"{server.url}/v1/app", cookies={"tingyin_session": _cookie(set_cookie)})
    assert stale.status_code == 200  # the second sign-in's session is still open
    assert client.get("/v1/app").status_code == 401


def _cookie(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


def test_credentials_are_the_apps_own(server: Server) -> None:
    app = server.create_app("console-keys")
    creds = httpx.get(f"{server.url}/v1/app/credentials", headers=bearer(app)).json()
    assert creds["app_id"] == app["app_id"] and creds["api_key"] == app["api_key"]
    assert creds["secret_key"] == app["secret_key"]
    assert "app_token" not in creds
    assert httpx.get(f"{server.url}/v1/app/credentials").status_code == 401


def small_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for label in ("dog_bark", "rain"):
            for path in clips_of(label)[:3]:
                archive.write(path, f"{label}/{path.name}")
    return buffer.getvalue()


def test_resumable_upload_into_a_dataset(server: Server) -> None:
    app = server.create_app("console-upload")
    auth = bearer(app)
    dataset = httpx.post(f"{server.url}/v1/sound/datasets", headers=auth, json={"name": "chunks"}).json()
    data = small_zip()
    upload = httpx.post(
        f"{server.url}/v1/uploads", headers=auth, json={"filename": "d.zip", "size": len(data)}
    )
    assert upload.status_code == 201 and upload.json()["received"] == 0
    uid = upload.json()["id"]
    half = len(data) // 2
    first = httpx.put(f"{server.url}/v1/uploads/{uid}?offset=0", headers=auth, content=data[:half])
    assert first.json()["received"] == half and not first.json()["complete"]
    # A chunk sent at the wrong offset (a retry after a lost answer) is refused with where to resume.
    again = httpx.put(f"{server.url}/v1/uploads/{uid}?offset=0", headers=auth, content=data[:half])
    assert again.status_code == 409 and str(half) in again.json()["error"]["message"]
    too_much = httpx.put(
        f"{server.url}/v1/uploads/{uid}?offset={half}", headers=auth, content=data[half:] + b"x"
    )
    assert too_much.status_code == 400
    assert httpx.get(f"{server.url}/v1/uploads/{uid}", headers=auth).json()["received"] == half
    other = server.create_app("console-upload-other")
    assert httpx.get(f"{server.url}/v1/uploads/{uid}", headers=bearer(other)).status_code == 404
    early = httpx.post(
        f"{server.url}/v1/sound/datasets/{dataset['id']}/imports/from-upload",
        headers=auth,
        json={"upload_id": uid},
    )
    assert early.status_code == 400 and "finish it first" in early.json()["error"]["message"]
    done = httpx.put(f"{server.url}/v1/uploads/{uid}?offset={half}", headers=auth, content=data[half:])
    assert done.json()["complete"]

    job = httpx.post(
        f"{server.url}/v1/sound/datasets/{dataset['id']}/imports/from-upload",
        headers=auth,
        json={"upload_id": uid},
    )
    assert job.status_code == 202, job.text
    finished = server.wait_job(app, job.json()["id"])
    assert finished["status"] == "succeeded" and finished["result"]["class_counts"] == {
        "dog_bark": 3,
        "rain": 3,
    }
    classes = httpx.get(f"{server.url}/v1/sound/datasets/{dataset['id']}/classes", headers=auth).json()[
        "classes"
    ]
    assert [c["name"] for c in classes] == ["dog_bark", "rain"]
    assert all(c["clips"] == 3 and 14_000 <= c["duration_ms"] <= 16_000 for c in classes)  # ESC-10: 5 s clips
    assert httpx.get(f"{server.url}/v1/uploads/{uid}", headers=auth).status_code == 404  # consumed

    empty = httpx.post(f"{server.url}/v1/uploads", headers=auth, json={"filename": "e.zip", "size": 0})
    assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]
    text = b"not a zip at all"
    bad = httpx.post(
        f"{server.url}/v1/uploads", headers=auth, json={"filename": "x.zip", "size": len(text)}
    ).json()
    httpx.put(f"{server.url}/v1/uploads/{bad['id']}?offset=0", headers=auth, content=text)
    refused = httpx.post(
        f"{server.url}/v1/sound/datasets/{dataset['id']}/imports/from-upload",
        headers=auth,
        json={"upload_id": bad["id"]},
    )
    assert refused.status_code == 400 and "not a zip archive" in refused.json()["error"]["message"]


def test_dataset_curation(server: Server) -> None:
    app = server.create_app("console-curate")
    auth = bearer(app)
    base = f"{server.url}/v1/sound/datasets"
    dataset = httpx.post(base, headers=auth, json={"name": "curate"}).json()
    url = f"{base}/{dataset['id']}"

    def add(label: str, path: Path) -> httpx.Response:
        return httpx.post(
            f"{url}/clips",
            params={"label": label, "filename": path.name},
            headers=auth,
            content=path.read_bytes(),
        )

    added = [add("dog", p).json() for p in clips_of("dog_bark")[:3]] + [
        add("rain", clips_of("rain")[0]).json()
    ]
    assert added[0]["label"] == "dog" and abs(added[0]["duration_ms"] - 5000) <= 20
    spaced = add("dog bark", clips_of("dog_bark")[4])
    assert (
        spaced.status_code == 400 and "letters, digits and underscores" in spaced.json()["error"]["message"]
    )
    assert "already" in add("dog", clips_of("dog_bark")[0]).json()["error"]["message"]
    assert add("dog", FIXTURES / "esc10" / "ATTRIBUTION.md").status_code == 400
    empty = httpx.post(
        f"{url}/clips", params={"label": "dog", "filename": "e.wav"}, headers=auth, content=b""
    )
    assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]

    page = httpx.get(f"{url}/clips", params={"label": "dog", "limit": 2}, headers=auth).json()
    assert page["total"] == 3 and len(page["clips"]) == 2
    played = httpx.get(f"{url}/clips/{added[0]['id']}/audio", headers=auth)
    assert played.status_code == 200 and played.content == clips_of("dog_bark")[0].read_bytes()
    assert played.headers["content-type"] == "audio/flac"

    renamed = httpx.patch(f"{url}/classes/dog", headers=auth, json={"name": "dog_bark"}).json()["classes"]
    assert {c["name"]: c["clips"] for c in renamed} == {"dog_bark": 3, "rain": 1}
    clash = httpx.patch(f"{url}/classes/rain", headers=auth, json={"name": "dog_bark"})
    assert clash.status_code == 400 and "merge" in clash.json()["error"]["message"]
    merged = httpx.post(
        f"{url}/classes/merge", headers=auth, json={"sources": ["rain", "dog_bark"], "into": "noise"}
    )
    assert [(c["name"], c["clips"]) for c in merged.json()["classes"]] == [("noise", 4)]
    deleted = httpx.post(f"{url}/clips/delete", headers=auth, json={"ids": [added[0]["id"], 999_999]})
    assert deleted.json() == {"deleted": 1}
    assert httpx.get(f"{url}/clips/{added[0]['id']}/audio", headers=auth).status_code == 404
    assert httpx.delete(f"{url}/classes/noise", headers=auth).json() == {"deleted": 3}
    assert httpx.get(f"{url}/classes", headers=auth).json() == {"classes": []}
    assert httpx.delete(url, headers=auth).json() == {"deleted": 1}
    assert httpx.get(url, headers=auth).status_code == 404


@pytest.mark.parametrize("store", ["database", "redis"])
def test_daily_usage_per_api(store: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tingyin.config import reset_settings
    from tingyin.errors import QuotaExceeded
    from tingyin.store.apps import create_app, get_app, set_limits
    from tingyin.store.quota import consume, daily_usage

    if store == "redis":
        monkeypatch.setenv("TINGYIN_REDIS_URL", fresh_redis_url())
        reset_settings()
    create_app("usage")
    app = get_app("usage")
    day = 86400.0
    now = 1_800_000_000.0
    consume(app, "sami", now - day)
    for _ in range(3):
        consume(app, "easydl:farm", now)
    assert daily_usage(app.pk, 7, now) == {"sami": {"20270114": 1}, "easydl:farm": {"20270115": 3}}
    assert daily_usage(app.pk, 1, now) == {"easydl:farm": {"20270115": 3}}
    limited = set_limits("usage", qps_limit=None, daily_limit=3)
    with pytest.raises(QuotaExceeded):
        consume(limited, "easydl:farm", now)
    assert daily_usage(app.pk, 1, now)["easydl:farm"]["20270115"] == 4  # refused calls count as asked


def test_usage_endpoint_counts_vendor_calls(server: Server) -> None:
    app = server.create_app("console-usage")
    # A SAMI call with a bad payload: authenticated, counted, refused.
    answer = httpx.post(
        f"{server.url}/api/v1/invoke",
        json={
            "appkey": app["api_key"],
            "token": app["app_token"],
            "namespace": "MusicTagging",
            "payload": "",
        },
    )
    assert answer.json()["status_code"] == 40000000
    usage = httpx.get(f"{server.url}/v1/app/usage", params={"days": 3}, headers=bearer(app)).json()
    assert len(usage["days"]) == 3
    assert [(a["api"], a["today"]) for a in usage["apis"]] == [("sami", 1)]
    assert usage["daily_limit"] is None and usage["over_daily_limit"] == []


def test_transcription_list_audio_and_downloads(server: Server) -> None:
    app = server.create_app("console-transcripts")
    auth = bearer(app)
    clip = FIXTURES / "foundation" / "LJ001-0156.flac"
    job = httpx.post(
        f"{server.url}/v1/transcriptions",
        params={"language": "en", "filename": clip.name},
        headers=auth,
        content=clip.read_bytes(),
    ).json()
    early = httpx.get(f"{server.url}/v1/transcriptions/{job['id']}/transcript", headers=auth)
    assert early.status_code in (200, 400)  # 400 "no transcript yet" unless it already finished
    done = server.wait_job(app, job["id"])
    assert done["status"] == "succeeded", done
    listed = httpx.get(f"{server.url}/v1/transcriptions", headers=auth).json()["transcriptions"]
    assert [(j["id"], j["filename"], j["source"], j["status"]) for j in listed] == [
        (job["id"], clip.name, "native", "succeeded")
    ]
    assert listed[0]["language"] == "en" and listed[0]["duration_ms"] > 1000

    audio = httpx.get(f"{server.url}/v1/transcriptions/{job['id']}/audio", headers=auth)
    assert audio.content == clip.read_bytes() and audio.headers["content-type"] == "audio/flac"
    srt = httpx.get(f"{server.url}/v1/transcriptions/{job['id']}/transcript?format=srt", headers=auth)
    assert srt.headers["content-type"].startswith("application/x-subrip")
    assert srt.text.startswith("1\n00:00:0") and " --> " in srt.text
    vtt = httpx.get(f"{server.url}/v1/transcriptions/{job['id']}/transcript?format=vtt", headers=auth).text
    assert vtt.startswith("WEBVTT\n\n")
    text = httpx.get(f"{server.url}/v1/transcriptions/{job['id']}/transcript?format=txt", headers=auth).text
    assert text.strip() == done["result"]["text"].strip()
    data = httpx.get(
        f"{server.url}/v1/transcriptions/{job['id']}/transcript?format=json", headers=auth
    ).json()
    assert data["utterances"] == done["result"]["utterances"]
    other = server.create_app("console-transcripts-other")
    assert (
        httpx.get(f"{server.url}/v1/transcriptions/{job['id']}/audio", headers=bearer(other)).status_code
        == 404
    )
    assert httpx.get(f"{server.url}/v1/transcriptions", headers=bearer(other)).json() == {
        "transcriptions": []
    }

    # Deleting a finished transcription takes its transcript and audio at once (another app cannot).
    url = f"{server.url}/v1/transcriptions/{job['id']}"
    assert httpx.delete(url, headers=bearer(other)).status_code == 404
    deleted = httpx.delete(url, headers=auth)
    assert deleted.status_code == 200 and deleted.json()["status"] == "succeeded"
    for path in ("", "/audio", "/transcript"):
        assert httpx.get(f"{url}{path}", headers=auth).status_code == 404
    assert httpx.delete(url, headers=auth).status_code == 404
    assert httpx.get(f"{server.url}/v1/transcriptions", headers=auth).json() == {"transcriptions": []}
    assert not [p for p in (server.home / "blobs" / "jobs" / job["id"]).rglob("*") if p.is_file()]


def test_music_tags_native(server: Server) -> None:
    app = server.create_app("console-music")
    track = (FIXTURES / "music" / "loop_garzul_16k.flac").read_bytes()
    answer = httpx.post(
        f"{server.url}/v1/music/tags?embed=true", headers=bearer(app), content=track, timeout=300
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert [d["task_type"] for d in body["dimensions"]] == [
        "MusicTaggingGenre34",
        "MusicTaggingMood10",
        "MusicTaggingVocal",
        "MusicTaggingLang30",
    ]
    genre = [t["probability"] for t in body["dimensions"][0]["tags"]]
    assert genre == sorted(genre, reverse=True) and 0 <= genre[0] <= 1
    assert body["embedding"] and 7 <= body["duration_s"] <= 9
    speech = (FIXTURES / "music" / "LJ001-0182_speech.flac").read_bytes()
    refused = httpx.post(f"{server.url}/v1/music/tags", headers=bearer(app), content=speech, timeout=300)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "not_music"
    empty = httpx.post(f"{server.url}/v1/music/tags", headers=bearer(app), content=b"")
    assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]


def test_music_tags_take_a_track_of_up_to_100_mb(server: Server) -> None:
    """A 3-minute CD-quality WAV (31 MB, above the 16 MB of routes without a limit of their own) is tagged;
    a body over 100 MB is refused as too large, by its declared length, before it is read."""
    from tingyin import audio
    from tingyin.eval.live import sami_wav

    app = server.create_app("console-music-large")
    music = audio.decode(FIXTURES / "music" / "loop_garzul_16k.flac").samples
    track = sami_wav(music, 30 * 1024 * 1024)
    answer = httpx.post(f"{server.url}/v1/music/tags", headers=bearer(app), content=track, timeout=300)
    assert answer.status_code == 200, answer.text
    assert answer.json()["duration_s"] == pytest.approx((len(track) - 44) / (4 * 44100), abs=0.01)
    status, body = head_only(server, "POST", "/v1/music/tags", bearer(app), 100 * 1024 * 1024 + 1)
    assert status == 413 and body["error"]["code"] == "payload_too_large", body


def test_console_and_offline_docs_are_served(server: Server) -> None:
    root = httpx.get(f"{server.url}/")
    assert root.status_code == 307 and root.headers["location"] == "/console/"
    page = httpx.get(f"{server.url}/console/")
    assert page.status_code == 200 and '<script type="module" src="app.js">' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    script = httpx.get(f"{server.url}/console/app.js")
    assert "javascript" in script.headers["content-type"]
    for path, asset in (
        ("/docs", "/console/vendor/swagger-ui/swagger-ui-bundle.js"),
        ("/docs", "/console/vendor/swagger-ui/swagger-ui.css"),
        ("/redoc", "/console/vendor/redoc/redoc.standalone.js"),
    ):
        html = httpx.get(f"{server.url}{path}").text
        assert asset in html and "cdn.jsdelivr" not in html and "fonts.googleapis" not in html
        assert httpx.get(f"{server.url}{asset}").status_code == 200
    for licence in ("swagger-ui/LICENSE", "redoc/LICENSE"):
        assert httpx.get(f"{server.url}/console/vendor/{licence}").status_code == 200


def test_console_endpoints_are_typed_in_openapi(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, method, model in (
        ("/v1/session", "post", "SessionOut"),
        ("/v1/uploads", "post", "UploadOut"),
        ("/v1/app/usage", "get", "UsageOut"),
        ("/v1/sound/datasets/{dataset_id}/classes", "get", "ClassTable"),
        ("/v1/sound/models/{model_id}/versions/{version}/misclassified", "get", "MisclassifiedOut"),
        ("/v1/transcriptions", "get", "TranscriptionList"),
        ("/v1/music/tags", "post", "MusicTagsOut"),
    ):
        operation = spec["paths"][path][method]
        content = next(iter(operation["responses"].values()))["content"]["application/json"]
        assert content["schema"]["$ref"].endswith(f"/{model}") and model in schemas, (path, content)


def test_expired_session_is_refused(tmp_path: Path) -> None:
    server = Server(tmp_path / "home", env={"TINGYIN_CONSOLE_SESSION_TTL_S": "1"}, worker=False).wait_ready(
        path="/healthz"
    )
    try:
        app = server.create_app("short")
        client, _csrf = signed_in(server, app)
        assert client.get("/v1/app").status_code == 200
        cookie = {"tingyin_session": str(client.cookies["tingyin_session"])}
        time.sleep(1.5)
        ended = httpx.get(f"{server.url}/v1/app", cookies=cookie)  # the browser would drop it; a replay
        assert ended.status_code == 401 and "sign in again" in ended.json()["error"]["message"]
    finally:
        server.stop()
