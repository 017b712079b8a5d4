"""The custom sound-classification platform (EasyDL sound): models, datasets, versions, services.

State lives in the database; files in the blob store (a local directory or object storage shared by
every node): a dataset owns its clips (``datasets/<id>/<sha256><ext>``), a version its trained files
(``models/<version id>/classifier/``) and its export (``models/<version id>/export.zip``); they are
deleted with their owner. Imports and training run as jobs. A published service points at one
version; re-pointing it (hot swap) loads the new version first, so requests never wait on a cold
model or fail during the swap.
"""

from __future__ import annotations

import re
import zipfile
from contextlib import ExitStack
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import func, select

from tingyin.config import get_settings
from tingyin.errors import InvalidRequest, NotFound, TingyinError
from tingyin.jobs.service import (
    JobCancelled,
    JobContext,
    LeaseLost,
    WorkerStopping,
    job_handler,
    submit_job,
)
from tingyin.models import get_manager
from tingyin.store.blobs import Owner, StoredBlob, blob_store
from tingyin.store.db import session_scope
from tingyin.store.models import DatasetClip, ModelVersion, SoundDataset, SoundModel, SoundService, utcnow

MODEL_TYPES = ("sound_classification", "music_tagging")
NAME = re.compile(r"^[A-Za-z0-9_\-\u4e00-\u9fff]{1,64}$")
SUFFIX = re.compile(r"^[A-Za-z0-9_]{1,64}$")
MAX_FILES_PER_DATASET = 100_000
MAX_CLASSES = 1_000


CLASSIFIER = "classifier/"  # a version's trained files, under its owner prefix
EXPORT = "export.zip"


def _embedding_cache() -> Path:
    # Per node, like the model weights: a cache of embeddings by clip hash, never shared.
    return get_settings().home / "embeddings"


def _load_version(version_id: int) -> Any:
    """A trained version, read from the store (a scratch copy when the store is remote)."""
    from tingyin.sound.classifier import HEAD_FILE, META_FILE, TrainedClassifier

    files = [CLASSIFIER + HEAD_FILE, CLASSIFIER + META_FILE]
    with blob_store().local_directory(Owner.model_version(version_id), files) as directory:
        return TrainedClassifier.load(directory / CLASSIFIER)


def _model(session: Any, app_pk: int, model_id: int) -> SoundModel:
    row = session.get(SoundModel, model_id)
    if row is None or row.app_pk != app_pk:
        raise NotFound(f"no model {model_id}")
    return row


def _dataset(session: Any, app_pk: int, dataset_id: int) -> SoundDataset:
    row = session.get(SoundDataset, dataset_id)
    if row is None or row.app_pk != app_pk:
        raise NotFound(f"no dataset {dataset_id}")
    return row


def _version(session: Any, model_id: int, version: int) -> ModelVersion:
    row = session.scalar(
        select(ModelVersion).where(ModelVersion.model_id == model_id, ModelVersion.version == version)
    )
    if row is None:
        raise NotFound(f"model {model_id} has no version V{version}")
    return row


def _model_dict(row: SoundModel, versions: list[ModelVersion] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "type": row.type,
        "description": row.description,
        "contact": row.contact,
        "created_at": row.created_at.isoformat(),
    }
    if versions is not None:
        data["versions"] = [_version_dict(v) for v in versions]
    return data


def _version_dict(row: ModelVersion) -> dict[str, Any]:
    return {
        "version": row.version,
        "name": f"V{row.version}",
        "status": row.status,
        "dataset_id": row.dataset_id,
        "base_version": row.base_version,
        "classes": (row.classes or {}).get("classes", []),
        "job_id": row.job_id,
        "error": row.error,
        "report": row.report,
        "created_at": row.created_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
    }


# ---------------------------------------------------------------- models


def create_model(
    app_pk: int, name: str, type: str = "sound_classification", description: str = "", contact: str = ""
) -> dict[str, Any]:
    if type not in MODEL_TYPES:
        raise InvalidRequest(f"type must be one of {', '.join(MODEL_TYPES)}")
    if not NAME.match(name):
        raise InvalidRequest("model name: 1-64 letters, digits, '_' or '-'")
    limit = get_settings().max_models_per_type
    with session_scope() as session:
        count = (
            session.scalar(
                select(func.count())
                .select_from(SoundModel)
                .where(SoundModel.app_pk == app_pk, SoundModel.type == type)
            )
            or 0
        )
        if count >= limit:
            raise InvalidRequest(f"at most {limit} models of type {type} per app")
        if session.scalar(select(SoundModel.id).where(SoundModel.app_pk == app_pk, SoundModel.name == name)):
            raise InvalidRequest(f"a model named {name!r} exists already")
        row = SoundModel(
            app_pk=app_pk, name=name, type=type, description=description[:2000], contact=contact[:128]
        )
        session.add(row)
        session.flush()
        return _model_dict(row, [])


