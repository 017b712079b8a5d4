"""Database tables. Every schema change comes with one Alembic migration in ``migrations/versions``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database: SQLite stores no zone and hands back naive
    datetimes, which could not be compared with ``utcnow()``; they come back as UTC here, once."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UTCDateTime()}


class App(Base):
    """A client application and its credentials. Secrets are stored hashed; the one secret that a
    protocol needs in clear (Qiniu signs requests with HMAC of the secret) is stored encrypted."""

    __tablename__ = "apps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    api_key: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    secret_encrypted: Mapped[str] = mapped_column(Text)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True, index=True)
    qps_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    daily_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(nullable=True)


class UsageCounter(Base):
    """Calls per app, API and time window (a second for QPS, a day for daily quotas)."""

    __tablename__ = "usage_counters"

    app_pk: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True)
    api: Mapped[str] = mapped_column(String(32), primary_key=True)
    window: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime] = mapped_column(index=True)


# A job in one of these states is over: nothing runs it again and its input files are released.
TERMINAL_JOB_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class Job(Base):
    """A unit of background work. The database, not the broker, is the truth about a job's state."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    app_pk: Mapped[int | None] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), nullable=True)
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(
        String(16), default="queued"
    )  # queued/running/succeeded/failed/cancelled
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(String(256), nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    cancel_requested: Mapped[int] = mapped_column(Integer, default=0)
    dispatched_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    fetched_at: Mapped[datetime | None] = mapped_column(nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Whether the job's uploaded input stays with it after it succeeds, until the job is purged: a native
    # transcript's audio is played beside it in the console. Otherwise (a dataset zip, the audio of a
    # Qiniu request, any job that failed or was cancelled) the input goes as soon as the job ends.
    keeps_inputs: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (
        Index("ix_jobs_status_lease", "status", "lease_until"),
        Index("ix_jobs_app_kind", "app_pk", "kind"),
    )


class AccessToken(Base):
    """OAuth 2.0 client-credentials tokens (Baidu and EasyDL APIs); only their hashes are stored."""

    __tablename__ = "access_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    app_pk: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "access" or "refresh"
    scope: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Vocabulary(Base):
    """An app's custom vocabulary (Baidu 自定义词库): phrases that must come out exactly when spoken."""

    __tablename__ = "vocabularies"

    app_pk: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True)
    phrases: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"phrases": [...]}
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SoundModel(Base):
    """A custom classifier (EasyDL 模型): its versions are trained from datasets."""

    __tablename__ = "sound_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app_pk: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))  # sound_classification | music_tagging
    description: Mapped[str] = mapped_column(Text, default="")
    contact: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ux_sound_models_app_name", "app_pk", "name", unique=True),)


class SoundDataset(Base):
    """Labelled clips, filled from zip uploads (one folder per class)."""

    __tablename__ = "sound_datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app_pk: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ux_sound_datasets_app_name", "app_pk", "name", unique=True),)


class DatasetClip(Base):
    __tablename__ = "dataset_clips"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("sound_datasets.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(64))
    content_hash: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(128))
    source_name: Mapped[str] = mapped_column(Text, default="")
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    # Measured at import (the console's per-class totals); None for clips imported before it was kept.
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ux_dataset_clips_hash", "dataset_id", "content_hash", unique=True),)


class ModelVersion(Base):
    """V1, V2, ... of a model: what it was trained on, its evaluation report and its files."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("sound_models.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(
        String(16), default="queued"
    )  # queued/training/ready/failed/cancelled
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("sound_datasets.id", ondelete="SET NULL"), nullable=True
    )
    base_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    classes: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"classes": [...]}
    report: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (Index("ux_model_versions", "model_id", "version", unique=True),)


class SoundService(Base):
    """A published version behind a custom URL suffix; re-pointing it swaps versions in place."""

    __tablename__ = "sound_services"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app_pk: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    suffix: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    model_id: Mapped[int] = mapped_column(ForeignKey("sound_models.id", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    # Open-set answer of the service: NULL (off), "auto" (the version's default) or a number in [0, 1).
    unknown_threshold: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsoleSession(Base):
    """A web-console sign-in: the cookie carries a random id whose hash is the key here; the CSRF token
    must come back in a header on every state-changing call made with the cookie."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    app_pk: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class StoredObject(Base):
    """The owner of one object in the blob store (local directory or S3 bucket). Every object has
    exactly one: a job (its uploaded input), a dataset (its clips) or a model version (its trained
    files and export). The record is written in the owner's transaction and deleted with the owner;
    the storage sweeper removes objects without a record and records whose owner is gone."""

    __tablename__ = "stored_objects"

    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    owner_kind: Mapped[str] = mapped_column(String(16))  # job | dataset | model_version
    owner_id: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_stored_objects_owner", "owner_kind", "owner_id"),)
