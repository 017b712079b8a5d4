"""The bounded inference executor: a concurrency cap, a bounded queue, an admission deadline, and a busy
answer in each API's own dialect, quickly, when the server is over capacity."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

from tests.conftest import FIXTURES, Server
from tingyin.audio import decode
from tingyin.inference import TRIM_AFTER_IDLE_S, InferenceExecutor, ServerBusy

T = TypeVar("T")


def run_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a thread of its own (a browser test may leave a loop running on this one)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_at_most_concurrency_run_and_the_rest_wait_in_turn() -> None:
    executor = InferenceExecutor(concurrency=2, queue_size=10, admission_timeout_s=5)
    running, peak = 0, 0
    lock = threading.Lock()

    def work(seconds: float) -> float:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(seconds)
        with lock:
            running -= 1
        return seconds

    async def main() -> list[float]:
        return await asyncio.gather(*(executor.run(work, 0.1) for _ in range(6)))

    assert run_loop(main()) == [0.1] * 6
    assert peak == 2 and executor.running == 0 and executor.waiting == 0


def test_a_full_queue_and_a_long_wait_are_refused_as_busy() -> None:
    executor = InferenceExecutor(concurrency=1, queue_size=1, admission_timeout_s=0.3)

    async def main() -> list[object]:
        tasks = [asyncio.ensure_future(executor.run(time.sleep, 1.0)) for _ in range(3)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    started = time.monotonic()
    outcomes = run_loop(main())
    # One runs; one waits 0.3 s and gives up; the third finds the queue full and is refused at once.
    assert outcomes[0] is None
    assert all(isinstance(o, ServerBusy) for o in outcomes[1:])
    assert time.monotonic() - started < 2.0


def test_freed_memory_is_handed_back_once_after_a_burst_not_after_each_request() -> None:
    executor = InferenceExecutor(concurrency=1, queue_size=10, admission_timeout_s=5)
    trims: list[float] = []
    executor._trim = lambda: trims.append(time.monotonic())  # the real one is glibc's malloc_trim

    async def main() -> tuple[int, float]:
        for _ in range(5):  # back to back, as a client sends them: never idle for TRIM_AFTER_IDLE_S
            await executor.run(time.sleep, 0.05)
        during = len(trims)
        ended = time.monotonic()
        await asyncio.sleep(TRIM_AFTER_IDLE_S + 0.5)
        return during, ended

    during, ended = run_loop(main())
    assert during == 0
    assert len(trims) == 1 and trims[0] - ended >= TRIM_AFTER_IDLE_S - 0.1


def test_over_capacity_baidu_answers_3303_quickly_and_never_a_5xx(tmp_path: Path) -> None:
    server = Server(
        tmp_path / "home",
        env={
            "TINGYIN_INFERENCE_CONCURRENCY": "1",
            "TINGYIN_INFERENCE_QUEUE": "1",
            "TINGYIN_INFERENCE_ADMISSION_TIMEOUT_S": "1",
        },
        worker=False,
    ).wait_ready()
    try:
        app = server.create_app("busy")
        token = server.access_token(app)
        samples = decode(FIXTURES / "speech" / "BAC009S0252W0131.flac").samples
        pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
        body = {
            "format": "pcm",
            "rate": 16000,
            "channel": 1,
            "cuid": "busy",
            "token": token,
            "speech": base64.b64encode(pcm).decode(),
            "len": len(pcm),
        }

        def call(_: int) -> tuple[int, int, float]:
            started = time.monotonic()
            response = httpx.post(f"{server.url}/server_api", json=body, timeout=300)
            return response.status_code, int(response.json()["err_no"]), time.monotonic() - started

        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(call, range(8)))
        assert all(status == 200 for status, _, _ in outcomes), outcomes
        codes = [code for _, code, _ in outcomes]
        assert 0 in codes and 3303 in codes and set(codes) <= {0, 3303}, codes
        # Refusals come after the admission timeout at most, not after the work of the others.
        busy_times = sorted(seconds for _, code, seconds in outcomes if code == 3303)
        work_times = sorted(seconds for _, code, seconds in outcomes if code == 0)
        assert busy_times[0] < work_times[-1]
    finally:
        server.stop()
