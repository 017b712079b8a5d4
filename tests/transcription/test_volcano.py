"""Volcano Engine AUC over real HTTP: submit a URL, query until done, speakers, callbacks, refusals."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.audiofactory import encode
from tests.conftest import Server
from tests.transcription.helpers import EN_CLIP, SPEAKER_B, CallbackReceiver, FileServer, conversation
from tingyin import audio


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    talk, _ = conversation()
    quick, _ = conversation(gap_s=0.2)
    english = audio.decode(EN_CLIP).samples
    narrow = audio.resample(english, 16000, 8000)
    server = FileServer(
        {
            "talk.wav": talk,
            "quick-talk.wav": quick,  # turns 0.2 s apart: shorter than a pause that ends an utterance
            "mandarin.flac": SPEAKER_B[0].read_bytes(),
            "english.ogg": encode(english, 16000, "ogg"),  # Opus in OGG
            "english.opus": encode(english, 16000, "opus"),
            # Headerless 8 kHz s16le (no name the decoder could guess from)
            "english-8k.raw": (np.clip(narrow, -1, 1) * 32767).astype("<i2").tobytes(),
            "english.flac": EN_CLIP.read_bytes(),
            "notes.wav": b"this is a text file with a wav name\n" * 50,
            "empty.mp3": b"",
            "huge.wav": bytes(4_000_000),
        }
    )
    yield server
    server.close()


@pytest.fixture(scope="module")
def auc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "TINGYIN_FETCH_ALLOW": "127.0.0.1",
        "TINGYIN_FETCH_MAX_BYTES": "3000000",
        "TINGYIN_JOB_LEASE_SECONDS": "10",
    }
    server = Server(tmp_path_factory.mktemp("auc") / "home", env=env).wait_ready()
    yield server
    server.stop()


def submit(
    server: Server, client: dict[str, str], url: str, *, header_token: bool = False, **extra: Any
) -> dict[str, Any]:
    """POST a submit request for ``client``'s credentials; ``extra`` merges into body sections."""
    body: dict[str, Any] = {
        "app": {"appid": client["app_id"], "cluster": "volc_auc_common"},
        "user": {"uid": "388808087185088"},
        "audio": {"format": "wav", "url": url},
        "additions": {},
    }
    headers = {}
    if header_token:
        headers["Authorization"] = f"Bearer; {client['app_token']}"
    else:
        body["app"]["token"] = client["app_token"]
    for key, value in extra.items():
        body[key] = {**body.get(key, {}), **value} if isinstance(value, dict) else value
    response = httpx.post(f"{server.url}/api/v1/auc/submit", json=body, headers=headers, timeout=60)
    assert response.status_code == 200
    return dict(response.json()["resp"])


