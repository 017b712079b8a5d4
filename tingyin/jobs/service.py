"""Jobs: submit, run under a lease, report progress, finish exactly once, recover lost work.

The broker only carries "run job X" messages; the database holds each job's truth. A worker runs a
job only while it holds the job's lease (renewed by a heartbeat thread). If a worker dies mid-job,
its lease runs out and the job is handed out again, either by the broker (Redis redelivers an
unacknowledged message; ``task_acks_late``) or by the sweeper, which re-dispatches jobs whose lease
expired or whose dispatch never reached a worker. A result is written only by the lease holder, so
a job finishes exactly once even when two deliveries race.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Update, or_, select, update
from sqlalchemy.orm import Session

from tingyin.config import get_settings
from tingyin.errors import InvalidRequest, NotFound, ServiceUnavailable, TingyinError
from tingyin.store.blobs import Owner, StoredBlob, blob_store
from tingyin.store.db import session_scope
from tingyin.store.models import TERMINAL_JOB_STATUSES, Job, utcnow

log = logging.getLogger(__name__)

TERMINAL = TERMINAL_JOB_STATUSES
# Modules that register job handlers; imported on first use so the worker knows every kind.
HANDLER_MODULES: list[str] = ["tingyin.jobs.transcription", "tingyin.sound.platform"]
MAX_ATTEMPTS = 5


class JobCancelled(TingyinError):
    """The job was cancelled."""

    code = "job_cancelled"
    http_status = 409


class LeaseLost(Exception):
    """Another worker took this job over; stop without writing anything."""


class WorkerStopping(Exception):
    """The worker is shutting down: hand the job back to the queue instead of finishing it."""


@dataclass
class JobContext:
    """What a handler gets: its parameters, a place for files, and progress/cancel hooks."""

    job_id: str
    kind: str
    params: dict[str, Any]
    app_pk: int | None
    lease_owner: str
    attempt: int
    # Set when the worker process is asked to stop (SIGTERM): the job gives itself up at its next
    # progress report, and another worker runs it again.
    stopping: threading.Event | None = field(default=None, repr=False)
    _last_progress: float = field(default=-1.0, repr=False)

    @property
    def work_dir(self) -> Path:
        """Node-local scratch for this job, deleted when the job ends (not shared with other nodes)."""
        return blob_store().scratch.job_dir(self.job_id)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress (0..1). Cheap to call often: writes only on a visible change."""
        if self.stopping is not None and self.stopping.is_set():
            raise WorkerStopping(self.job_id)
        fraction = max(0.0, min(1.0, fraction))
        if fraction - self._last_progress < 0.01 and message is None and fraction < 1.0:
            return
        self._last_progress = fraction
        with session_scope() as session:
            row = session.get(Job, self.job_id)
            if row is None or row.lease_owner != self.lease_owner:
                raise LeaseLost(self.job_id)
            row.progress = fraction
            if message is not None:
                row.message = message[:256]
            if row.cancel_requested:
                raise JobCancelled("the job was cancelled")

    def cancelled(self) -> bool:
        with session_scope() as session:
            row = session.get(Job, self.job_id)
            return bool(row is None or row.cancel_requested)


Handler = Callable[[JobContext], dict[str, Any]]
_handlers: dict[str, Handler] = {}
_finish_hooks: dict[str, Callable[[str], None]] = {}


