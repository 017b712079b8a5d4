"""``GET /metrics`` scraped from a running server before and after real requests: the server's own
counters, the embedded worker's (another process: multiprocess metrics) and the job tables."""

from __future__ import annotations

import httpx
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FIXTURES, Server, bearer
from tingyin.audio import decode

pytestmark = pytest.mark.slow
SPEECH = FIXTURES / "speech"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: Server) -> Samples:
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        assert family.name.startswith("tingyin_"), family.name
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_audio_jobs_and_models(server: Server, demo_app: dict[str, str]) -> None:
    before = scrape(server)
    short = SPEECH / "LJ002-0114.flac"
    job_clip = SPEECH / "LJ001-0126.flac"
    client = OpenAI(base_url=f"{server.url}/v1", api_key=demo_app["app_token"], max_retries=0)
    client.audio.transcriptions.create(model="whisper-1", file=(short.name, short.read_bytes()))
    job = httpx.post(
        f"{server.url}/v1/transcriptions", content=job_clip.read_bytes(), headers=bearer(demo_app)
    ).json()
    assert server.wait_job(demo_app, job["id"])["status"] == "succeeded"
    assert httpx.get(f"{server.url}/no/such/route").status_code == 404
    after = scrape(server)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    openai_route = {"dialect": "openai", "route": "/v1/audio/transcriptions", "method": "POST"}
    assert grew("tingyin_http_requests_total", **openai_route, status="200") == 1
    assert grew("tingyin_http_request_duration_seconds_count", **openai_route) == 1
    assert grew("tingyin_http_request_duration_seconds_sum", **openai_route) > 0
    assert (
        grew("tingyin_http_requests_total", dialect="native", route="unmatched", method="GET", status="404")
        == 1
    )
    submit = {"dialect": "native", "route": "/v1/transcriptions", "method": "POST", "status": "202"}
    assert grew("tingyin_http_requests_total", **submit) == 1
    # Audio seconds by model and API: the OpenAI request in the server, the native job in the worker.
    openai_seconds = grew("tingyin_audio_seconds_total", model="whisper-base", api="openai")
    assert openai_seconds == pytest.approx(decode(short).duration_s, abs=0.01)
    native_seconds = grew("tingyin_audio_seconds_total", model="whisper-base", api="native")
    assert native_seconds == pytest.approx(decode(job_clip).duration_s, abs=0.01)
    assert grew("tingyin_jobs_finished_total", kind="transcription", state="succeeded") == 1
    assert grew("tingyin_job_duration_seconds_count", kind="transcription") == 1
    # Read from the database and the executor at scrape time.
    assert value(after, "tingyin_jobs", kind="transcription", state="succeeded") >= 1
    assert ("tingyin_job_queue_depth", frozenset({("kind", "transcription")})) in after
    assert ("tingyin_inference_running", frozenset()) in after
    assert ("tingyin_inference_waiting", frozenset()) in after
    # The server and its worker each hold Whisper loaded.
    assert value(after, "tingyin_model_loaded", model="asr:whisper-base") >= 2
