"""The recording benchmark end to end: short recordings from the dev sets through a real server's Volcano
API and through faster-whisper's batched pipeline, scored; the CLI's latency part against the same server."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MODEL_CACHE, REPO, Server
from tingyin.audio import decode
from tingyin.eval.live import LocalServer, ServerClient
from tingyin.eval.recordings import (
    ClipPicker,
    Normaliser,
    default_scorer,
    load_clips,
    plan_recording,
    score_recording,
    write_recording,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def auc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    env = {"TINGYIN_FETCH_ALLOW": "127.0.0.1", "TINGYIN_CPU_THREADS": "2"}
    server = Server(tmp_path_factory.mktemp("bench") / "home", env=env).wait_ready()
    yield server, server.create_app("bench")
    server.stop()


def eval_recordings(
    args: list[str], testdata: Path, tmp_path: Path, *, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`tingyin eval recordings ARGS` on ``testdata``, its work and report under ``tmp_path``: the finished
    process and the report (empty where the command wrote none)."""
    out = tmp_path / "report.json"
    where = ["--testdata", str(testdata), "--work-dir", str(tmp_path / "work"), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "tingyin.cli", "eval", "recordings", *args, *where],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,  # the first /server_api request loads the models into the API process
    )
    report = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    return done, report


def test_recordings_through_volcano_and_the_batched_pipeline(
    shared_testdata: Path, auc: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    server, app = auc
    pools = load_clips(shared_testdata)
    rng = random.Random(7)
    picker = ClipPicker(pools, rng)
    recordings = []
    for name, kind in (("two", "zh2"), ("mixed", "zh-en3")):
        clips, pauses = plan_recording(kind, picker, rng, sentences=3)
        recordings.append(write_recording(name, kind, clips, pauses, tmp_path))
    assert {s.speaker for s in recordings[1].sentences} == {"S0150", "S0252", "LJ"}
    normaliser = Normaliser(default_scorer())
    client = ServerClient(server.url, app, server.process.pid)
    try:
        with client.files(recordings) as files:
            for recording in recordings:
                result = client.transcribe_volcano(files.url_of(recording), recording.language)
                assert result.failure is None
                assert result.segments and all(s.end_s > s.start_s for s in result.segments)
                assert all(s.speaker is not None for s in result.segments)  # with_speaker_info
                score = score_recording("ours", recording, result.segments, result.text, normaliser)
                assert len(score.sentences) == 3 and score.reference_units > 20
                # A loose bound: the point is that real text was aligned to the right references.
                assert score.error_rate < 0.6, score.as_dict()
                assert max(s.coverage for s in score.sentences) > 0.5
    finally:
        client.stop()

    from tingyin.eval.reference import BatchedReference

    reference = BatchedReference(MODEL_CACHE, threads=2)
    assert reference.describe()["batch_size"] == 8
    run = reference.transcribe(recordings[0])
    batched = score_recording("batched", recordings[0], run.segments, run.text, normaliser, wall_s=run.wall_s)
    assert run.wall_s > 0 and batched.error_rate < 0.6, batched.as_dict()
    assert batched.dropped == []


def test_cli_latency_part_against_a_running_server(
    shared_testdata: Path, auc: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    server, app = auc
    credentials = tmp_path / "app.json"
    credentials.write_text(json.dumps(app))
    done, report = eval_recordings(
        ["--latency", "--latency-clips", "3", "--url", server.url, "--credentials", str(credentials)],
        shared_testdata,
        tmp_path,
        env=server.env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "latency (/server_api dev_pid 1537, 3 warm 5 s clips)" in done.stdout
    latency = report["latency"]
    assert latency["clips"] == 3 and latency["failures"] == []
    assert 0 < latency["p50_s"] <= latency["p90_s"] <= latency["max_s"]
    assert report["parts"] == ["latency"] and "drops" not in report


def test_a_server_the_benchmark_started_starts_again_afresh(tmp_path: Path) -> None:
    # The speed part times its request without speakers on a restarted server, so that it does not find
    # the first request's rewrites in the recognizer's caches.
    server = LocalServer(tmp_path / "home", threads=2, models_dir=MODEL_CACHE, log=lambda line: None)
    server.start()
    try:
        first_pid, first_app = server.pid, server.credentials["app_id"]
        assert server.restart()
        assert server.alive() and server.pid != first_pid and server.credentials["app_id"] != first_app
        speech = decode(REPO / "tests" / "fixtures" / "speech" / "BAC009S0150W0016.flac").samples
        answer = server.recognize_baidu(speech, "/server_api", 1537)  # a token of the new app
        assert answer.failure is None and answer.code == 0 and answer.text
    finally:
        server.stop()
    assert not server.alive()
    elsewhere = ServerClient(server.url, {})
    assert not elsewhere.restart()  # a server started elsewhere is left alone
    elsewhere.stop()


def test_cli_speed_part_in_rounds_on_fresh_servers(shared_testdata: Path, tmp_path: Path) -> None:
    # Every round after the first times ours without speakers on a server started again (no caches of the
    # earlier requests) and the batched pipeline right after it; the report keeps each round's times.
    done, report = eval_recordings(
        ["--speed", "--long-seconds", "30", "--speed-rounds", "2", "--threads", "2"],
        shared_testdata,
        tmp_path,
        env={**os.environ, "TINGYIN_MODELS_DIR": str(MODEL_CACHE)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    speed = report["speed"]
    assert speed["fresh_server_without_speakers"] is True
    assert speed["ours_no_speakers"]["failure"] is None and speed["ours_no_speakers"]["lost"] == []
    rounds = speed["rounds_no_speakers"]
    assert len(rounds) == 2 and all(r["ours_s"] > 0 and r["batched_s"] > 0 for r in rounds)
    assert rounds[0]["ours_s"] == speed["ours_no_speakers"]["wall_s"]
    ratios = sorted(r["batched_s"] / r["ours_s"] for r in rounds)
    # (the report's times are rounded to 10 ms: the ratio of rounded times differs in the third digit)
    assert speed["speed_ratio_no_speakers_median"] == pytest.approx(sum(ratios) / 2, rel=0.02)
    assert "median" in done.stdout