def query(server: Server, app: dict[str, str], task_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    while time.monotonic() < deadline:
        answer = httpx.post(
            f"{server.url}/api/v1/auc/query",
            json={
                "appid": app["app_id"],
                "token": app["app_token"],
                "cluster": "volc_auc_common",
                "id": task_id,
            },
        ).json()
        code = answer["resp"]["code"]
        seen.add(code)
        if code not in (2000, 2001):
            answer["resp"]["_seen"] = sorted(seen)
            return dict(answer["resp"])
        assert set(answer["resp"]) == {"id", "code", "message"}  # no result fields while pending
        time.sleep(0.5)
    raise AssertionError("task did not finish")


def test_speakers_and_word_timestamps(auc: Server, files: FileServer) -> None:
    app = auc.create_app("volc")
    _, turns = conversation()
    accepted = submit(auc, app, f"{files.url}/talk.wav", additions={"with_speaker_info": "True"})
    assert accepted["code"] == 1000 and accepted["message"] == "Success" and accepted["id"]
    done = query(auc, app, accepted["id"])
    assert done["code"] == 1000, done
    assert done["text"] and len(done["utterances"]) >= 4
    speakers = []
    for utterance in done["utterances"]:
        assert utterance["start_time"] < utterance["end_time"]
        words = utterance["words"]
        assert words and all(w["start_time"] <= w["end_time"] for w in words)
        assert all(a["start_time"] <= b["start_time"] for a, b in itertools.pairwise(words))
        middle = (utterance["start_time"] + utterance["end_time"]) / 2000
        truth = next((s for start, end, s in turns if start - 0.3 <= middle <= end + 0.3), None)
        speakers.append((truth, utterance["additions"]["speaker"]))
    labels = {label for _, label in speakers}
    assert labels == {"1", "2"}, speakers
    mapping = {truth: label for truth, label in speakers if truth}
    assert len(set(mapping.values())) == 2
    agree = sum(1 for truth, label in speakers if truth and mapping[truth] == label)
    assert agree >= len(speakers) - 1, speakers


def test_bearer_header_and_defaults(auc: Server, files: FileServer) -> None:
    app = auc.create_app("volc-bearer")
    accepted = submit(
        auc,
        app,
        f"{files.url}/english.flac",
        header_token=True,
        audio={"format": "flac"},
        additions={"language": "en-US", "use_punc": "False"},
    )
    assert accepted["code"] == 1000
    done = query(auc, app, accepted["id"])
    assert done["code"] == 1000 and "paper" in done["text"].lower()
    assert "speaker" not in done["utterances"][0]["additions"]  # with_speaker_info defaults to False
    assert not any(mark in done["text"] for mark in ",.:")


def test_callback_posts_the_query_answer_with_retries(auc: Server, files: FileServer) -> None:
    app = auc.create_app("volc-callback")
    receiver = CallbackReceiver(fail_first=1)
    try:
        accepted = submit(
            auc,
            app,
            f"{files.url}/english.flac",
            audio={"format": "flac"},
            request={"callback": receiver.url},
            additions={"language": "en-US"},
        )
        done = query(auc, app, accepted["id"])
        assert receiver.event.wait(60), "callback never arrived"
        assert receiver.attempts == 2  # the first delivery failed and was retried
        posted = receiver.bodies[0]["resp"]
        assert posted["code"] == 1000 and posted["id"] == accepted["id"] and posted["text"] == done["text"]
    finally:
        receiver.close()


@pytest.mark.parametrize(
    ("name", "code"), [("notes.wav", 1012), ("missing.wav", 1015), ("empty.mp3", 1014), ("huge.wav", 1011)]
)
def test_job_failures_have_codes(auc: Server, files: FileServer, name: str, code: int) -> None:
    app = auc.create_app(f"volc-fail-{name.replace('.', '-')}")
    accepted = submit(auc, app, f"{files.url}/{name}")
    assert accepted["code"] == 1000
    assert query(auc, app, accepted["id"])["code"] == code


def test_redirect_into_the_network_is_refused(auc: Server, files: FileServer) -> None:
    app = auc.create_app("volc-redirect")
    # 127.0.0.1 is allow-listed on this server; 127.0.0.2 and 10.x are not.
    for target in ("http://127.0.0.2:9/x.wav", "http://10.1.2.3/x.wav", "http://169.254.169.254/latest"):
        accepted = submit(auc, app, f"{files.url}/redirect?to={target}")
        assert accepted["code"] == 1000
        failed = query(auc, app, accepted["id"])
        assert failed["code"] == 1015 and "refused" in failed["message"], failed


def test_request_errors(auc: Server, files: FileServer) -> None:
    app = auc.create_app("volc-errors")
    other = auc.create_app("volc-other")
    url = f"{files.url}/english.flac"
    assert submit(auc, app, url, app={"token": "wrong"})["code"] == 1002
    assert submit(auc, app, url, app={"appid": other["app_id"]})["code"] == 1002
    assert submit(auc, app, url, app={"cluster": ""})["code"] == 1001
    assert submit(auc, app, url, audio={"url": ""})["code"] == 1001
    assert submit(auc, app, url, additions={"use_itn": "maybe"})["code"] == 1001
    assert submit(auc, app, url, additions={"language": "tlh"})["code"] == 1001
    bad_json = httpx.post(f"{auc.url}/api/v1/auc/submit", content=b"{oops").json()
    assert bad_json["resp"]["code"] == 1001
    # Wrong types are the caller's error (1001), never an internal one
    for audio_part in ({"rate": "fast"}, {"channel": "two"}, {"bits": [16]}, {"rate": 16000.5}, {"bits": 12}):
        answer = submit(auc, app, url, audio=audio_part)
        assert answer["code"] == 1001 and "id" not in answer, (audio_part, answer)
    for name, value in (("user", "alice"), ("request", 5), ("additions", ["x"]), ("audio", "x.wav")):
        answer = submit(auc, app, url, **{name: value})
        assert answer["code"] == 1001 and name in answer["message"], (name, answer)
    assert submit(auc, app, url, audio={"codec": "mp3"})["code"] == 1001
    accepted = submit(auc, app, url, audio={"format": "flac"})
    stolen = httpx.post(
        f"{auc.url}/api/v1/auc/query",
        json={"appid": other["app_id"], "token": other["app_token"], "cluster": "c", "id": accepted["id"]},
    ).json()
    unknown = httpx.post(
        f"{auc.url}/api/v1/auc/query",
        json={"appid": other["app_id"], "token": other["app_token"], "cluster": "c", "id": "nope"},
    ).json()
    # Another app's task answers exactly as a task that does not exist.
    assert unknown["resp"] == stolen["resp"] == {"code": 1001, "message": "no task with this id"}
    limited = auc.create_app("volc-qps", "--qps", "1")
    codes = [submit(auc, limited, url, audio={"format": "flac"})["code"] for _ in range(4)]
    assert 1003 in codes
    query(auc, app, accepted["id"])


def test_refusals_without_allow_list(server: Server) -> None:
    """The shared server allow-lists nothing: loopback, private, link-local and non-http URLs are
    refused at submit, before any job exists (no traffic goes there)."""
    app = server.create_app("volc-ssrf")
    for url in (
        "http://127.0.0.1:1/a.wav",
        "http://localhost/a.wav",
        "http://10.0.0.8/a.wav",
        "http://192.168.1.1/a.wav",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/a.wav",
        "file:///etc/passwd",
        "ftp://example.com/a.wav",
        "http://user:pw@example.com/a.wav",
    ):
        answer = submit(server, app, url)
        assert answer["code"] == 1001, (url, answer)
        assert "id" not in answer


def test_jobs_survive_restart_and_are_purged(tmp_path: Path, files: FileServer) -> None:
    env = {"TINGYIN_FETCH_ALLOW": "127.0.0.1", "TINGYIN_JOB_RETENTION_S": "6"}
    home = tmp_path / "home"
    first = Server(home, env=env, worker=False).wait_ready()
    app = first.create_app("volc-restart")
    accepted = submit(
        first, app, f"{files.url}/english.flac", audio={"format": "flac"}, additions={"language": "en-US"}
    )
    first.stop()  # never processed: no worker ran
    second = Server(home, env=env).wait_ready()
    try:
        done = query(second, app, accepted["id"])
        assert done["code"] == 1000 and "paper" in done["text"].lower()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answer = httpx.post(
                f"{second.url}/api/v1/auc/query",
                json={
                    "appid": app["app_id"],
                    "token": app["app_token"],
                    "cluster": "c",
                    "id": accepted["id"],
                },
            ).json()
            if answer["resp"]["code"] == 1001:
                break
            time.sleep(1)
        assert answer["resp"]["code"] == 1001, "the finished job was not purged after its retention"
    finally:
        second.stop()


def test_every_utterance_has_a_speaker_when_asked(auc: Server, files: FileServer) -> None:
    """One speaker, short clip: a client doing u["additions"]["speaker"] must not get a KeyError."""
    app = auc.create_app("volc-one-speaker")
    accepted = submit(
        auc,
        app,
        f"{files.url}/mandarin.flac",
        audio={"format": "flac"},
        additions={"with_speaker_info": "True"},
    )
    done = query(auc, app, accepted["id"])
    assert done["code"] == 1000 and "金融" in done["text"], done
    assert done["utterances"] and {u["additions"]["speaker"] for u in done["utterances"]} == {"1"}


def test_uid_is_optional(auc: Server, files: FileServer) -> None:
    app = auc.create_app("volc-no-uid")
    accepted = submit(
        auc,
        app,
        f"{files.url}/english.flac",
        user=None,
        audio={"format": "flac"},
        additions={"language": "en-US"},
    )
    assert accepted["code"] == 1000, accepted
    assert "paper" in query(auc, app, accepted["id"])["text"].lower()


@pytest.mark.parametrize(
    ("name", "audio_part"),
    [
        ("english.ogg", {"format": "ogg", "codec": "opus"}),
        ("english.opus", {"format": "opus", "codec": "opus"}),
        ("english-8k.raw", {"format": "raw", "codec": "raw", "rate": 8000, "bits": 16, "channel": 1}),
        ("english-8k.raw", {"format": "pcm", "rate": 8000}),
    ],
)
def test_opus_and_raw_pcm(auc: Server, files: FileServer, name: str, audio_part: dict[str, Any]) -> None:
    app = auc.create_app(f"volc-codec-{len(audio_part)}-{audio_part['format']}")
    accepted = submit(auc, app, f"{files.url}/{name}", audio=audio_part, additions={"language": "en-US"})
    assert accepted["code"] == 1000, accepted
    done = query(auc, app, accepted["id"])
    assert done["code"] == 1000 and "paper" in done["text"].lower(), done
    # Raw opus packets have no framing to decode them by: refused at submit.
    assert submit(auc, app, f"{files.url}/{name}", audio={"format": "raw", "codec": "opus"})["code"] == 1001


def test_processing_deadline_is_1021(tmp_path: Path, files: FileServer) -> None:
    """A job still recognising when its deadline passes fails with 1021 (the seed's processing timeout)."""
    env = {"TINGYIN_FETCH_ALLOW": "127.0.0.1", "TINGYIN_TRANSCRIPTION_DEADLINE_S": "0.01"}
    server = Server(tmp_path / "home", env=env).wait_ready()
    try:
        app = server.create_app("volc-deadline")
        accepted = submit(server, app, f"{files.url}/talk.wav")
        assert accepted["code"] == 1000
        failed = query(server, app, accepted["id"])
        assert failed["code"] == 1021, failed
        assert "Traceback" not in failed["message"]
    finally:
        server.stop()


def test_utterances_split_where_the_speaker_changes(auc: Server, files: FileServer) -> None:
    """Turns 0.2 s apart would be one utterance by pauses alone; with speakers no utterance spans two."""
    app = auc.create_app("volc-quick-turns")
    _, turns = conversation(gap_s=0.2)
    accepted = submit(auc, app, f"{files.url}/quick-talk.wav", additions={"with_speaker_info": "True"})
    done = query(auc, app, accepted["id"])
    assert done["code"] == 1000, done
    spanning = []
    for utterance in done["utterances"]:
        start, end = utterance["start_time"] / 1000, utterance["end_time"] / 1000
        inside = [s for t0, t1, s in turns if min(end, t1) - max(start, t0) > 0.3]
        if len(set(inside)) > 1:
            spanning.append((utterance["text"], inside))
    assert not spanning, spanning
    assert {u["additions"]["speaker"] for u in done["utterances"]} == {"1", "2"}
