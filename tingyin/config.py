"""All configuration in one place: environment variables ``TINGYIN_*`` (or a ``.env`` file)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path(os.environ.get("TINGYIN_HOME", Path.home() / ".tingyin")).expanduser()


class Settings(BaseSettings):
    """Server-wide settings. Every field can be set as ``TINGYIN_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="TINGYIN_", env_file=".env", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Data directory: database, blobs, models.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite file under home (WAL mode)."
    )
    broker_url: str | None = Field(
        default=None, description="Celery broker; default an SQLite database under home (embedded)."
    )
    result_backend: str | None = None
    redis_url: str | None = Field(
        default=None, description="Redis for cross-process quota counters; defaults to broker_url if redis."
    )
    metrics_dir: Path | None = Field(
        default=None,
        description="Where the server and its workers share Prometheus samples; default home/metrics.",
    )
    models_dir: Path | None = Field(
        default=None, description="Model cache; default home/models (share one between several homes)."
    )
    host: str = "127.0.0.1"
    port: int = 8000
    embedded_worker: bool = Field(default=True, description="`tingyin serve` starts and supervises a worker.")
    worker_concurrency: int = 1
    # A job whose worker stops heart-beating for this long is handed to another worker.
    job_lease_seconds: float = 60.0
    # Redis transport: how long an unacknowledged message waits before redelivery.
    broker_visibility_timeout: float = 120.0
    # Body limit of routes without their own (JSON APIs); upload routes set theirs from the vendors'
    # documents (dataset zip 5 GB, Qiniu ~134 MB of JSON, SAMI, native audio 500 MB) and stream.
    max_body_bytes: int = 16 * 1024 * 1024
    model_idle_ttl_seconds: float = 900.0
    asr_model: str = Field(default="whisper-base", description="The ASR model requests get by default.")
    # The ASR models requests may choose among (``model=`` on the APIs): comma-separated names from
    # `tingyin models list`, or ``alias=reference`` where the reference is a local directory or
    # ``hf:owner/repo`` that only the operator sees. The default model is always enabled.
    asr_models: str = ""
    # Chinese second pass (speech/zh_lm.py): a word n-gram file (our .npz, ARPA or KenLM trie binary); empty
    # = the packaged libime trigram, "off" = the unigram corrector only.
    zh_lm: str = ""
    # Recognition accuracy when a request does not choose: "default" (Whisper + the trigram second pass) or
    # "accurate" (adds the neural language model of speech/neural_lm.py: the `accurate` extra). A server
    # whose default is "accurate" without that extra installed logs it once and answers in the default mode.
    asr_accuracy: Literal["default", "accurate"] = "default"
    compute_type: str = "int8"
    cpu_threads: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1))
    # A second copy of each loaded Whisper model on all the threads, for requests whose chunks make one
    # batch (a short clip) while nothing else runs (speech/whisper.py): +89 MB for whisper-base; turn it
    # off to save the memory of a large model. Job workers leave it out unless set (use_job_worker_defaults).
    asr_lone_request_copy: bool = True
    token_ttl_seconds: int = 30 * 24 * 3600
    # Synchronous inference (Baidu, native recognize, EasyDL, SAMI): at most this many run at once, this many
    # more wait, each for at most this long; beyond that a request is answered "busy" at once.
    inference_concurrency: int = Field(default=2, ge=1, le=64)
    inference_queue: int = Field(default=64, ge=0, le=10_000)
    inference_admission_timeout_s: float = Field(default=20.0, gt=0)
    # OpenAI-compatible /v1/audio/*: the longest recording one synchronous request may send.
    openai_max_audio_s: float = Field(default=1800.0, gt=0)
    # Web console sign-ins last this long (the cookie and its server-side session).
    console_session_ttl_s: int = 12 * 3600
    # OAuth refresh tokens (Baidu/EasyDL): each is good for one refresh, within this long.
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    # Failed authentications tolerated per client address and per presented key (app id, API key,
    # AccessKey) within auth_failure_window_s; beyond them, requests are refused (429) before their
    # body is read until the window has passed. 0 turns a limit off.
    auth_failures_per_address: int = 50
    auth_failures_per_key: int = 100
    auth_failure_window_s: float = 60.0
    # Bodies whose credentials are inside them (SAMI, Qiniu signatures) stream into node-local scratch
    # until checked; all such bodies together may hold at most this many bytes at once.
    unauthenticated_body_bytes: int = 1024 * 1024 * 1024
    # An idle keep-alive connection stays open this long. It must outlast the clients' own pool expiry
    # (httpx 5 s, uvicorn's default also 5 s): at equal values a client reuses a connection just as the
    # server closes it, and a POST then fails with "server disconnected" (seen in the SAMI load burst).
    http_keep_alive_s: float = Field(default=75.0, gt=0, le=3600)
    # SIGTERM/SIGINT: in-flight requests get this long to finish, and a worker's running job this long
    # to hand itself back to the queue, before the process exits anyway.
    shutdown_grace_s: float = 10.0
    # Synchronous recognition gives up after these (Baidu answers 3313 / 3315).
    asr_decode_timeout_s: float = 30.0
    asr_recognize_timeout_s: float = 60.0
    # A transcription job (native, Volcano, Qiniu async) fails with recognition_timeout (Volcano 1021,
    # Qiniu 106) when one attempt runs longer than this, counted from its start (queueing does not
    # count); 0 = no deadline. The default leaves whisper-base on two cores room for the longest
    # recording accepted (5 h).
    transcription_deadline_s: float = Field(default=6 * 3600.0, ge=0)
    # Audio fetched from user URLs (Volcano AUC, SAMI): hosts/addresses/CIDRs exempt from the rule that
    # refuses loopback, private and link-local targets, e.g. "10.0.0.0/8,files.internal".
    fetch_allow: str = ""
    fetch_max_bytes: int = 512 * 1024 * 1024
    fetch_timeout_s: float = 300.0
    # Finished jobs (their results) are purged after this long; their input files go when they finish,
    # but a succeeded job that keeps them (a native transcription's audio, for playback) keeps them till then.
    job_retention_s: float = 7 * 24 * 3600.0
    # Where stored objects (job inputs, dataset clips, trained models, exports) live: empty = the local
    # directory home/blobs; "s3://bucket/prefix" = S3-compatible object storage (MinIO, Ceph RGW, AWS,
    # Aliyun OSS, Tencent COS, Qiniu Kodo) reached with the s3_* settings below.
    blob_url: str = ""
    s3_endpoint_url: str | None = Field(default=None, description="e.g. http://minio:9000; empty = AWS.")
    s3_region: str | None = None
    # Empty: boto3's own chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, instance roles).
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # "path" (MinIO, Ceph), "virtual" (Aliyun OSS requires it) or "auto" (boto3 decides).
    s3_addressing_style: str = "auto"
    # Objects nobody owns (a crash between storing and recording) are deleted once this old; the same
    # age marks node-local scratch files as abandoned.
    storage_orphan_grace_s: float = 3600.0
    # How often each node lists the whole store for owner-less objects (records are checked every sweep).
    storage_sweep_interval_s: float = 3600.0
    # Qiniu: a fetched result can be pulled again for this long, then the answer is 1013.
    qiniu_repull_window_s: float = 600.0
    # Sound classification platform (EasyDL): models per app and type.
    max_models_per_type: int = 10
    # Music tagging (SAMI): "refuse" answers speech, noise and silence with "not music" as the vendor does;
    # "tag" tags whatever it is sent (the detector's verdict is still logged).
    music_non_music: Literal["refuse", "tag"] = "refuse"
    # A longer track is tagged from this many 3 s patches spread evenly over it (docs/music.md): one
    # request's time and memory stay bounded whatever its length (SAMI accepts 10 minutes).
    music_max_patches: int = Field(default=20, ge=1, le=200)
    # Sound training picks its features within this budget (docs/sound.md): wall seconds for embedding
    # and fitting, the larger of a floor and a rate per second of training audio (60 s per 1,000 clips of
    # 5 s, import included, is the target on 2 cores). Candidates whose prediction would cost more than
    # sound_predict_budget_ms on a 5 s clip are never chosen.
    sound_train_budget_floor_s: float = 60.0
    sound_train_budget_ms_per_audio_s: float = 9.0
    sound_predict_budget_ms: float = 100.0
    log_json: bool = True
    log_level: str = "INFO"

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'tingyin.db'}"

    @property
    def celery_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        return f"sqla+sqlite:///{self.home / 'broker.db'}"

    @property
    def celery_result_backend(self) -> str:
        if self.result_backend:
            return self.result_backend
        if self.broker_url and self.broker_url.startswith("redis"):
            return self.broker_url
        return f"db+sqlite:///{self.home / 'results.db'}"

    @property
    def counter_redis_url(self) -> str | None:
        if self.redis_url:
            return self.redis_url
        if self.broker_url and self.broker_url.startswith("redis"):
            return self.broker_url
        return None

    @property
    def blob_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def metrics_path(self) -> Path:
        return self.metrics_dir or self.home / "metrics"

    @property
    def scratch_dir(self) -> Path:
        """Node-local temporary files: request spools, job work directories, copies of stored objects."""
        return self.home / "scratch"

    @property
    def model_dir(self) -> Path:
        return self.models_dir or self.home / "models"

    def ensure_dirs(self) -> None:
        for path in (self.home, self.scratch_dir, self.model_dir):
            path.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    settings = Settings()
    settings.ensure_dirs()
    return settings


def use_job_worker_defaults() -> Settings:
    """This process's settings as a job worker's (``tingyin worker``, also the one ``tingyin serve``
    starts): without the lone-request copy of Whisper unless the operator set
    ``TINGYIN_ASR_LONE_REQUEST_COPY`` (environment or .env). The copy cuts the latency of a short
    synchronous request (0.48 → 0.34 s for a 5 s clip), which a worker never serves: its callers poll
    for a job's result, so a short job's fraction of a second is not waited on, and a long one's chunks
    do not use the copy. The embedded worker held 127 MB more with it after two jobs."""
    settings = get_settings()
    if "asr_lone_request_copy" in settings.model_fields_set:
        return settings
    # The environment, not an in-process override: every later ``get_settings()`` of this process
    # (the recognizer is built inside a job, long after start-up) has to see it.
    os.environ["TINGYIN_ASR_LONE_REQUEST_COPY"] = "false"
    reset_settings()
    return get_settings()


def reset_settings() -> None:
    """Forget cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