def list_models(app_pk: int) -> list[dict[str, Any]]:
    with session_scope() as session:
        rows = session.scalars(select(SoundModel).where(SoundModel.app_pk == app_pk).order_by(SoundModel.id))
        return [
            _model_dict(
                r,
                list(
                    session.scalars(
                        select(ModelVersion)
                        .where(ModelVersion.model_id == r.id)
                        .order_by(ModelVersion.version)
                    )
                ),
            )
            for r in rows
        ]


def get_model(app_pk: int, model_id: int) -> dict[str, Any]:
    with session_scope() as session:
        row = _model(session, app_pk, model_id)
        versions = list(
            session.scalars(
                select(ModelVersion).where(ModelVersion.model_id == model_id).order_by(ModelVersion.version)
            )
        )
        return _model_dict(row, versions)


class ServiceInUse(InvalidRequest):
    """A model or version still backs a published service: unpublish it (or re-point it) first."""

    code = "in_use"
    http_status = 409


def _refuse_if_published(session: Any, model_id: int, version_ids: list[int], what: str) -> None:
    suffixes = list(
        session.scalars(
            select(SoundService.suffix)
            .where(SoundService.model_id == model_id, SoundService.version_id.in_(version_ids))
            .order_by(SoundService.suffix)
        )
    )
    if suffixes:
        raise ServiceInUse(
            f"{what} backs the published service(s) {', '.join(suffixes)}: unpublish them "
            "(DELETE /v1/sound/services/<suffix>) or publish another version there first"
        )


def _remove_versions(version_ids: list[int]) -> None:
    for version_id in version_ids:
        get_manager().unload(f"sound:{version_id}")
        blob_store().release_quietly(Owner.model_version(version_id))


def delete_model(app_pk: int, model_id: int) -> None:
    """Delete a model and its versions; refused (``ServiceInUse``) while any version is published."""
    with session_scope() as session:
        row = _model(session, app_pk, model_id)
        version_ids = list(session.scalars(select(ModelVersion.id).where(ModelVersion.model_id == model_id)))
        _refuse_if_published(session, model_id, version_ids, f"model {model_id}")
        session.delete(row)
    _remove_versions(version_ids)


def delete_version(app_pk: int, model_id: int, version: int) -> None:
    """Delete one version; refused while it is published or still queued/training (cancel it first)."""
    with session_scope() as session:
        _model(session, app_pk, model_id)
        row = _version(session, model_id, version)
        _refuse_if_published(session, model_id, [row.id], f"V{version}")
        if row.status in ("queued", "training"):
            raise ServiceInUse(f"V{version} is {row.status}: cancel it before deleting it")
        version_id = int(row.id)
        session.delete(row)
    _remove_versions([version_id])


# ---------------------------------------------------------------- datasets


def create_dataset(app_pk: int, name: str) -> dict[str, Any]:
    if not NAME.match(name):
        raise InvalidRequest("dataset name: 1-64 letters, digits, '_' or '-'")
    with session_scope() as session:
        if session.scalar(
            select(SoundDataset.id).where(SoundDataset.app_pk == app_pk, SoundDataset.name == name)
        ):
            raise InvalidRequest(f"a dataset named {name!r} exists already")
        row = SoundDataset(app_pk=app_pk, name=name)
        session.add(row)
        session.flush()
        return {"id": row.id, "name": row.name, "classes": {}, "total": 0}


def _class_counts(session: Any, dataset_id: int) -> dict[str, int]:
    rows = session.execute(
        select(DatasetClip.label, func.count())
        .where(DatasetClip.dataset_id == dataset_id)
        .group_by(DatasetClip.label)
        .order_by(DatasetClip.label)
    )
    return {label: int(count) for label, count in rows}


def get_dataset(app_pk: int, dataset_id: int) -> dict[str, Any]:
    with session_scope() as session:
        row = _dataset(session, app_pk, dataset_id)
        counts = _class_counts(session, dataset_id)
        return {"id": row.id, "name": row.name, "classes": counts, "total": sum(counts.values())}


