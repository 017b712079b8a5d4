"""Native API of the sound-classification platform: models, datasets, training, versions, services."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from tingyin import audio
from tingyin.api.deps import in_thread, native_app
from tingyin.api.middleware import register_body_limit
from tingyin.api.spool import receive_upload, stored_object_response, upload_chunks
from tingyin.sound import platform
from tingyin.store.apps import AppInfo
from tingyin.store.blobs import blob_store

router = APIRouter(prefix="/v1/sound", tags=["sound classification"])
ZIP_MAX_BYTES = 5 * 1024**3  # the seed's limit for a dataset archive
CLIP_MAX_BYTES = 4 * 1024**2
_IMPORTS = re.compile(r"/v1/sound/datasets/[^/]+/imports")
_PREDICT = re.compile(r"/v1/sound/models/[^/]+/versions/[^/]+/predict")
register_body_limit(lambda path: _IMPORTS.fullmatch(path) is not None, ZIP_MAX_BYTES)
register_body_limit(lambda path: _PREDICT.fullmatch(path) is not None, CLIP_MAX_BYTES)


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


@router.delete("/datasets/{dataset_id}")
async def delete_dataset(dataset_id: int, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    """Delete a dataset and its clips; versions trained on it keep working."""
    await in_thread(platform.delete_dataset, app.pk, dataset_id)
    return {"deleted": dataset_id}


@router.post("/datasets/{dataset_id}/imports", status_code=202)
async def import_zip(dataset_id: int, request: Request, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    """Upload a zip (raw body, up to 5 GB) whose top-level folders are class names; runs as a job
    whose result is the import report (accepted, duplicates, rejected files with reasons, warnings).
    The archive streams into storage as it arrives and is deleted when the import ends."""
    from tingyin.jobs import get_job, input_key, new_job_id

    await in_thread(platform.get_dataset, app.pk, dataset_id)  # a wrong id is refused before the upload
    job_id = new_job_id()
    writer = blob_store().writer(input_key(job_id, "dataset.zip"))
    archive = await receive_upload(
        upload_chunks(request),
        writer,
        max_bytes=ZIP_MAX_BYTES,
        empty_message="send the zip archive as the request body",
    )
    await in_thread(platform.start_import, app.pk, dataset_id, archive, job_id)
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


@router.post("/models/{model_id}/versions/{version}/cancel")
async def cancel(model_id: int, version: int, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return await in_thread(platform.cancel_version, app.pk, model_id, version)


@router.post("/models/{model_id}/versions/{version}/predict")
async def validate(
    model_id: int,
    version: int,
    request: Request,
    top_num: int = Query(6, ge=1, le=1000),
    app: AppInfo = Depends(native_app),
) -> dict[str, Any]:
    """Model validation (模型校验): send a clip as the body, get the top classes of this version."""
    data = await request.body()
    decoded = await in_thread(audio.decode, data, max_bytes=CLIP_MAX_BYTES, max_seconds=600)
    results = await in_thread(platform.validate, app.pk, model_id, version, decoded.mono(), top_num)
    return {"results": results}


@router.get("/models/{model_id}/versions/{version}/export")
async def export(model_id: int, version: int, app: AppInfo = Depends(native_app)) -> StreamingResponse:
    """A zip with sound_classifier.onnx (audio in, scores out; onnxruntime alone runs it) and labels.txt."""
    key = await in_thread(platform.export_version, app.pk, model_id, version)
    return await stored_object_response(
        key, media_type="application/zip", filename=f"model{model_id}-V{version}-onnx.zip"
    )


@router.put("/services/{suffix}")
async def publish(suffix: str, body: PublishIn, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    """Publish a version at /rpc/2.0/ai_custom/v1/sound_cls/{suffix}; publishing another version at the
    same suffix swaps it in place (the new version is loaded before the swap)."""
    return await in_thread(platform.publish, app.pk, suffix, body.name, body.model_id, body.version)


@router.get("/services")
async def list_services(app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return {"services": await in_thread(platform.list_services, app.pk)}