def job_handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that runs jobs of ``kind``. It must be idempotent: a job may be started
    again after a crash (on another node), so it writes only under ``ctx.work_dir`` or to stored
    objects it owns, and returns its JSON result. Its input objects are read with
    ``blob_store().open(key)`` and deleted when the job ends."""

    def register(function: Handler) -> Handler:
        _handlers[kind] = function
        return function

    return register


def on_job_finished(kind: str) -> Callable[[Callable[[str], None]], Callable[[str], None]]:
    """Register a hook run (via its own task) after a job of ``kind`` ends, e.g. a callback POST."""

    def register(function: Callable[[str], None]) -> Callable[[str], None]:
        _finish_hooks[kind] = function
        return function

    return register


def _load_handlers() -> None:
    for module in HANDLER_MODULES:
        importlib.import_module(module)


def handler_for(kind: str) -> Handler:
    if kind not in _handlers:
        _load_handlers()
    try:
        return _handlers[kind]
    except KeyError:
        raise InvalidRequest(f"unknown job kind {kind!r}") from None


def finish_hook_for(kind: str) -> Callable[[str], None] | None:
    if kind not in _handlers:
        _load_handlers()
    return _finish_hooks.get(kind)


@dataclass(frozen=True)
class JobView:
    id: str
    kind: str
    status: str
    progress: float
    message: str | None
    params: dict[str, Any]
    result: dict[str, Any] | None
    error_code: str | None
    error_message: str | None
    attempts: int
    app_pk: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    fetched_at: datetime | None

    @classmethod
    def of(cls, row: Job) -> JobView:
        return cls(
            row.id,
            row.kind,
            row.status,
            row.progress,
            row.message,
            dict(row.params or {}),
            row.result,
            row.error_code,
            row.error_message,
            row.attempts,
            row.app_pk,
            row.created_at,
            row.started_at,
            row.finished_at,
            row.fetched_at,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "progress": round(self.progress, 4),
            "message": self.message,
            "result": self.result,
            "error": {"code": self.error_code, "message": self.error_message} if self.error_code else None,
            "attempts": self.attempts,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


def submit_job(
    kind: str,
    params: dict[str, Any],
    *,
    app_pk: int | None = None,
    job_id: str | None = None,
    dispatch: bool = True,
    inputs: Sequence[StoredBlob] = (),
    keep_inputs: bool = False,
) -> str:
    """Create a job and hand it to the broker. If the broker is down, the job is not created
    (``ServiceUnavailable``): the caller is told, and nothing half-written remains.

    ``inputs`` are objects already stored under ``new_job_id()``'s prefix (``input_key``): the job
    becomes their owner in the same transaction, or, if the job cannot be created, they are deleted.
    They go when the job ends, or with ``keep_inputs``, once it succeeded, when it is purged."""
    try:
        handler_for(kind)  # unknown kinds fail here, not in a worker
        job_id = job_id or new_job_id()
        with session_scope() as session:
            session.add(
                Job(
                    id=job_id,
                    kind=kind,
                    params=params,
                    app_pk=app_pk,
                    status="queued",
                    dispatched_at=utcnow(),
                    keeps_inputs=keep_inputs,
                )
            )
            blob_store().record(session, Owner.job(job_id), inputs)
            session.flush()
            if dispatch:
                # Inside the transaction: a broker failure rolls the row back. A worker that gets the
                # message before the commit retries until the row is visible.
                from tingyin.jobs.celery_app import send_run_job

                send_run_job(job_id)
    except BaseException:
        blob_store().discard(inputs)
        raise
    return job_id


def new_job_id() -> str:
    return str(uuid.uuid4())


def input_key(job_id: str, name: str = "input") -> str:
    """Where a job's uploaded input is stored (``jobs/<id>/input``) before the job is submitted."""
    return Owner.job(job_id).key(name)


def _release(job_id: str, *, purged: bool = False) -> None:
    """A job has ended (or was purged): its scratch directory on this node goes, and its input objects
    unless it succeeded and keeps them until it is purged (``Job.keeps_inputs``)."""
    store = blob_store()
    if purged or not _keeps_inputs(job_id):
        store.release_quietly(Owner.job(job_id))
    store.scratch.remove_job_dir(job_id)


def _keeps_inputs(job_id: str) -> bool:
    with session_scope() as session:
        row = session.get(Job, job_id)
        return row is not None and row.keeps_inputs and row.status == "succeeded"


def get_job(job_id: str, *, app_pk: int | None = None) -> JobView:
    with session_scope() as session:
        row = session.get(Job, job_id)
        if row is None or (app_pk is not None and row.app_pk != app_pk):
            raise NotFound(f"no job {job_id}")
        return JobView.of(row)