def list_datasets(app_pk: int) -> list[dict[str, Any]]:
    with session_scope() as session:
        rows = list(
            session.scalars(
                select(SoundDataset).where(SoundDataset.app_pk == app_pk).order_by(SoundDataset.id)
            )
        )
        return [
            {
                "id": r.id,
                "name": r.name,
                "classes": (c := _class_counts(session, r.id)),
                "total": sum(c.values()),
            }
            for r in rows
        ]


def delete_dataset(app_pk: int, dataset_id: int) -> None:
    """Delete a dataset and its clips (versions trained on it keep their files)."""
    with session_scope() as session:
        session.delete(_dataset(session, app_pk, dataset_id))
    blob_store().release_quietly(Owner.dataset(dataset_id))


def start_import(
    app_pk: int, dataset_id: int, archive: StoredBlob, job_id: str, *, dispatch: bool = True
) -> str:
    """Queue the import of ``archive``, stored at ``input_key(job_id)``; the job owns it from now on
    (the archive is deleted when the import ends, or at once if the job cannot be created). A file that
    is not a zip archive is refused here, before a job exists, so the caller hears it at once."""
    try:
        with session_scope() as session:
            _dataset(session, app_pk, dataset_id)
        if not _is_zip_archive(archive.key):
            raise InvalidRequest("the file is not a zip archive (zip one folder per class)")
    except BaseException:
        blob_store().discard([archive])
        raise
    return submit_job(
        "dataset_import",
        {"dataset_id": dataset_id, "blob": archive.key},
        app_pk=app_pk,
        job_id=job_id,
        dispatch=dispatch,
        inputs=[archive],
    )


def _is_zip_archive(key: str) -> bool:
    import zipfile

    with blob_store().open(key) as stream:
        return zipfile.is_zipfile(stream)


@job_handler("dataset_import")
def import_job(ctx: JobContext) -> dict[str, Any]:
    from tingyin.sound.dataset_zip import ZipLimits, import_zip

    dataset_id = int(ctx.params["dataset_id"])
    store, owner, importer = blob_store(), Owner.dataset(dataset_id), Owner.job(ctx.job_id)
    saved: dict[str, StoredBlob] = {}
    durations: dict[str, int | None] = {}
    unrecorded: list[StoredBlob] = []

    def save(file_name: str, data: bytes) -> None:
        # Recorded as they are written, owned by this job until the clips join the dataset below: an
        # import can outlast the sweeper's grace for unrecorded objects, and a failed one leaves nothing.
        saved[file_name] = store.put_bytes(owner.key(file_name), data)
        durations[file_name] = _duration_ms(data)
        unrecorded.append(saved[file_name])
        if len(unrecorded) >= 100:
            store.record_now(importer, unrecorded)
            unrecorded.clear()

    with session_scope() as session:
        existing = set(
            session.scalars(select(DatasetClip.content_hash).where(DatasetClip.dataset_id == dataset_id))
        )
        counts = _class_counts(session, dataset_id)
    limits = ZipLimits(max_files=MAX_FILES_PER_DATASET - sum(counts.values()))
    with store.open(ctx.params["blob"]) as archive:
        report = import_zip(
            archive,
            save,
            limits=limits,
            existing_hashes=existing,
            progress=lambda f, _m: ctx.progress(0.95 * f),
            cancel=ctx.cancelled,
        )
    labels = set(counts) | {clip.label for clip in report.accepted}
    if len(labels) > MAX_CLASSES:
        raise InvalidRequest(
            f"a dataset holds at most {MAX_CLASSES} classes; this upload makes {len(labels)}"
        )
    with session_scope() as session:
        if session.get(SoundDataset, dataset_id) is None:
            raise NotFound(f"dataset {dataset_id} was deleted during the import")
        # The dataset owns its clips from this commit on (the clip rows and the owner records together).
        store.record(session, owner, saved.values())
        for clip in report.accepted:
            # Same content uploaded twice (a retried job): keep the first row.
            if session.scalar(
                select(DatasetClip.id).where(
                    DatasetClip.dataset_id == dataset_id, DatasetClip.content_hash == clip.content_hash
                )
            ):
                continue
            session.add(
                DatasetClip(
                    dataset_id=dataset_id,
                    label=clip.label,
                    content_hash=clip.content_hash,
                    file_name=clip.file_name,
                    source_name=clip.source_name[:1000],
                    size_bytes=clip.size_bytes,
                    duration_ms=durations.get(clip.file_name),
                )
            )
        totals = _class_counts(session, dataset_id)
    result = report.to_dict()
    result["dataset_classes"] = totals
    # The scanner warns on this upload's own counts; after a merge, the dataset's totals are what count.
    result["warnings"] = [
        f"class {label!r} has {count} clips; at least {limits.min_clips_warning} are needed for training "
        f"and {limits.recommended_clips}+ are advised for good results"
        for label, count in totals.items()
        if count < limits.min_clips_warning
    ]
    return result


