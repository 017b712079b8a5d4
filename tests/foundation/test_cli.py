"""The command line, as a newcomer runs it: offline transcription, models, music tagging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, MODEL_CACHE


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TINGYIN_HOME": str(home), "TINGYIN_MODELS_DIR": str(MODEL_CACHE)}
    return subprocess.run(
        [sys.executable, "-m", "tingyin.cli", *args], env=env, capture_output=True, text=True, timeout=600
    )


def test_transcribe_without_a_server(tmp_path: Path) -> None:
    clip = FIXTURES / "foundation" / "LJ001-0156.flac"
    plain = run(tmp_path, "transcribe", str(clip), "--language", "en")
    assert plain.returncode == 0, plain.stderr
    assert "printing" in plain.stdout.lower()
    assert "100%" in plain.stderr  # the progress bar ran to the end
    srt = run(tmp_path, "transcribe", str(clip), "--language", "en", "--output", "srt")
    assert srt.stdout.startswith("1\n00:00:0") and " --> " in srt.stdout
    as_json = json.loads(
        run(tmp_path, "transcribe", str(clip), "--language", "en", "--output", "json").stdout
    )
    assert as_json["language"] == "en" and as_json["utterances"][0]["words"]
    missing = run(tmp_path, "transcribe", str(tmp_path / "nope.wav"))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    refused = run(tmp_path, "transcribe", str(bad))
    assert refused.returncode == 2 and "error" in refused.stderr and "Traceback" not in refused.stderr


def test_models_list_and_verify(tmp_path: Path) -> None:
    listed = json.loads(run(tmp_path, "models", "list").stdout)
    assert {"whisper-base", "silero-vad", "speaker-dvector"} <= {m["name"] for m in listed}
    verified = json.loads(run(tmp_path, "models", "pull", "whisper-base").stdout)
    assert Path(verified["path"], "model.bin").exists()
    assert json.loads(run(tmp_path, "models", "verify", "whisper-base").stdout)["ok"] is True


def test_tag_music_file(tmp_path: Path) -> None:
    tagged = run(
        tmp_path, "tag", str(FIXTURES / "music" / "loop_garzul_16k.flac"), "--task", "MusicTaggingVocal"
    )
    assert tagged.returncode == 0, tagged.stderr
    payload = json.loads(tagged.stdout)
    assert payload["task_flow"]["result"][0]["task_output"]["tags"][0] in ("vocal", "non_vocal")


def blas_threads(*, through_cli: bool, setting: str | None = None) -> int:
    """OpenBLAS's thread count in a fresh process that imports numpy (after the CLI, or alone)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if setting is not None:
        env["OPENBLAS_NUM_THREADS"] = setting
    code = (
        ("import tingyin.cli; " if through_cli else "")
        + "import numpy, threadpoolctl; "
        + "print(max(i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_tingyin_processes_keep_openblas_on_one_thread_unless_the_operator_says_otherwise() -> None:
    # Its idle threads busy-wait after each call and slow the Whisper encoder that follows (cli.py).
    assert blas_threads(through_cli=True) == 1
    if (os.cpu_count() or 1) > 1:
        assert blas_threads(through_cli=False) > 1  # what the CLI changes
        assert blas_threads(through_cli=True, setting="2") == 2


def test_job_workers_leave_out_the_lone_request_copy_unless_the_operator_sets_it(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The copy only cuts the latency of short synchronous requests, which a worker never serves.
    from tingyin.config import get_settings, reset_settings, use_job_worker_defaults

    monkeypatch.chdir(tmp_path)  # no .env of the checkout's
    # Set through monkeypatch before it is removed, so that teardown also undoes the value
    # use_job_worker_defaults writes into os.environ itself (a delenv of an absent variable records
    # nothing to restore, and "false" would reach every later test of the session).
    monkeypatch.setenv("TINGYIN_ASR_LONE_REQUEST_COPY", "true")
    monkeypatch.delenv("TINGYIN_ASR_LONE_REQUEST_COPY")
    assert get_settings().asr_lone_request_copy  # the server keeps it
    assert not use_job_worker_defaults().asr_lone_request_copy
    reset_settings()
    assert not get_settings().asr_lone_request_copy  # the worker's later lookups (a job's recognizer)

    for chosen in ("environment", ".env"):
        monkeypatch.delenv("TINGYIN_ASR_LONE_REQUEST_COPY", raising=False)
        if chosen == "environment":
            monkeypatch.setenv("TINGYIN_ASR_LONE_REQUEST_COPY", "true")
        else:
            (tmp_path / ".env").write_text("TINGYIN_ASR_LONE_REQUEST_COPY=true\n")
        reset_settings()
        assert use_job_worker_defaults().asr_lone_request_copy, chosen