def list_jobs(app_pk: int, kinds: list[str], *, limit: int = 50) -> list[JobView]:
    """The app's most recent jobs of these kinds, newest first."""
    with session_scope() as session:
        rows = session.scalars(
            select(Job)
            .where(Job.app_pk == app_pk, Job.kind.in_(kinds))
            .order_by(Job.created_at.desc())
            .limit(limit)
        )
        return [JobView.of(row) for row in rows]


def mark_fetched(job_id: str) -> None:
    with session_scope() as session:
        row = session.get(Job, job_id)
        if row is not None and row.fetched_at is None:
            row.fetched_at = utcnow()


def cancel_job(job_id: str, *, app_pk: int | None = None) -> JobView:
    with session_scope() as session:
        row = session.get(Job, job_id)
        if row is None or (app_pk is not None and row.app_pk != app_pk):
            raise NotFound(f"no job {job_id}")
        if row.status not in TERMINAL:
            row.cancel_requested = 1
            if row.status == "queued":
                row.status = "cancelled"
                row.finished_at = utcnow()
                row.expires_at = row.finished_at + timedelta(seconds=get_settings().job_retention_s)
        view = JobView.of(row)
    if view.status in TERMINAL:
        _release(job_id)
    return view


def delete_finished_job(job_id: str, *, app_pk: int | None = None) -> JobView:
    """Delete a job that has ended, with its result and anything it still owns, at once rather than
    when its retention runs out; a job still queued or running is cancelled instead (``cancel_job``),
    and it goes with its retention. The job as it was."""
    with session_scope() as session:
        row = session.get(Job, job_id)
        if row is None or (app_pk is not None and row.app_pk != app_pk):
            raise NotFound(f"no job {job_id}")
        view = JobView.of(row)
        if row.status in TERMINAL:
            session.delete(row)
    if view.status not in TERMINAL:
        return cancel_job(job_id, app_pk=app_pk)
    _release(job_id, purged=True)
    return view


def _rows_changed(session: Session, statement: Update) -> int:
    result = session.execute(statement)
    return int(cast(CursorResult[Any], result).rowcount)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Claim:
    # "claimed", "done" (nothing to do), "busy" (another live worker has it), "missing";
    # "ended" only inside claim_job: this claim just ended the job (cancelled, or too many attempts).
    outcome: str
    context: JobContext | None = None
    retry_in: float = 0.0


def claim_job(job_id: str, owner: str) -> Claim:
    """Take the job's lease if it is queued, or running under an expired lease."""
    claim = _claim(job_id, owner)
    if claim.outcome == "ended":
        _release(job_id)
        return Claim("done")
    return claim


def _claim(job_id: str, owner: str) -> Claim:
    settings = get_settings()
    lease = settings.job_lease_seconds
    now = utcnow()
    expires = now + timedelta(seconds=settings.job_retention_s)
    with session_scope() as session:
        row = session.get(Job, job_id)
        if row is None:
            return Claim("missing")
        if row.status in TERMINAL:
            return Claim("done")
        if row.cancel_requested:
            row.status, row.finished_at, row.expires_at = "cancelled", now, expires
            return Claim("ended")
        lease_until = row.lease_until
        if row.status == "running" and lease_until is not None and lease_until > now:
            return Claim("busy", retry_in=(lease_until - now).total_seconds() + 1.0)
        if row.attempts >= MAX_ATTEMPTS:
            row.status, row.finished_at, row.expires_at = "failed", now, expires
            row.error_code = "too_many_attempts"
            row.error_message = f"the job was started {row.attempts} times without finishing"
            return Claim("ended")
        # Compare-and-set on the lease so two workers racing for the same job cannot both win.
        attempt = row.attempts + 1  # read before the update, which refreshes ``row``
        taken = _rows_changed(
            session,
            update(Job)
            .where(Job.id == job_id, Job.attempts == row.attempts, Job.status == row.status)
            .values(
                status="running",
                lease_owner=owner,
                lease_until=now + timedelta(seconds=lease),
                attempts=attempt,
                started_at=row.started_at or now,
            ),
        )
        if taken != 1:
            return Claim("busy", retry_in=1.0)
        context = JobContext(job_id, row.kind, dict(row.params or {}), row.app_pk, owner, attempt)
        return Claim("claimed", context)


