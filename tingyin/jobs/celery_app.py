"""The Celery application: embedded SQLite broker by default, Redis (or any Celery broker) at scale.

Workers: ``tingyin worker`` (any number of machines), or the one ``tingyin serve`` supervises.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import Celery, Task
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.transport.sqlalchemy import Transport as SqlAlchemyTransport

from tingyin.config import get_settings
from tingyin.errors import ServiceUnavailable

log = logging.getLogger(__name__)
QUEUE = "tingyin"
SQL_BROKER_PREFIX = "sqla+"  # kombu's SQLAlchemy transport, as Celery's broker URLs name it


class PromptSqlTransport(SqlAlchemyTransport):
    """kombu's SQLAlchemy transport (the embedded SQLite broker), asking the database for a new message 5
    times a second instead of once while jobs are coming: an idle worker took up to 1-2 s to start a job
    (measured on the 601 s recording benchmark: 1.0-1.9 s between a Volcano submit and the job's start).
    A minute after the last message it asks once a second again: each ask costs the worker about 10 ms of
    CPU, so polling 5 times a second kept an idle worker at 6% of a core. Set here, not in the transport
    options, because that transport hands every option to ``create_engine``."""

    busy_polling_interval = 0.2
    idle_polling_interval = 1.0
    busy_window_s = 60.0  # after the last message delivered, the worker counts as busy this long
    polling_interval = busy_polling_interval  # kombu's attribute: set before each wait (``drain_events``)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_delivery = time.monotonic()  # a new worker is likely to get a job soon

    def interval(self, now: float) -> float:
        """How long to wait between asks at ``now`` (``time.monotonic()`` seconds)."""
        busy = now - self.last_delivery < self.busy_window_s
        return self.busy_polling_interval if busy else self.idle_polling_interval

    # kombu's stubs give its base and virtual transports different signatures; this is the virtual one's.
    def drain_events(self, connection: Any, timeout: Any = None) -> Any:  # type: ignore[override]
        # kombu reads ``polling_interval`` once a call; Celery's loop calls with a 2 s timeout.
        self.polling_interval = self.interval(time.monotonic())
        delivered = super().drain_events(connection, timeout)  # returns once it delivered a message
        self.last_delivery = time.monotonic()
        return delivered


def _transport_options(broker_url: str, visibility_timeout: float) -> dict[str, Any]:
    if broker_url.startswith(("redis", "rediss")):
        # An unacknowledged message (its worker died) is redelivered after visibility_timeout.
        return {
            "visibility_timeout": visibility_timeout,
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
            "socket_connect_timeout": 3,
        }
    # The SQLAlchemy transport hands its options to create_engine: only engine arguments go here.
    return {}


class GracefulStop:
    """A worker's shutdown (SIGTERM/SIGINT): no new job is claimed, a running job hands itself back
    to the queue at its next progress report, and if it has not within the grace period, the
    process exits anyway; its lease then runs out and another worker takes the job, as after a
    crash. Either way the process exits 0."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def begin(self, grace_s: float) -> None:
        if self.event.is_set():
            return
        self.event.set()
        threading.Thread(target=self._deadline, args=(grace_s,), name="stop-deadline", daemon=True).start()

    @staticmethod
    def _deadline(grace_s: float) -> None:
        time.sleep(grace_s)
        log.warning("a job did not hand itself back within %.0f s; exiting anyway", grace_s)
        logging.shutdown()
        os._exit(0)


class TingyinCelery(Celery):
    """The Celery app, with the worker's graceful stop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.graceful_stop = GracefulStop()


def make_celery() -> TingyinCelery:
    settings = get_settings()
    broker_url = settings.celery_broker_url
    transport: type[SqlAlchemyTransport] | None = None
    if broker_url.startswith(SQL_BROKER_PREFIX):
        # Named by the URL's prefix, the transport would be kombu's own: the class is given instead.
        broker_url, transport = broker_url.removeprefix(SQL_BROKER_PREFIX), PromptSqlTransport
    app = TingyinCelery("tingyin", broker=broker_url, backend=None)
    app.conf.update(
        task_default_queue=QUEUE,
        broker_transport=transport,
        task_acks_late=True,  # a message is acknowledged only after its job ran
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # results live in the jobs table
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=3,
        worker_hijack_root_logger=False,
        broker_transport_options=_transport_options(
            settings.celery_broker_url, settings.broker_visibility_timeout
        ),
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


celery_app = make_celery()


@celery_app.task(name="tingyin.run_job", bind=True, max_retries=None, acks_late=True)
def run_job_task(self: Task, job_id: str) -> None:
    from tingyin.jobs.service import execute_job

    claim = execute_job(job_id, stopping=celery_app.graceful_stop.event)
    if claim.outcome == "missing":
        # The submitter's transaction may not be committed yet; give it a moment, then give up.
        if self.request.retries < 10:
            raise self.retry(countdown=0.5)
        log.warning("job %s does not exist; dropping its message", job_id)
    elif claim.outcome == "busy":
        # Another worker holds a live lease. Come back when it would have run out: if that worker
        # died, this delivery takes the job over; if it finished, this delivery finds it done.
        raise self.retry(countdown=min(claim.retry_in, 300.0))


@celery_app.task(name="tingyin.finish_hook", bind=True, max_retries=8, acks_late=True)
def finish_hook_task(self: Task, job_id: str) -> None:
    from tingyin.jobs.service import finish_hook_for, get_job

    job = get_job(job_id)
    hook = finish_hook_for(job.kind)
    if hook is None:
        return
    try:
        hook(job_id)
    except Exception as exc:
        # Exponential backoff: 2, 4, 8, ... seconds, up to max_retries.
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc


def _send(task: Any, job_id: str) -> None:
    try:
        task.apply_async(args=(job_id,), queue=QUEUE, retry=False)
    except (KombuOperationalError, OSError) as exc:
        raise ServiceUnavailable(f"the job broker is unavailable: {exc}") from exc


def send_run_job(job_id: str) -> None:
    _send(run_job_task, job_id)


def send_finish_hook(job_id: str) -> None:
    _send(finish_hook_task, job_id)


def ping_broker(timeout: float = 2.0) -> None:
    try:
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:
        raise ServiceUnavailable(f"the job broker is unavailable: {exc}") from exc


_sweeper: Any = None


@worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    global _sweeper
    from tingyin.jobs.service import JobSweeper
    from tingyin.store.db import get_engine

    get_engine()  # migrate before the first job
    _sweeper = JobSweeper().start()


@worker_shutting_down.connect
def _begin_graceful_stop(**_: Any) -> None:
    # Sent from the signal handler of a warm shutdown: only set flags and start a timer here.
    celery_app.graceful_stop.begin(get_settings().shutdown_grace_s)


@worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop()
