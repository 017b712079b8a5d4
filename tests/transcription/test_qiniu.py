"""Qiniu recording-file recognition over real HTTP, every request signed by the official ``qiniu`` SDK."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import requests
from qiniu import QiniuMacAuth
from qiniu.auth import QiniuMacRequestsAuth

from tests.conftest import FIXTURES, Server
from tests.transcription.helpers import EN_CLIP, SPEAKER_B, conversation, stereo_call
from tingyin import audio


@pytest.fixture(scope="module")
def qiniu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(
        tmp_path_factory.mktemp("qiniu") / "home", env={"TINGYIN_QINIU_REPULL_WINDOW_S": "3"}
    ).wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keys(qiniu_server: Server) -> dict[str, str]:
    return qiniu_server.create_app("qiniu-client")


def call(
    server: Server,
    keys: dict[str, str],
    cmd: str,
    body: dict[str, Any],
    auth: QiniuMacAuth | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    signer = auth or QiniuMacAuth(keys["api_key"], keys["secret_key"])
    return requests.post(
        f"{server.url}/?cmd={cmd}",
        json=body,
        auth=QiniuMacRequestsAuth(signer),
        headers=headers or {},
        timeout=300,
    )


def submit(server: Server, keys: dict[str, str], audio_bytes: bytes, **fields: Any) -> dict[str, Any]:
    body = {"voice_id": "test_voice", "audio": base64.b64encode(audio_bytes).decode(), **fields}
    response = call(server, keys, "async", body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def pull(server: Server, keys: dict[str, str], session_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = call(server, keys, "pull", {"session_id": session_id}).json()
        if answer["ret"] not in (1011, 1012):
            return dict(answer)
        time.sleep(0.5)
    raise AssertionError("session did not finish")


def test_async_pull_with_words_and_repull_window(qiniu_server: Server, keys: dict[str, str]) -> None:
    accepted = submit(qiniu_server, keys, SPEAKER_B[0].read_bytes(), need_words=1, format="flac")
    assert accepted["ret"] == 0 and accepted["msg"] == "success" and accepted["session_id"]
    result = pull(qiniu_server, keys, accepted["session_id"])
    assert result["ret"] == 0, result
    assert {"all_text", "c_text", "s_text", "duration", "texts"} <= set(result)
    assert "金融" in result["all_text"] and 5.0 < result["duration"] < 5.6
    segment = result["texts"][0]
    assert {"chan_no", "seg_no", "mbtm", "metm", "text", "role", "words"} <= set(segment)
    assert segment["role"] == "unk" and segment["chan_no"] == 0
    word = segment["words"][0]
    assert set(word) == {"word", "seg_start", "seg_end", "voice_start", "voice_end"}
    assert word["voice_start"] == pytest.approx(segment["mbtm"] + word["seg_start"])
    again = call(qiniu_server, keys, "pull", {"session_id": accepted["session_id"]}).json()
    assert again["ret"] == 0  # within the re-pull window
    time.sleep(3.5)
    late = call(qiniu_server, keys, "pull", {"session_id": accepted["session_id"]}).json()
    assert late["ret"] == 1013
    # The uploaded audio went when the job ended (nothing plays it back); the result stays for re-pulls.
    kept = qiniu_server.home / "blobs" / "jobs" / accepted["session_id"]
    assert not [p for p in kept.rglob("*") if p.is_file()]
    assert call(qiniu_server, keys, "pull", {"session_id": "no-such-session"}).json()["ret"] == 1014


def test_stereo_channels_are_transcribed_apart(qiniu_server: Server, keys: dict[str, str]) -> None:
    accepted = submit(qiniu_server, keys, stereo_call(), model_type="cn_en_16k")
    result = pull(qiniu_server, keys, accepted["session_id"])
    assert result["ret"] == 0, result
    by_channel: dict[int, str] = {}
    for segment in result["texts"]:
        by_channel[segment["chan_no"]] = by_channel.get(segment["chan_no"], "") + segment["text"]
    assert set(by_channel) == {0, 1}
    assert "金融" in by_channel[0] and "paper" in by_channel[1].lower()


def test_diarization_and_roles(qiniu_server: Server, keys: dict[str, str]) -> None:
    talk, _ = conversation()
    accepted = submit(qiniu_server, keys, talk, need_dia=1, need_role=1)
    result = pull(qiniu_server, keys, accepted["session_id"])
    assert result["ret"] == 0, result
    roles = {segment["role"] for segment in result["texts"]}
    assert roles == {"C", "S"}, result["texts"]
    assert result["c_text"] and result["s_text"]
    assert set(result["c_text"].split("\n")).isdisjoint(result["s_text"].split("\n"))


def test_hot_words_validation_and_parameter_errors(qiniu_server: Server, keys: dict[str, str]) -> None:
    clip = EN_CLIP.read_bytes()
    ok = submit(qiniu_server, keys, clip, model_type="en", hot_words=[{"hot_word": "printing", "factor": 3}])
    assert ok["ret"] == 0
    assert submit(qiniu_server, keys, clip, voice_id="")["ret"] == 100
    assert submit(qiniu_server, keys, clip, model_type="klingon")["ret"] == 100
    assert submit(qiniu_server, keys, clip, hot_words=[{"hot_word": "x", "factor": 11}])["ret"] == 100
    no_factor = submit(qiniu_server, keys, clip, hot_words=[{"hot_word": "printing"}])
    assert no_factor["ret"] == 100 and "factor is required" in no_factor["msg"]
    not_a_string = submit(qiniu_server, keys, clip, voice_id=5)
    assert not_a_string["ret"] == 100 and "voice_id must be a string" in not_a_string["msg"]
    assert submit(qiniu_server, keys, clip, hot_words=[{"hot_word": "长" * 14, "factor": 1}])["ret"] == 100
    too_many = [{"hot_word": f"w{i}", "factor": 1} for i in range(101)]
    assert submit(qiniu_server, keys, clip, hot_words=too_many)["ret"] == 100
    assert submit(qiniu_server, keys, clip, need_dia=7)["ret"] == 100
    assert submit(qiniu_server, keys, b"")["ret"] == 107
    assert submit(qiniu_server, keys, b"plain text, not audio" * 100)["ret"] == 119
    assert submit(qiniu_server, keys, clip, format="midi")["ret"] == 120
    bad_base64 = call(qiniu_server, keys, "async", {"voice_id": "v", "audio": "***"}).json()
    assert bad_base64["ret"] == 119
    assert pull(qiniu_server, keys, ok["session_id"])["ret"] == 0


def test_signatures_are_verified(qiniu_server: Server, keys: dict[str, str]) -> None:
    body = {"session_id": "whatever"}
    wrong_secret = QiniuMacAuth(keys["api_key"], "not-the-secret")
    assert call(qiniu_server, keys, "pull", body, auth=wrong_secret).status_code == 401
    unknown_key = QiniuMacAuth("unknown-access-key", keys["secret_key"])
    assert call(qiniu_server, keys, "pull", body, auth=unknown_key).status_code == 401
    unsigned = requests.post(f"{qiniu_server.url}/?cmd=pull", json=body, timeout=30)
    assert unsigned.status_code == 401 and unsigned.json()["error"] == "bad token"
    # A signature over a different body than the one sent
    signer = QiniuMacAuth(keys["api_key"], keys["secret_key"])
    prepared = requests.Request("POST", f"{qiniu_server.url}/?cmd=pull", json=body).prepare()
    QiniuMacRequestsAuth(signer)(prepared)
    prepared.body = b'{"session_id": "tampered"}'
    prepared.headers["Content-Length"] = str(len(prepared.body))
    assert requests.Session().send(prepared, timeout=30).status_code == 401
    # A correctly signed request whose X-Qiniu-Date is 20 minutes old
    no_stamp = QiniuMacAuth(keys["api_key"], keys["secret_key"], disable_qiniu_timestamp_signature=True)
    stale = (datetime.now(UTC) - timedelta(minutes=20)).strftime("%Y%m%dT%H%M%SZ")
    old = call(qiniu_server, keys, "pull", body, auth=no_stamp, headers={"X-Qiniu-Date": stale})
    assert old.status_code == 401 and "15 minutes" in old.json()["msg"]
    fresh = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    current = call(qiniu_server, keys, "pull", body, auth=no_stamp, headers={"X-Qiniu-Date": fresh})
    assert current.status_code == 200 and current.json()["ret"] == 1014
    # Without X-Qiniu-Date at all the signature alone is checked
    assert call(qiniu_server, keys, "pull", body, auth=no_stamp).json()["ret"] == 1014


def test_sessions_belong_to_their_app(qiniu_server: Server, keys: dict[str, str]) -> None:
    accepted = submit(qiniu_server, keys, EN_CLIP.read_bytes(), model_type="en")
    other = qiniu_server.create_app("qiniu-neighbour")
    assert call(qiniu_server, other, "pull", {"session_id": accepted["session_id"]}).json()["ret"] == 1014
    assert pull(qiniu_server, keys, accepted["session_id"])["ret"] == 0


def sync(server: Server, keys: dict[str, str], audio_bytes: bytes, **fields: Any) -> dict[str, Any]:
    body = {"voice_id": "test_voice", "audio": base64.b64encode(audio_bytes).decode(), **fields}
    response = call(server, keys, "sync", body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def pcm_of(samples: np.ndarray) -> bytes:
    return bytes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def test_sync_answers_at_once_as_the_seed_shows(qiniu_server: Server, keys: dict[str, str]) -> None:
    """The seed's own example: voice_id + audio posted to ?cmd=sync, the result in the answer."""
    answer = sync(qiniu_server, keys, SPEAKER_B[0].read_bytes())
    assert answer["ret"] == 0 and answer["msg"] == "success", answer
    assert {"all_text", "c_text", "s_text", "duration", "texts"} <= set(answer) and "session_id" not in answer
    assert "金融" in answer["all_text"] and answer["c_text"] == answer["s_text"] == ""
    segment = answer["texts"][0]
    assert segment["chan_id"] == 0 and segment["role"] == "unk" and segment["mbtm"] < segment["metm"]
    assert "words" not in segment and "speaker" not in segment
    assert "words" in sync(qiniu_server, keys, SPEAKER_B[0].read_bytes(), need_words=1)["texts"][0]
    # Longer than a sync call takes: the caller is told to use async.
    too_long = sync(qiniu_server, keys, bytes(61 * 16000 * 2), format="pcm")
    assert too_long["ret"] == 100 and "async" in too_long["msg"], too_long
    assert sync(qiniu_server, keys, b"plain text, not audio" * 100)["ret"] == 119
    assert sync(qiniu_server, keys, bytes(3 * 16000 * 2), format="pcm")["ret"] == 105  # silence
    assert sync(qiniu_server, keys, SPEAKER_B[0].read_bytes(), voice_id="")["ret"] == 100