def renew_lease(job_id: str, owner: str) -> bool:
    lease = get_settings().job_lease_seconds
    with session_scope() as session:
        changed = _rows_changed(
            session,
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == owner, Job.status == "running")
            .values(lease_until=utcnow() + timedelta(seconds=lease)),
        )
        return changed == 1


def finish_job(
    job_id: str,
    owner: str,
    *,
    result: dict[str, Any] | None = None,
    error: TingyinError | None = None,
    status: str | None = None,
) -> bool:
    """Write the outcome if ``owner`` still holds the lease; False means another worker took over."""
    now = utcnow()
    # Every finished job, with its files, is purged after the retention period.
    expires = now + timedelta(seconds=get_settings().job_retention_s)
    values: dict[str, Any] = {"finished_at": now, "lease_until": None, "expires_at": expires}
    if error is not None:
        values.update(status=status or "failed", error_code=error.code, error_message=error.message[:2000])
    else:
        values.update(status="succeeded", result=result, progress=1.0)
    with session_scope() as session:
        changed = _rows_changed(
            session,
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == owner, Job.status == "running")
            .values(**values),
        )
    if changed == 1:
        _release(job_id)
    return changed == 1


class _Heartbeat:
    """Renews a lease every third of its length while the job runs."""

    def __init__(self, job_id: str, owner: str) -> None:
        self.job_id, self.owner = job_id, owner
        self.stop = threading.Event()
        self.lost = False
        self.thread = threading.Thread(target=self._run, name=f"lease-{job_id[:8]}", daemon=True)

    def _run(self) -> None:
        interval = max(0.5, get_settings().job_lease_seconds / 3)
        while not self.stop.wait(interval):
            try:
                if not renew_lease(self.job_id, self.owner):
                    self.lost = True
                    return
            except Exception:  # a database hiccup: try again next beat, the lease has slack
                log.warning("lease renewal failed for job %s", self.job_id, exc_info=True)

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def _server_failure(job_id: str, exc: TingyinError) -> TingyinError:
    """What the job's owner reads of a failure of the server: its code and general description; the
    detail (a library's message, a path) goes to the log with the traceback, under the job id."""
    log.error("job %s failed: %s", job_id, exc.message, exc_info=exc)
    public = TingyinError(f"{exc.summary} The server log has the details under job {job_id}.")
    public.code = exc.code
    return public


def release_job(job_id: str, owner: str) -> bool:
    """Give a running job back: its lease ends now, so the sweeper re-dispatches it at its next pass,
    exactly as when a worker dies (the attempt counts)."""
    with session_scope() as session:
        changed = _rows_changed(
            session,
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == owner, Job.status == "running")
            .values(lease_until=utcnow(), dispatched_at=None),
        )
        return changed == 1


def execute_job(job_id: str, owner: str | None = None, stopping: threading.Event | None = None) -> Claim:
    """Run a job in this process if it can be claimed. Returns the claim (for the task to retry).

    ``stopping``: the worker's shutdown flag; once set, no job is claimed and a running one is
    handed back at its next progress report."""
    owner = owner or worker_identity()
    if stopping is not None and stopping.is_set():
        return Claim("busy", retry_in=1.0)
    claim = claim_job(job_id, owner)
    if claim.context is None:
        return claim
    context = claim.context
    context.stopping = stopping
    log.info("job %s (%s) started, attempt %d", job_id, context.kind, context.attempt)
    started = time.monotonic()
    state = "succeeded"
    with _Heartbeat(job_id, owner):
        try:
            result = handler_for(context.kind)(context)
        except LeaseLost:
            log.warning("job %s was taken over by another worker; dropping this run", job_id)
            return claim
        except WorkerStopping:
            release_job(job_id, owner)
            log.warning("job %s handed back to the queue: this worker is stopping", job_id)
            return claim
        except ServiceUnavailable:
            # The database or the object store is down for a while: that is no verdict on the job.
            # Its lease runs out and the sweeper hands it out again (up to MAX_ATTEMPTS runs).
            log.warning("job %s stopped: a backing service is unavailable; it will run again", job_id)
            return claim
        except JobCancelled as exc:
            state = "cancelled"
            finish_job(job_id, owner, error=exc, status="cancelled")
        except TingyinError as exc:
            state = "failed"
            finish_job(job_id, owner, error=exc if exc.http_status < 500 else _server_failure(job_id, exc))
        except Exception:
            # The caller reads the job's error: the traceback stays in the log, under the job id.
            log.exception("job %s failed on an internal error", job_id)
            state = "failed"
            error = TingyinError(f"internal error; the server log has the details under job {job_id}")
            finish_job(job_id, owner, error=error)
        else:
            if not finish_job(job_id, owner, result=result):
                log.warning("job %s finished but its lease had passed to another worker", job_id)
                return claim
    log.info("job %s ended", job_id)
    from tingyin.metrics import process_metrics

    process_metrics().job_finished(context.kind, state, time.monotonic() - started)
    hook = finish_hook_for(context.kind)
    if hook is not None:
        from tingyin.jobs.celery_app import send_finish_hook

        try:
            send_finish_hook(job_id)
        except Exception:  # the sweeper does not retry hooks; log loudly
            log.exception("could not enqueue the finish hook of job %s", job_id)
    return claim


