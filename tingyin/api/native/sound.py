"""Native API of the sound-classification platform: models, datasets, training, versions, services."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from tingyin import audio
from tingyin.api.deps import MAX_ID, AuthenticatedRoute, RowId, in_thread, native_app
from tingyin.api.middleware import register_body_limit
from tingyin.api.params import Contact, Label, Name, Text
from tingyin.errors import InvalidRequest
from tingyin.sound import platform
from tingyin.store.apps import AppInfo

router = APIRouter(prefix="/v1/sound", tags=["sound classification"], route_class=AuthenticatedRoute)
ZIP_MAX_BYTES = 5 * 1024**3
CLIP_MAX_BYTES = 4 * 1024**2
JSON_MAX_BYTES = 64 * 1024


def _json_route(path: str) -> bool:
    """Routes whose body is a small JSON object (uploads have their own limits)."""
    return path.startswith("/v1/sound/") and not path.endswith(("/imports", "/predict"))


register_body_limit(_json_route, JSON_MAX_BYTES)
register_body_limit(lambda path: path.startswith("/v1/sound/") and path.endswith("/predict"), CLIP_MAX_BYTES)


class Strict(BaseModel):
    """Fields of the declared type only (no "1" for 1), unknown fields refused."""

    model_config = ConfigDict(strict=True, extra="forbid")


class ModelIn(Strict):
    name: Name
    type: Name = "sound_classification"
    description: Text = ""
    contact: Contact = ""


class DatasetIn(Strict):
    name: Name


class TrainIn(Strict):
    dataset_id: int = Field(ge=1, le=MAX_ID)
    classes: list[Label] | None = Field(
        default=None, max_length=1000, description="default: every class of the dataset"
    )
    base_version: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="iterate from this version (its classes, weights)"
    )


class PublishIn(Strict):
    name: Name
    model_id: int = Field(ge=1, le=MAX_ID)
    version: int = Field(ge=1, le=MAX_ID)


@router.post("/models", status_code=201)
async def create_model(body: ModelIn, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return await in_thread(
        platform.create_model, app.pk, body.name, body.type, body.description, body.contact
    )


@router.get("/models")
async def list_models(app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return {"models": await in_thread(platform.list_models, app.pk)}


@router.get("/models/{model_id}")
async def get_model(model_id: RowId, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return await in_thread(platform.get_model, app.pk, model_id)


@router.delete("/models/{model_id}")
async def delete_model(model_id: RowId, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    await in_thread(platform.delete_model, app.pk, model_id)
    return {"deleted": model_id}


@router.post("/datasets", status_code=201)
async def create_dataset(body: DatasetIn, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return await in_thread(platform.create_dataset, app.pk, body.name)


@router.get("/datasets")
async def list_datasets(app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return {"datasets": await in_thread(platform.list_datasets, app.pk)}


@router.get("/datasets/{dataset_id}")
async def get_dataset(dataset_id: RowId, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return await in_thread(platform.get_dataset, app.pk, dataset_id)


@router.post("/datasets/{dataset_id}/imports", status_code=202)
async def import_zip(
    dataset_id: RowId, request: Request, app: AppInfo = Depends(native_app)
) -> dict[str, Any]:
    """Upload a zip (raw body) whose top-level folders are class names; runs as a job whose result is
    the import report (accepted, duplicates, rejected files with reasons, warnings)."""
    from tingyin.jobs import get_job
    from tingyin.store.blobs import put_blob

    await in_thread(platform.get_dataset, app.pk, dataset_id)  # an unknown dataset costs no upload
    chunks = [chunk async for chunk in request.stream() if chunk]
    if not chunks:
        raise InvalidRequest("send the zip archive as the request body")
    if not b"".join(chunks[:4]).startswith(b"PK"):
        raise InvalidRequest("the body is not a zip archive")
    blob = await in_thread(put_blob, chunks, max_bytes=ZIP_MAX_BYTES)
    job_id = await in_thread(platform.start_import, app.pk, dataset_id, blob.key)
    return (await in_thread(get_job, job_id)).as_dict()


@router.post("/models/{model_id}/versions", status_code=202)
async def train(model_id: RowId, body: TrainIn, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    """Train the next version (V1, V2, ...); poll the version or its job for progress."""
    return await in_thread(
        platform.start_training, app.pk, model_id, body.dataset_id, body.classes, body.base_version
    )


@router.get("/models/{model_id}/versions/{version}")
async def get_version(model_id: RowId, version: RowId, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    """Status and, once trained, the evaluation report (accuracy, per-class P/R/F1, confusion matrix)."""
    return await in_thread(platform.get_version, app.pk, model_id, version)


@router.post("/models/{model_id}/versions/{version}/cancel")
async def cancel(model_id: RowId, version: RowId, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return await in_thread(platform.cancel_version, app.pk, model_id, version)


@router.post("/models/{model_id}/versions/{version}/predict")
async def validate(
    model_id: RowId,
    version: RowId,
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
async def export(model_id: RowId, version: RowId, app: AppInfo = Depends(native_app)) -> FileResponse:
    """A zip with sound_classifier.onnx (audio in, scores out; onnxruntime alone runs it) and labels.txt."""
    path = await in_thread(platform.export_version, app.pk, model_id, version)
    return FileResponse(path, media_type="application/zip", filename=f"model{model_id}-V{version}-onnx.zip")


@router.put("/services/{suffix}")
async def publish(suffix: str, body: PublishIn, app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    """Publish a version at /rpc/2.0/ai_custom/v1/sound_cls/{suffix}; publishing another version at the
    same suffix swaps it in place (the new version is loaded before the swap)."""
    return await in_thread(platform.publish, app.pk, suffix, body.name, body.model_id, body.version)


@router.get("/services")
async def list_services(app: AppInfo = Depends(native_app)) -> dict[str, Any]:
    return {"services": await in_thread(platform.list_services, app.pk)}