def test_pcm_is_16k_mono_unless_stated(qiniu_server: Server, keys: dict[str, str]) -> None:
    samples = audio.decode(SPEAKER_B[0]).samples
    accepted = submit(qiniu_server, keys, pcm_of(samples), format="pcm")
    assert accepted["ret"] == 0, accepted
    result = pull(qiniu_server, keys, accepted["session_id"])
    assert result["ret"] == 0 and "金融" in result["all_text"], result
    assert result["duration"] == pytest.approx(samples.shape[0] / 16000, abs=0.05)
    narrow = sync(qiniu_server, keys, pcm_of(audio.resample(samples, 16000, 8000)), format="pcm", rate=8000)
    assert narrow["ret"] == 0 and "金融" in narrow["all_text"], narrow
    assert sync(qiniu_server, keys, pcm_of(samples), format="pcm", rate="fast")["ret"] == 100


def test_need_dia_alone_shows_speakers_in_texts(qiniu_server: Server, keys: dict[str, str]) -> None:
    talk, turns = conversation()
    accepted = submit(qiniu_server, keys, talk, need_dia=1)
    result = pull(qiniu_server, keys, accepted["session_id"])
    assert result["ret"] == 0, result
    assert {segment["role"] for segment in result["texts"]} == {"unk"}  # no role was asked for
    assert result["c_text"] == result["s_text"] == ""
    found = []
    for segment in result["texts"]:
        middle = (segment["mbtm"] + segment["metm"]) / 2000
        truth = next((s for start, end, s in turns if start - 0.3 <= middle <= end + 0.3), None)
        found.append((truth, segment["speaker"]))
    assert {speaker for _, speaker in found} == {1, 2}, found
    mapping = {truth: speaker for truth, speaker in found if truth}
    assert len(set(mapping.values())) == 2, found
    assert sum(1 for truth, speaker in found if truth and mapping[truth] == speaker) >= len(found) - 1, found