def sweep(*, stale_dispatch_s: float | None = None) -> list[str]:
    """Re-dispatch jobs that no worker is running: a running job whose lease expired (its worker
    died) and a queued job dispatched long ago (its message was lost with an embedded broker)."""
    settings = get_settings()
    now = utcnow()
    stale = now - timedelta(
        seconds=stale_dispatch_s if stale_dispatch_s is not None else max(30.0, settings.job_lease_seconds)
    )
    lease_ago = now - timedelta(seconds=settings.job_lease_seconds)
    redispatch: list[str] = []
    with session_scope() as session:
        rows = session.scalars(
            select(Job)
            .where(
                or_(
                    (Job.status == "running")
                    & (Job.lease_until < now)
                    & (Job.dispatched_at.is_(None) | (Job.dispatched_at < lease_ago)),
                    (Job.status == "queued") & (Job.dispatched_at < stale),
                )
            )
            .limit(100)
        ).all()
        for row in rows:
            # Compare-and-set on dispatched_at: one sweeper re-dispatches a given job per period.
            changed = _rows_changed(
                session,
                update(Job)
                .where(Job.id == row.id, Job.attempts == row.attempts, Job.status == row.status)
                .values(dispatched_at=now),
            )
            if changed == 1:
                redispatch.append(row.id)
    if redispatch:
        from tingyin.jobs.celery_app import send_run_job

        for job_id in redispatch:
            log.warning("re-dispatching job %s (its worker is gone or its message was lost)", job_id)
            send_run_job(job_id)
    return redispatch


def purge_expired(now: datetime | None = None) -> int:
    """Delete finished jobs past their retention, with anything they still own."""
    now = now or utcnow()
    with session_scope() as session:
        rows = session.scalars(select(Job).where(Job.expires_at < now, Job.status.in_(TERMINAL))).all()
        purged = [row.id for row in rows]
        for row in rows:
            session.delete(row)
    for job_id in purged:
        _release(job_id, purged=True)
    return len(purged)


def set_expiry(job_id: str, expires_at: datetime) -> None:
    with session_scope() as session:
        row = session.get(Job, job_id)
        if row is not None:
            row.expires_at = expires_at


class JobSweeper:
    """Background thread calling ``sweep``, ``purge_expired`` and the storage sweep periodically
    (serve and workers)."""

    def __init__(self, interval_s: float | None = None) -> None:
        lease = get_settings().job_lease_seconds
        self.interval_s = interval_s or max(1.0, min(30.0, lease / 2))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-sweeper", daemon=True)

    def start(self) -> JobSweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                sweep()
                purge_expired()
                from tingyin.store.quota import purge_counters

                purge_counters()
            except Exception:
                log.warning("job sweep failed", exc_info=True)
            try:
                blob_store().sweep()
            except Exception:
                log.warning("storage sweep failed", exc_info=True)
