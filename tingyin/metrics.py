"""Prometheus metrics of the server and its workers, scraped at ``GET /metrics``.

Counters and histograms are written where the work happens: HTTP requests (by the request middleware), audio
seconds recognised (by the recording pipeline, labelled with the API the work came from), jobs finished (by
the worker that ran them) and models loaded (by the model manager). Job counts by kind and state, training
runs and the inference queue are read at scrape time from the database and the executor.

Several processes: ``tingyin serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at ``TINGYIN_METRICS_DIR`` (default
``$TINGYIN_HOME/metrics``) before anything imports ``prometheus_client``; its embedded worker inherits it, a
``tingyin worker`` on the same machine joins when ``TINGYIN_METRICS_DIR`` names it, and ``/metrics`` adds up
every process's samples.
A process without that directory (the CLI, an app built in a test) keeps its metrics in its own registry.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from tingyin.inference import InferenceExecutor

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)

# The API a piece of work came from ("native", "openai", "baidu-asr", a job's vendor...): set where a request
# or job enters, read where audio is processed, so the core needs no parameter for it.
current_api: contextvars.ContextVar[str] = contextvars.ContextVar("tingyin_api", default="cli")


class Metrics:
    """The instruments of one process. In multiprocess mode their values live in files shared with the
    scraping server; otherwise in ``self.registry``."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self._scrape_lock = threading.Lock()
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        self.requests = Counter(
            "tingyin_http_requests",
            "HTTP requests answered, by API dialect, route template, method and status",
            ["dialect", "route", "method", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "tingyin_http_request_duration_seconds",
            "Time from a request's arrival to its last response byte",
            ["dialect", "route", "method"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.audio_seconds = Counter(
            "tingyin_audio_seconds",
            "Seconds of audio recognised or diarized, by model and by the API the work came from",
            ["model", "api"],
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "tingyin_jobs_finished",
            "Jobs a worker of this server finished, by kind and final state",
            ["kind", "state"],
            registry=self.registry,
        )
        self.job_seconds = Histogram(
            "tingyin_job_duration_seconds",
            "Time a worker spent running a job, by kind",
            ["kind"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "tingyin_model_loaded",
            "Processes holding the model loaded (0: not loaded anywhere)",
            ["model"],
            multiprocess_mode="livesum",
            registry=self.registry,
        )

    # ---------------------------------------------------------------------------------------- recording

    def observe_request(self, dialect: str, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(dialect, route, method, str(status)).inc()
        self.request_seconds.labels(dialect, route, method).observe(seconds)

    def audio_processed(self, model: str, seconds: float) -> None:
        if seconds > 0:
            self.audio_seconds.labels(model, current_api.get()).inc(seconds)

    def job_finished(self, kind: str, state: str, seconds: float) -> None:
        self.jobs_finished.labels(kind, state).inc()
        self.job_seconds.labels(kind).observe(seconds)

    def model_load_changed(self, key: str, loaded: bool) -> None:
        self.model_loaded.labels(model_label(key)).set(1 if loaded else 0)

    # ----------------------------------------------------------------------------------------- scraping

    def exposition(self, extra: list[Any]) -> tuple[bytes, str]:
        """The text format of every process's metrics plus the ``extra`` collectors (read now)."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        registry: CollectorRegistry
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiprocess_dir)
        else:
            registry = self.registry
        with self._scrape_lock:  # the extra collectors join the process registry for one scrape at a time
            for collector in extra:
                registry.register(collector)
            try:
                return generate_latest(registry), CONTENT_TYPE_LATEST
            finally:
                for collector in extra:
                    registry.unregister(collector)


def model_label(key: str) -> str:
    """A model manager key as a label: its kind and name (``asr:whisper-base``), not the settings after."""
    return ":".join(key.split(":")[:2])


# Metrics belong to the process (in multiprocess mode prometheus_client files them by pid): one per process,
# like the process's model manager.
_lock = threading.Lock()
_process_metrics: Metrics | None = None


def process_metrics() -> Metrics:
    """This process's instruments (created on first use, after ``prepare_multiprocess`` when serving)."""
    global _process_metrics
    with _lock:
        if _process_metrics is None:
            _process_metrics = Metrics()
        return _process_metrics


def prepare_multiprocess(directory: Path, *, clear: bool) -> None:
    """Share metrics between this process and the processes it starts: set the directory in the environment
    (before ``prometheus_client`` is imported anywhere) unless the operator set one; ``clear`` removes the
    files of an earlier run (the server's start, not a worker's)."""
    if os.environ.get(MULTIPROC_ENV):
        directory = Path(os.environ[MULTIPROC_ENV])
    directory.mkdir(parents=True, exist_ok=True)
    if clear:
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)


def process_exited(pid: int) -> None:
    """Forget the live gauges of a child process that ended (its counters stay in the totals)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class StateCollector:
    """Values read at scrape time: jobs by kind and state (the queue depth is the queued ones), training
    runs by state, and the inference executor's running and waiting requests."""

    def __init__(self, inference: InferenceExecutor | None, read_counts: Callable[[], Any]) -> None:
        self.inference = inference
        self.read_counts = read_counts

    def describe(self) -> list[Metric]:
        return []  # collected on demand only

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        if self.inference is not None:
            yield GaugeMetricFamily(
                "tingyin_inference_running",
                "Synchronous inferences running now",
                value=self.inference.running,
            )
            yield GaugeMetricFamily(
                "tingyin_inference_waiting",
                "Synchronous inferences waiting for a slot",
                value=self.inference.waiting,
            )
        try:
            jobs, versions = self.read_counts()
        except Exception as exc:  # a scrape must not fail because the database is away
            log.warning("metrics: job counts unavailable: %s", exc)
            return
        by_state = GaugeMetricFamily("tingyin_jobs", "Jobs by kind and state", labels=["kind", "state"])
        queued = GaugeMetricFamily(
            "tingyin_job_queue_depth", "Jobs waiting for a worker, by kind", labels=["kind"]
        )
        queue: dict[str, int] = {}
        for kind, state, count in jobs:
            by_state.add_metric([kind, state], count)
            queue[kind] = queue.get(kind, 0) + (count if state == "queued" else 0)
        for kind, count in sorted(queue.items()):
            queued.add_metric([kind], count)
        training = GaugeMetricFamily(
            "tingyin_training_runs", "Sound-model training runs (versions) by state", labels=["state"]
        )
        for state, count in versions:
            training.add_metric([state], count)
        yield by_state
        yield queued
        yield training


def read_state_counts() -> tuple[list[tuple[str, str, int]], list[tuple[str, int]]]:
    """Jobs by (kind, status) and model versions by status, from the database."""
    from sqlalchemy import func, select

    from tingyin.store.db import session_scope
    from tingyin.store.models import Job, ModelVersion

    with session_scope() as session:
        jobs = session.execute(
            select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
        ).all()
        versions = session.execute(
            select(ModelVersion.status, func.count()).group_by(ModelVersion.status)
        ).all()
    return [(str(k), str(s), int(n)) for k, s, n in jobs], [(str(s), int(n)) for s, n in versions]


__all__ = [
    "Metrics",
    "StateCollector",
    "current_api",
    "prepare_multiprocess",
    "process_exited",
    "process_metrics",
    "read_state_counts",
]