def _duration_ms(data: bytes) -> int | None:
    """The clip's length from its header (no full decode); None when the header does not say."""
    from tingyin import audio

    try:
        seconds = audio.probe(data).duration_s
    except audio.AudioError:
        return None
    return None if seconds is None else round(seconds * 1000)


def class_table(app_pk: int, dataset_id: int) -> list[dict[str, Any]]:
    """Per class: clips and their total duration (clips whose duration is unknown are counted apart)."""
    with session_scope() as session:
        _dataset(session, app_pk, dataset_id)
        rows = session.execute(
            select(
                DatasetClip.label,
                func.count(),
                func.sum(DatasetClip.duration_ms),
                func.count(DatasetClip.duration_ms),
            )
            .where(DatasetClip.dataset_id == dataset_id)
            .group_by(DatasetClip.label)
            .order_by(DatasetClip.label)
        )
        return [
            {
                "name": label,
                "clips": int(count),
                "duration_ms": int(total or 0),
                "clips_without_duration": int(count) - int(measured),
            }
            for label, count, total, measured in rows
        ]


def _clip_dict(row: DatasetClip) -> dict[str, Any]:
    return {
        "id": row.id,
        "label": row.label,
        "source_name": row.source_name,
        "size_bytes": row.size_bytes,
        "duration_ms": row.duration_ms,
        "created_at": row.created_at.isoformat(),
    }


def list_clips(
    app_pk: int, dataset_id: int, label: str | None, offset: int = 0, limit: int = 50
) -> dict[str, Any]:
    with session_scope() as session:
        _dataset(session, app_pk, dataset_id)
        where = [DatasetClip.dataset_id == dataset_id]
        if label is not None:
            where.append(DatasetClip.label == label)
        total = session.scalar(select(func.count()).select_from(DatasetClip).where(*where)) or 0
        rows = session.scalars(
            select(DatasetClip).where(*where).order_by(DatasetClip.id).offset(offset).limit(limit)
        )
        return {"total": int(total), "offset": offset, "clips": [_clip_dict(r) for r in rows]}


def clip_file(app_pk: int, dataset_id: int, clip_id: int) -> tuple[str, str]:
    """(stored object key, original name) of a clip, for playback."""
    with session_scope() as session:
        _dataset(session, app_pk, dataset_id)
        row = session.get(DatasetClip, clip_id)
        if row is None or row.dataset_id != dataset_id:
            raise NotFound(f"dataset {dataset_id} has no clip {clip_id}")
        return Owner.dataset(dataset_id).key(row.file_name), PurePosixPath(
            row.source_name
        ).name or row.file_name


def delete_clips(app_pk: int, dataset_id: int, clip_ids: list[int]) -> int:
    """Delete clips by id (ids of other datasets are ignored); their files go when no row uses them."""
    with session_scope() as session:
        _dataset(session, app_pk, dataset_id)
        rows = list(
            session.scalars(
                select(DatasetClip).where(DatasetClip.dataset_id == dataset_id, DatasetClip.id.in_(clip_ids))
            )
        )
        keys = [Owner.dataset(dataset_id).key(r.file_name) for r in rows]
        for row in rows:
            session.delete(row)
    # Content-addressed and unique per dataset: no other row shares the object.
    blob_store().remove(keys)
    return len(keys)


def _check_class_name(name: str) -> None:
    from tingyin.sound.dataset_zip import CLASS_NAME

    if not CLASS_NAME.fullmatch(name) or len(name) > 64:
        raise InvalidRequest(
            f"class name {name!r}: 1-64 letters, digits and underscores only (no spaces, no Chinese)"
        )


