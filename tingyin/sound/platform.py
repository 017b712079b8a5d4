"""The custom sound-classification platform (EasyDL sound): models, datasets, versions, services.

State lives in the database; clips under ``$TINGYIN_HOME/blobs/datasets/<id>/``, trained versions
under ``$TINGYIN_HOME/trained/<version id>/``. Imports and training run as jobs. A published
service points at one version; re-pointing it (hot swap) loads the new version first, so requests
never wait on a cold model or fail during the swap.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

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
from tingyin.store.db import session_scope
from tingyin.store.models import DatasetClip, ModelVersion, SoundDataset, SoundModel, SoundService, utcnow

MODEL_TYPES = ("sound_classification", "music_tagging")
NAME = re.compile(r"^[A-Za-z0-9_\-\u4e00-\u9fff]{1,64}$")
SUFFIX = re.compile(r"^[A-Za-z0-9_]{1,64}$")
MAX_FILES_PER_DATASET = 100_000
MAX_CLASSES = 1_000


def _dataset_dir(dataset_id: int) -> Path:
    return get_settings().blob_dir / "datasets" / str(dataset_id)


def _version_dir(version_id: int) -> Path:
    return get_settings().home / "trained" / str(version_id)


def _embedding_cache() -> Path:
    return get_settings().home / "embeddings"


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


def delete_model(app_pk: int, model_id: int) -> None:
    with session_scope() as session:
        row = _model(session, app_pk, model_id)
        version_ids = list(session.scalars(select(ModelVersion.id).where(ModelVersion.model_id == model_id)))
        session.delete(row)
    for version_id in version_ids:
        get_manager().unload(f"sound:{version_id}")
        shutil.rmtree(_version_dir(version_id), ignore_errors=True)


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


def start_import(app_pk: int, dataset_id: int, blob_key: str) -> str:
    with session_scope() as session:
        _dataset(session, app_pk, dataset_id)
    return submit_job("dataset_import", {"dataset_id": dataset_id, "blob": blob_key}, app_pk=app_pk)


@job_handler("dataset_import")
def import_job(ctx: JobContext) -> dict[str, Any]:
    from tingyin.sound.dataset_zip import ZipLimits, import_zip
    from tingyin.store.blobs import get_blob

    dataset_id = int(ctx.params["dataset_id"])
    with session_scope() as session:
        existing = set(
            session.scalars(select(DatasetClip.content_hash).where(DatasetClip.dataset_id == dataset_id))
        )
        counts = _class_counts(session, dataset_id)
    limits = ZipLimits(max_files=MAX_FILES_PER_DATASET - sum(counts.values()))
    report = import_zip(
        get_blob(ctx.params["blob"]).path,
        _dataset_dir(dataset_id),
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
    from tingyin.sound.classifier import TrainedClassifier
    from tingyin.sound.embeddings import Embedder
    from tingyin.sound.training import HeadConfig, train_classifier
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
        clips = [
            LabeledClip(_dataset_dir(int(version.dataset_id or 0)) / r.file_name, r.label, r.content_hash)
            for r in rows
        ]
        version.status = "training"
    init_from = TrainedClassifier.load(_version_dir(base_id)) if base_id is not None else None
    embedder: Embedder | None = None  # sound_classification: the Whisper embedder (or the base version's)
    config: HeadConfig | None = None
    if music:
        from tingyin.music.embedder import get_music_embedder

        embedder = get_music_embedder()
        # No audio-level augmentation (noise at 10-30 dB SNR, shifts) for music: on held-out sections of
        # five tracks it changed one window in 50 (docs/music.md) at twice the embedding time, and white
        # noise over band-limited recordings taught the head that a filled-in top band means "another class".
        config = HeadConfig(audio_augment_max_clips=0)
    try:
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
    except TrainingCancelled as exc:
        _set_version(version_id, status="cancelled", finished_at=utcnow())
        raise JobCancelled(exc.message) from exc
    except (WorkerStopping, LeaseLost):
        _set_version(version_id, status="queued")  # another worker trains it again
        raise
    except Exception as exc:
        # The caller reads this; an unexpected error's detail stays in the log.
        message = exc.message if isinstance(exc, TingyinError) else f"internal error (job {ctx.job_id})"
        _set_version(version_id, status="failed", error=message[:2000], finished_at=utcnow())
        raise
    directory = _version_dir(version_id)
    result.classifier.save(directory)
    report = result.report.to_dict()
    report["timings"] = result.timings
    _set_version(version_id, status="ready", report=report, finished_at=utcnow())
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


def _ready_version_id(app_pk: int, model_id: int, version: int) -> int:
    with session_scope() as session:
        _model(session, app_pk, model_id)
        row = _version(session, model_id, version)
        if row.status != "ready":
            raise InvalidRequest(f"V{version} is {row.status}, not ready")
        return int(row.id)


def load_classifier(version_id: int) -> Any:
    from tingyin.sound.classifier import TrainedClassifier

    return get_manager().get(f"sound:{version_id}", lambda: TrainedClassifier.load(_version_dir(version_id)))


def predict_version(version_id: int, audio: np.ndarray, top_num: int) -> list[dict[str, Any]]:
    return [
        {"name": name, "score": round(score, 6)}
        for name, score in load_classifier(version_id).predict(audio, top_num=top_num)
    ]


def validate(
    app_pk: int, model_id: int, version: int, audio: np.ndarray, top_num: int
) -> list[dict[str, Any]]:
    """Model 校验: scores of any ready version for an uploaded clip."""
    return predict_version(_ready_version_id(app_pk, model_id, version), audio, top_num)


def export_version(app_pk: int, model_id: int, version: int) -> Path:
    """A zip holding the self-contained ONNX classifier and its label file."""
    version_id = _ready_version_id(app_pk, model_id, version)
    directory = _version_dir(version_id)
    archive = directory / f"V{version}-onnx.zip"
    if not archive.exists():
        export_dir = directory / "export"
        onnx_path, labels_path = load_classifier(version_id).export_onnx(export_dir)
        temporary = archive.with_suffix(".partial")
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as handle:
            handle.write(onnx_path, onnx_path.name)
            handle.write(labels_path, labels_path.name)
            handle.writestr("README.txt", EXPORT_README)
        temporary.replace(archive)
    return archive


EXPORT_README = """tingyin sound classifier, exported for offline use.

