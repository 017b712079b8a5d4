"""Native API of the sound-classification platform: models, datasets, training, versions, services."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from tingyin import audio
from tingyin.api.deps import in_thread, native_app
from tingyin.errors import InvalidRequest
from tingyin.sound import platform
from tingyin.store.apps import AppInfo

router = APIRouter(prefix="/v1/sound", tags=["sound classification"])
ZIP_MAX_BYTES = 5 * 1024**3
CLIP_MAX_BYTES = 4 * 1024**2


class ModelIn(BaseModel):
    name: str
    type: str = "sound_classification"
    description: str = ""
    contact: str = ""


class DatasetIn(BaseModel):
    name: str


class TrainIn(BaseModel):
    dataset_id: int
    classes: list[str] | None = Field(default=None, description="default: every class of the dataset")
    base_version: int | None = Field(
        default=None, description="iterate from this version (its classes, weights)"
    )


class PublishIn(BaseModel):
    name: str
    model_id: int
    version: int
    unknown_threshold: float | Literal["auto", "off"] | None = Field(
        default=None,
        description='open set: "auto" (the version\'s default, 0.05) or a number in [0, 1): a clip whose '
        "familiarity is below it is answered [unknown] first; off by default (docs/sound.md)",
    )


@router.post("/models", status_code=201)
async def create_model(body: ModelIn, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return await in_thread(
        platform.create_model, app.pk, body.name, body.type, body.description, body.contact
    )


@router.get("/models")
async def list_models(app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return {"models": await in_thread(platform.list_models, app.pk)}


@router.get("/models/{model_id}")
async def get_model(model_id: int, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return await in_thread(platform.get_model, app.pk, model_id)


@router.delete("/models/{model_id}")
async def delete_model(model_id: int, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    """Delete a model and all its versions; 409 while one of them is published (unpublish first)."""
    await in_thread(platform.delete_model, app.pk, model_id)
    return {"deleted": model_id}


@router.post("/datasets", status_code=201)
async def create_dataset(body: DatasetIn, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return await in_thread(platform.create_dataset, app.pk, body.name)


@router.get("/datasets")
async def list_datasets(app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return {"datasets": await in_thread(platform.list_datasets, app.pk)}


@router.get("/datasets/{dataset_id}")
async def get_dataset(dataset_id: int, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return await in_thread(platform.get_dataset, app.pk, dataset_id)


@router.post("/datasets/{dataset_id}/imports", status_code=202)
async def import_zip(dataset_id: int, request: Request, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    """Upload a zip (raw body) whose top-level folders are class names; runs as a job whose result is
    the import report (accepted, duplicates, rejected files with reasons, warnings)."""
    from tingyin.jobs import get_job
    from tingyin.store.blobs import put_blob

    chunks = [chunk async for chunk in request.stream() if chunk]
    if not chunks:
        raise InvalidRequest("send the zip archive as the request body")
    blob = await in_thread(put_blob, chunks, max_bytes=ZIP_MAX_BYTES)
    job_id = await in_thread(platform.start_import, app.pk, dataset_id, blob.key)
    return (await in_thread(get_job, job_id)).as_dict()


@router.post("/models/{model_id}/versions", status_code=202)
async def train(model_id: int, body: TrainIn, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    """Train the next version (V1, V2, ...); poll the version or its job for progress."""
    return await in_thread(
        platform.start_training, app.pk, model_id, body.dataset_id, body.classes, body.base_version
    )


@router.get("/models/{model_id}/versions/{version}")
async def get_version(model_id: int, version: int, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    """Status and, once trained, the evaluation report (accuracy, per-class P/R/F1, confusion matrix)."""
    return await in_thread(platform.get_version, app.pk, model_id, version)


@router.delete("/models/{model_id}/versions/{version}")
async def delete_version(model_id: int, version: int, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    """Delete one version; 409 while it is published (unpublish first) or still training (cancel first)."""
    await in_thread(platform.delete_version, app.pk, model_id, version)
    return {"deleted": {"model_id": model_id, "version": version}}


@router.post("/models/{model_id}/versions/{version}/cancel")
async def cancel(model_id: int, version: int, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return await in_thread(platform.cancel_version, app.pk, model_id, version)


@router.post("/models/{model_id}/versions/{version}/predict")
async def validate(
    model_id: int,
    version: int,
    request: Request,
    top_num: int = Query(6, ge=1, le=1000),
    unknown_threshold: str | None = Query(
        None, description='"auto" or a number in [0, 1): answer [unknown] first for unfamiliar clips'
    ),
    app: AppInfo = Depends(native_app),
) -> dict[str, Any]:
    """Model validation (模型校验): send a clip as the body, get the top classes of this version."""
    data = await request.body()
    decoded = await in_thread(audio.decode, data, max_bytes=CLIP_MAX_BYTES, max_seconds=600)
    threshold = platform.parse_threshold(unknown_threshold)
    results = await in_thread(
        platform.validate, app.pk, model_id, version, decoded.mono(), top_num, threshold
    )
    return {"results": results}


@router.get("/models/{model_id}/versions/{version}/export")
async def export(model_id: int, version: int, app: AppInfo = Depends(native_app)) -> FileResponse:
    """A zip with sound_classifier.onnx (audio in, scores out; onnxruntime alone runs it) and labels.txt."""
    path = await in_thread(platform.export_version, app.pk, model_id, version)
    return FileResponse(path, media_type="application/zip", filename=f"model{model_id}-V{version}-onnx.zip")


@router.put("/services/{suffix}")
async def publish(suffix: str, body: PublishIn, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    """Publish a version at /rpc/2.0/ai_custom/v1/sound_cls/{suffix}; publishing another version at the
    same suffix swaps it in place (the new version is loaded before the swap)."""
    return await in_thread(
        platform.publish, app.pk, suffix, body.name, body.model_id, body.version, body.unknown_threshold
    )


@router.delete("/services/{suffix}")
async def unpublish(suffix: str, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    """Take a service offline: its URL answers "service not support" (EasyDL 216102) from then on; the
    model and its versions stay and can be published again."""
    return {"unpublished": await in_thread(platform.unpublish, app.pk, suffix)}


@router.get("/services")
async def list_services(app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return {"services": await in_thread(platform.list_services, app.pk)}