def add_clip(app_pk: int, dataset_id: int, label: str, data: bytes, source_name: str) -> dict[str, Any]:
    """Add one audio file to class ``label`` (created if new); same rules as a zip member."""
    import hashlib

    from tingyin.sound.dataset_zip import AUDIO_EXTENSIONS, ZipLimits, validate_audio

    _check_class_name(label)
    extension = PurePosixPath(source_name).suffix.lower()
    if extension not in AUDIO_EXTENSIONS:
        accepted = ", ".join(sorted(AUDIO_EXTENSIONS))
        raise InvalidRequest(f"file type {extension or '(none)'!r}: send {accepted}")
    if not data:
        raise InvalidRequest("the file is empty (0 bytes)")
    limit = ZipLimits().max_file_bytes
    if len(data) > limit:
        raise InvalidRequest(f"a clip takes at most {limit // 1024**2} MB")
    validate_audio(data, extension)
    digest = hashlib.sha256(data).hexdigest()
    with session_scope() as session:
        _dataset(session, app_pk, dataset_id)
        counts = _class_counts(session, dataset_id)
        if sum(counts.values()) >= MAX_FILES_PER_DATASET:
            raise InvalidRequest(f"a dataset holds at most {MAX_FILES_PER_DATASET} clips")
        if label not in counts and len(counts) >= MAX_CLASSES:
            raise InvalidRequest(f"a dataset holds at most {MAX_CLASSES} classes")
        known = session.scalar(
            select(DatasetClip).where(
                DatasetClip.dataset_id == dataset_id, DatasetClip.content_hash == digest
            )
        )
        if known is not None:
            raise InvalidRequest(f"the dataset has this clip already (class {known.label!r})")
        file_name = digest + extension
        store, owner = blob_store(), Owner.dataset(dataset_id)
        stored = store.put_bytes(owner.key(file_name), data)
        store.record(session, owner, [stored])
        row = DatasetClip(
            dataset_id=dataset_id,
            label=label,
            content_hash=digest,
            file_name=file_name,
            source_name=f"{label}/{PurePosixPath(source_name).name}"[:1000],
            size_bytes=len(data),
            duration_ms=_duration_ms(data),
        )
        session.add(row)
        session.flush()
        return _clip_dict(row)


def rename_class(app_pk: int, dataset_id: int, label: str, new_name: str) -> list[dict[str, Any]]:
    _check_class_name(new_name)
    with session_scope() as session:
        _dataset(session, app_pk, dataset_id)
        counts = _class_counts(session, dataset_id)
        if label not in counts:
            raise NotFound(f"dataset {dataset_id} has no class {label!r}")
        if new_name in counts:
            raise InvalidRequest(f"class {new_name!r} exists already; merge the classes instead")
        for row in session.scalars(
            select(DatasetClip).where(DatasetClip.dataset_id == dataset_id, DatasetClip.label == label)
        ):
            row.label = new_name
    return class_table(app_pk, dataset_id)


def merge_classes(app_pk: int, dataset_id: int, sources: list[str], into: str) -> list[dict[str, Any]]:
    """Move every clip of ``sources`` into class ``into`` (an existing class or a new name)."""
    _check_class_name(into)
    if not sources:
        raise InvalidRequest("name the classes to merge")
    with session_scope() as session:
        _dataset(session, app_pk, dataset_id)
        counts = _class_counts(session, dataset_id)
        missing = [s for s in sources if s not in counts]
        if missing:
            raise NotFound(f"dataset {dataset_id} has no class(es) {', '.join(missing)}")
        for row in session.scalars(
            select(DatasetClip).where(DatasetClip.dataset_id == dataset_id, DatasetClip.label.in_(sources))
        ):
            row.label = into
    return class_table(app_pk, dataset_id)


def delete_class(app_pk: int, dataset_id: int, label: str) -> int:
    with session_scope() as session:
        _dataset(session, app_pk, dataset_id)
        ids = list(
            session.scalars(
                select(DatasetClip.id).where(DatasetClip.dataset_id == dataset_id, DatasetClip.label == label)
            )
        )
    if not ids:
        raise NotFound(f"dataset {dataset_id} has no class {label!r}")
    return delete_clips(app_pk, dataset_id, ids)


# ---------------------------------------------------------------- training