SPEECH = FIXTURES / "speech"


def test_hot_word_factors_on_real_clips(qiniu_server: Server, keys: dict[str, str]) -> None:
    """+5 fixes a name the model mishears (盛源生活广场), −5 steers a sound-alike away (选择了涨价, heard as
    长假) without deleting what was said; the monotonic effect over 1..10 is shown in tests/speech."""
    name = (SPEECH / "BAC009S0150W0016.flac").read_bytes()
    assert "盛源" not in sync(qiniu_server, keys, name)["all_text"]
    favoured = sync(qiniu_server, keys, name, hot_words=[{"hot_word": "盛源", "factor": 5}])
    assert "盛源生活广场" in favoured["all_text"], favoured
    homophone = (SPEECH / "BAC009S0252W0176.flac").read_bytes()
    plain = sync(qiniu_server, keys, homophone)["all_text"]
    assert "长假" in plain
    steered = sync(qiniu_server, keys, homophone, hot_words=[{"hot_word": "长假", "factor": -5}])["all_text"]
    assert "长假" not in steered and "涨价" in steered, steered
    assert len(steered) == len(plain) and "开发商" in steered


def test_cantonese_model_on_cantonese_speech(qiniu_server: Server, keys: dict[str, str]) -> None:
    """model_type cantonese on Cantonese (espeak-ng's yue voice): Chinese text or nothing, never the
    decoder's Cantonese style prompt (docs/speech.md, Limits, says how far from right it is)."""
    from tests.audiofactory import CANTONESE_SENTENCES, cantonese_speech

    wav = cantonese_speech(CANTONESE_SENTENCES[0])
    if wav is None:
        pytest.skip("espeak-ng is not installed")
    answer = sync(qiniu_server, keys, wav, model_type="cantonese")
    assert answer["ret"] == 0, answer
    text = answer["all_text"]
    assert "广东话" not in text and "廣東話" not in text, text
    assert len((set(text) & set(CANTONESE_SENTENCES[0])) - set("，。")) >= 2, text