sound_classifier.onnx: input "audio" float32 [1, samples], 16 kHz mono in [-1, 1];
output "scores" float32 [1, classes], in the order of labels.txt (one class per line).

    import numpy as np, onnxruntime as ort
    session = ort.InferenceSession("sound_classifier.onnx")
    labels = open("labels.txt", encoding="utf-8").read().split("\\n")
    scores = session.run(None, {"audio": samples[None, :].astype(np.float32)})[0][0]
"""


# ---------------------------------------------------------------- services


def publish(app_pk: int, suffix: str, name: str, model_id: int, version: int) -> dict[str, Any]:
    """Put a version online at ``suffix`` (or swap the version behind an existing suffix)."""
    if not SUFFIX.match(suffix):
        raise InvalidRequest("the URL suffix takes 1-64 letters, digits or '_'")
    if not name or len(name) > 64:
        raise InvalidRequest("the service name takes 1-64 characters")
    version_id = _ready_version_id(app_pk, model_id, version)
    load_classifier(version_id)  # warm before the swap: the first request must not wait
    with session_scope() as session:
        row = session.scalar(select(SoundService).where(SoundService.suffix == suffix))
        if row is not None and row.app_pk != app_pk:
            raise InvalidRequest(f"the URL suffix {suffix!r} is taken")
        if row is None:
            row = SoundService(
                app_pk=app_pk, suffix=suffix, name=name, model_id=model_id, version_id=version_id
            )
            session.add(row)
        else:
            row.name, row.model_id, row.version_id, row.updated_at = name, model_id, version_id, utcnow()
        session.flush()
        return _service_dict(row, version)


def _service_dict(row: SoundService, version: int) -> dict[str, Any]:
    return {
        "suffix": row.suffix,
        "name": row.name,
        "model_id": row.model_id,
        "version": version,
        "url": f"/rpc/2.0/ai_custom/v1/sound_cls/{row.suffix}",
    }


def list_services(app_pk: int) -> list[dict[str, Any]]:
    with session_scope() as session:
        rows = session.scalars(
            select(SoundService).where(SoundService.app_pk == app_pk).order_by(SoundService.id)
        )
        return [
            _service_dict(r, int(session.get(ModelVersion, r.version_id).version))  # type: ignore[union-attr]
            for r in rows
        ]


def service_version(suffix: str) -> tuple[int, int]:
    """(owning app, version id) of the service at ``suffix``."""
    with session_scope() as session:
        row = session.scalar(select(SoundService).where(SoundService.suffix == suffix))
        if row is None:
            raise NotFound(f"no service at {suffix}")
        return int(row.app_pk), int(row.version_id)