def start_training(
    app_pk: int,
    model_id: int,
    dataset_id: int,
    classes: list[str] | None = None,
    base_version: int | None = None,
    *,
    dispatch: bool = True,
) -> dict[str, Any]:
    with session_scope() as session:
        _model(session, app_pk, model_id)
        _dataset(session, app_pk, dataset_id)
        counts = _class_counts(session, dataset_id)
        if base_version is not None:
            base = _version(session, model_id, base_version)
            if base.status != "ready":
                raise InvalidRequest(f"V{base_version} is {base.status}; iterate from a ready version")
            classes = classes or list((base.classes or {}).get("classes", []))
        classes = list(dict.fromkeys(classes or counts))
        if len(classes) < 2:
            raise InvalidRequest("training needs at least 2 classes")
        missing = [c for c in classes if counts.get(c, 0) == 0]
        if missing:
            raise InvalidRequest(f"the dataset has no clips of class(es) {', '.join(missing)}")
        number = (
            session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model_id))
            or 0
        ) + 1
        row = ModelVersion(
            model_id=model_id,
            version=number,
            dataset_id=dataset_id,
            base_version=base_version,
            classes={"classes": classes},
            status="queued",
        )
        session.add(row)
        session.flush()
        version_id = row.id
    job_id = submit_job("sound_training", {"version_id": version_id}, app_pk=app_pk, dispatch=dispatch)
    with session_scope() as session:
        stored = session.get(ModelVersion, version_id)
        assert stored is not None
        stored.job_id = job_id
        return _version_dict(stored)


def _set_version(version_id: int, **values: Any) -> None:
    with session_scope() as session:
        row = session.get(ModelVersion, version_id)
        if row is not None:
            for key, value in values.items():
                setattr(row, key, value)


@job_handler("sound_training")
def training_job(ctx: JobContext) -> dict[str, Any]:
    from tingyin.sound.embeddings import Embedder
    from tingyin.sound.training import TrainingConfig, train_classifier
    from tingyin.sound.types import LabeledClip, TrainingCancelled

    version_id = int(ctx.params["version_id"])
    with session_scope() as session:
        version = session.get(ModelVersion, version_id)
        if version is None:
            raise NotFound(f"version {version_id} was deleted")
        classes = list((version.classes or {}).get("classes", []))
        owner = session.get(SoundModel, version.model_id)
        music = owner is not None and owner.type == "music_tagging"
        base_id = None
        if version.base_version is not None:
            base_id = _version(session, version.model_id, version.base_version).id
        rows = session.scalars(
            select(DatasetClip).where(
                DatasetClip.dataset_id == version.dataset_id, DatasetClip.label.in_(classes)
            )
        ).all()
        dataset_id = int(version.dataset_id or 0)
        chosen = [(r.file_name, r.label, r.content_hash) for r in rows]
        version.status = "training"
    init_from = _load_version(base_id) if base_id is not None else None
    embedder: Embedder | None = None  # sound_classification: features chosen per dataset
    config: TrainingConfig | None = None
    store, files_owner = blob_store(), Owner.model_version(version_id)
    held = ExitStack()  # the shared embedder, counted in use until the training is over
    if music:
        from tingyin.music.embedder import music_embedder_in_use

        embedder = held.enter_context(music_embedder_in_use())
        # No audio-level variants for music: on held-out sections of five tracks they changed one window
        # in 50 (docs/music.md) at twice the embedding time.
        config = TrainingConfig(augment=False)
    try:
        # The clips are read where they are stored (a scratch copy of them when the store is remote).
        with held, store.local_directory(Owner.dataset(dataset_id), [n for n, _, _ in chosen]) as clip_dir:
            clips = [LabeledClip(clip_dir / name, label, digest) for name, label, digest in chosen]
            result = train_classifier(
                clips,
                classes=classes,
                init_from=init_from,
                embedder=embedder,
                config=config,
                progress=lambda f, _m: ctx.progress(0.97 * f),
                cancel=ctx.cancelled,
                cache_dir=_embedding_cache(),
            )
        directory = ctx.work_dir / "classifier"
        result.classifier.save(directory)
        files = [store.put_file(files_owner.key(CLASSIFIER + p.name), p) for p in sorted(directory.iterdir())]
    except TrainingCancelled as exc:
        _set_version(version_id, status="cancelled", finished_at=utcnow())
        raise JobCancelled(exc.message) from exc
    except JobCancelled:  # seen by a progress report rather than by the trainer's own cancel check
        _set_version(version_id, status="cancelled", finished_at=utcnow())
        raise
    except (WorkerStopping, LeaseLost):
        _set_version(version_id, status="queued")  # another worker trains it again
        raise
    except Exception as exc:
        # The caller reads this; an unexpected error's detail stays in the log.
        message = exc.message if isinstance(exc, TingyinError) else f"internal error (job {ctx.job_id})"
        _set_version(version_id, status="failed", error=message[:2000], finished_at=utcnow())
        raise
    report = result.report.to_dict()
    report["timings"] = result.timings
    with session_scope() as session:
        row = session.get(ModelVersion, version_id)
        if row is None:
            raise NotFound(f"version {version_id} was deleted during training")
        store.record(session, files_owner, files)
        row.status, row.report, row.finished_at = "ready", report, utcnow()
    return {"version_id": version_id, "report": report}


def get_version(app_pk: int, model_id: int, version: int) -> dict[str, Any]:
    with session_scope() as session:
        _model(session, app_pk, model_id)
        return _version_dict(_version(session, model_id, version))


def cancel_version(app_pk: int, model_id: int, version: int) -> dict[str, Any]:
    from tingyin.jobs.service import cancel_job

    with session_scope() as session:
        _model(session, app_pk, model_id)
        row = _version(session, model_id, version)
        job_id, status = row.job_id, row.status
    if status in ("queued", "training") and job_id:
        job = cancel_job(job_id)
        if job.status == "cancelled":
            with session_scope() as session:
                stored = _version(session, model_id, version)
                stored.status, stored.finished_at = "cancelled", utcnow()
    return get_version(app_pk, model_id, version)


def misclassified(app_pk: int, model_id: int, version: int) -> list[dict[str, Any]]:
    """The held-out clips the version got wrong, with their dataset clip ids (for playback) when the
    clip is still in the dataset."""
    with session_scope() as session:
        _model(session, app_pk, model_id)
        row = _version(session, model_id, version)
        items = list((row.report or {}).get("misclassified", []))
        hashes = [item["content_hash"] for item in items]
        clips = {
            clip.content_hash: clip
            for clip in session.scalars(
                select(DatasetClip).where(
                    DatasetClip.dataset_id == row.dataset_id, DatasetClip.content_hash.in_(hashes)
                )
            )
        }
        found = [clips.get(item["content_hash"]) for item in items]
        return [
            {
                **item,
                "dataset_id": row.dataset_id if clip is not None else None,
                "clip_id": clip.id if clip is not None else None,
                "source_name": clip.source_name if clip is not None else None,
            }
            for item, clip in zip(items, found, strict=True)
        ]


def _ready_version_id(app_pk: int, model_id: int, version: int) -> int:
    with session_scope() as session:
        _model(session, app_pk, model_id)
        row = _version(session, model_id, version)
        if row.status != "ready":
            raise InvalidRequest(f"V{version} is {row.status}, not ready")
        return int(row.id)


def load_classifier(version_id: int) -> Any:

    return get_manager().get(f"sound:{version_id}", lambda: _load_version(version_id))


def predict_version(
    version_id: int, audio: np.ndarray, top_num: int, unknown_threshold: float | str | None = None
) -> list[dict[str, Any]]:
    """The best ``top_num`` classes (at most all of them); with ``unknown_threshold`` ("auto" or a
    number, see classifier.py) a clip far from every class is answered ``[unknown]`` first."""
    ranked = load_classifier(version_id).predict(audio, top_num=top_num, unknown_threshold=unknown_threshold)
    return [{"name": name, "score": round(score, 6)} for name, score in ranked]


def validate(
    app_pk: int,
    model_id: int,
    version: int,
    audio: np.ndarray,
    top_num: int,
    unknown_threshold: float | str | None = None,
) -> list[dict[str, Any]]:
    """Model 校验: scores of any ready version for an uploaded clip."""
    return predict_version(_ready_version_id(app_pk, model_id, version), audio, top_num, unknown_threshold)


def export_version(app_pk: int, model_id: int, version: int) -> str:
    """The stored key of a zip holding the self-contained ONNX classifier and its label file (built
    on the first request, then kept with the version)."""
    version_id = _ready_version_id(app_pk, model_id, version)
    store, owner = blob_store(), Owner.model_version(version_id)
    key = owner.key(EXPORT)
    if not store.exists(key):
        with store.scratch.directory("exports") as directory:
            onnx_path, labels_path = load_classifier(version_id).export_onnx(directory / "onnx")
            archive = directory / EXPORT
            with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as handle:
                handle.write(onnx_path, onnx_path.name)
                handle.write(labels_path, labels_path.name)
                handle.writestr("README.txt", EXPORT_README)
            store.record_now(owner, [store.put_file(key, archive)])
    return key


EXPORT_README = """tingyin sound classifier, exported for offline use.

sound_classifier.onnx: input "audio" float32 [1, samples], 16 kHz mono in [-1, 1];
output "scores" float32 [1, classes], in the order of labels.txt (one class per line).

    import numpy as np, onnxruntime as ort
    session = ort.InferenceSession("sound_classifier.onnx")
    labels = open("labels.txt", encoding="utf-8").read().split("\\n")
    scores = session.run(None, {"audio": samples[None, :].astype(np.float32)})[0][0]
"""


# ---------------------------------------------------------------- services


def _threshold_text(value: float | str | None) -> str | None:
    """The stored form of a service's open-set threshold: None (off), "auto" or a number in [0, 1)."""
    if value is None or value == "off":
        return None
    if value == "auto":
        return "auto"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not 0.0 <= number < 1.0:
        raise InvalidRequest('unknown_threshold must be "off", "auto" or a number in [0, 1)')
    return repr(number)


def parse_threshold(text: str | None) -> float | str | None:
    """A threshold given as text (a query parameter): checked, then None, "auto" or a number."""
    return _threshold_value(_threshold_text(text))


def _threshold_value(text: str | None) -> float | str | None:
    return None if text is None else ("auto" if text == "auto" else float(text))


def publish(
    app_pk: int,
    suffix: str,
    name: str,
    model_id: int,
    version: int,
    unknown_threshold: float | str | None = None,
) -> dict[str, Any]:
    """Put a version online at ``suffix`` (or swap the version behind an existing suffix). With
    ``unknown_threshold`` the service answers ``[unknown]`` for clips far from every class."""
    if not SUFFIX.match(suffix):
        raise InvalidRequest("the URL suffix takes 1-64 letters, digits or '_'")
    if not name or len(name) > 64:
        raise InvalidRequest("the service name takes 1-64 characters")
    threshold = _threshold_text(unknown_threshold)
    version_id = _ready_version_id(app_pk, model_id, version)
    load_classifier(version_id)  # warm before the swap: the first request must not wait
    with session_scope() as session:
        row = session.scalar(select(SoundService).where(SoundService.suffix == suffix))
        if row is not None and row.app_pk != app_pk:
            raise InvalidRequest(f"the URL suffix {suffix!r} is taken")
        if row is None:
            row = SoundService(
                app_pk=app_pk,
                suffix=suffix,
                name=name,
                model_id=model_id,
                version_id=version_id,
                unknown_threshold=threshold,
            )
            session.add(row)
        else:
            row.name, row.model_id, row.version_id, row.updated_at = name, model_id, version_id, utcnow()
            row.unknown_threshold = threshold
        session.flush()
        return _service_dict(row, version)


def _service_dict(row: SoundService, version: int) -> dict[str, Any]:
    return {
        "suffix": row.suffix,
        "name": row.name,
        "model_id": row.model_id,
        "version": version,
        "unknown_threshold": _threshold_value(row.unknown_threshold),
        "url": f"/rpc/2.0/ai_custom/v1/sound_cls/{row.suffix}",
    }


def unpublish(app_pk: int, suffix: str) -> dict[str, Any]:
    """Take the service at ``suffix`` offline (its model and versions stay); returns what it served."""
    with session_scope() as session:
        row = session.scalar(select(SoundService).where(SoundService.suffix == suffix))
        if row is None or row.app_pk != app_pk:
            raise NotFound(f"no service at {suffix}")
        version = session.get(ModelVersion, row.version_id)
        served = _service_dict(row, int(version.version) if version is not None else 0)
        session.delete(row)
    return served


def list_services(app_pk: int) -> list[dict[str, Any]]:
    with session_scope() as session:
        rows = session.scalars(
            select(SoundService).where(SoundService.app_pk == app_pk).order_by(SoundService.id)
        )
        return [
            _service_dict(r, int(session.get(ModelVersion, r.version_id).version))  # type: ignore[union-attr]
            for r in rows
        ]


class ServiceTarget(NamedTuple):
    """What a published service serves: its owner, the version and its open-set threshold."""

    app_pk: int
    version_id: int
    unknown_threshold: float | str | None


def service_version(suffix: str) -> ServiceTarget:
    """The owning app, version id and open-set threshold of the service at ``suffix``."""
    with session_scope() as session:
        row = session.scalar(select(SoundService).where(SoundService.suffix == suffix))
        if row is None:
            raise NotFound(f"no service at {suffix}")
        return ServiceTarget(int(row.app_pk), int(row.version_id), _threshold_value(row.unknown_threshold))
