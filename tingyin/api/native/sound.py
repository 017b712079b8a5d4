"""Native API of the sound-classification platform: models, datasets, training, versions, services."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from tingyin import audio
from tingyin.api.deps import MAX_ID, AuthenticatedRoute, RowId, in_thread, native_app
from tingyin.api.middleware import register_body_limit
from tingyin.api.native.jobs import DatasetImportJobOut, EvaluationReportOut
from tingyin.api.openapi import BINARY, raw_body
from tingyin.api.params import Contact, Label, Name, Text
from tingyin.api.spool import receive_upload, stored_object_response, upload_chunks
from tingyin.errors import InvalidRequest
from tingyin.inference import InferenceExecutor
from tingyin.sound import platform
from tingyin.store.apps import AppInfo
from tingyin.store.blobs import blob_store

router = APIRouter(prefix="/v1/sound", tags=["sound classification"], route_class=AuthenticatedRoute)
ZIP_MAX_BYTES = 5 * 1024**3  # the seed's limit for a dataset archive
CLIP_MAX_BYTES = 4 * 1024**2
JSON_MAX_BYTES = 64 * 1024
_IMPORTS = re.compile(r"/v1/sound/datasets/[^/]+/imports")
_PREDICT = re.compile(r"/v1/sound/models/[^/]+/versions/[^/]+/predict")
_ADD_CLIP = re.compile(r"/v1/sound/datasets/[^/]+/clips")


def _json_route(path: str) -> bool:
    """Routes whose body is a small JSON object (uploads have their own limits)."""
    uploads = (_IMPORTS, _PREDICT, _ADD_CLIP)
    return path.startswith("/v1/sound/") and not any(p.fullmatch(path) for p in uploads)


register_body_limit(lambda path: _IMPORTS.fullmatch(path) is not None, ZIP_MAX_BYTES)
register_body_limit(lambda path: _PREDICT.fullmatch(path) is not None, CLIP_MAX_BYTES)
register_body_limit(lambda path: _ADD_CLIP.fullmatch(path) is not None, CLIP_MAX_BYTES)
register_body_limit(_json_route, JSON_MAX_BYTES)
AUDIO_CLIP_BODY = raw_body({"application/octet-stream": BINARY, "audio/*": BINARY}, "the audio file's bytes")
ZIP_BODY = raw_body(
    {"application/zip": BINARY, "application/octet-stream": BINARY}, "a zip, one folder per class"
)
VersionStatus = Literal["queued", "training", "ready", "failed", "cancelled"]


class VersionOut(BaseModel):
    version: int
    name: str = Field(description="V1, V2...")
    status: VersionStatus
    dataset_id: int | None
    base_version: int | None
    classes: list[str]
    job_id: str | None
    error: str | None
    report: EvaluationReportOut | None = Field(description="once ready")
    created_at: str
    finished_at: str | None


class SoundModelOut(BaseModel):
    id: int
    name: str
    type: Literal["sound_classification", "music_tagging"]
    description: str
    contact: str
    created_at: str
    versions: list[VersionOut]


class SoundModelList(BaseModel):
    models: list[SoundModelOut]


class DatasetOut(BaseModel):
    id: int
    name: str
    classes: dict[str, int] = Field(description="clips per class")
    total: int


class DatasetList(BaseModel):
    datasets: list[DatasetOut]


class DeletedId(BaseModel):
    deleted: int


class VersionRef(BaseModel):
    model_id: int
    version: int


class DeletedVersion(BaseModel):
    deleted: VersionRef


class Prediction(BaseModel):
    name: str = Field(description='a class, or "[unknown]" for an unfamiliar clip (open set)')
    score: float


class PredictionsOut(BaseModel):
    results: list[Prediction] = Field(description="best first")


class ServiceOut(BaseModel):
    suffix: str
    name: str
    model_id: int
    version: int
    unknown_threshold: float | Literal["auto"] | None = Field(description="open set; null when off")
    url: str = Field(description="the published EasyDL-compatible address")


class ServiceList(BaseModel):
    services: list[ServiceOut]


class Unpublished(BaseModel):
    unpublished: ServiceOut = Field(description="what the service served")


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
    unknown_threshold: float | Literal["auto", "off"] | None = Field(
        default=None,
        description='open set: "auto" (the version\'s default, 0.05) or a number in [0, 1): a clip whose '
        "familiarity is below it is answered [unknown] first; off by default (docs/sound.md)",
    )


@router.post("/models", status_code=201, response_model=SoundModelOut)
async def create_model(body: ModelIn, app: AppInfo = Depends(native_app)) -> object:
    return await in_thread(
        platform.create_model, app.pk, body.name, body.type, body.description, body.contact
    )


@router.get("/models", response_model=SoundModelList)
async def list_models(app: AppInfo = Depends(native_app)) -> object:
    return {"models": await in_thread(platform.list_models, app.pk)}


@router.get("/models/{model_id}", response_model=SoundModelOut)
async def get_model(model_id: RowId, app: AppInfo = Depends(native_app)) -> object:
    return await in_thread(platform.get_model, app.pk, model_id)


@router.delete("/models/{model_id}", response_model=DeletedId)
async def delete_model(model_id: RowId, app: AppInfo = Depends(native_app)) -> DeletedId:
    """Delete a model and all its versions; 409 while one of them is published (unpublish first)."""
    await in_thread(platform.delete_model, app.pk, model_id)
    return DeletedId(deleted=model_id)


@router.post("/datasets", status_code=201, response_model=DatasetOut)
async def create_dataset(body: DatasetIn, app: AppInfo = Depends(native_app)) -> object:
    return await in_thread(platform.create_dataset, app.pk, body.name)


@router.get("/datasets", response_model=DatasetList)
async def list_datasets(app: AppInfo = Depends(native_app)) -> object:
    return {"datasets": await in_thread(platform.list_datasets, app.pk)}


@router.get("/datasets/{dataset_id}", response_model=DatasetOut)
async def get_dataset(dataset_id: RowId, app: AppInfo = Depends(native_app)) -> object:
    return await in_thread(platform.get_dataset, app.pk, dataset_id)


@router.post(
    "/datasets/{dataset_id}/imports",
    status_code=202,
    response_model=DatasetImportJobOut,
    openapi_extra=ZIP_BODY,
)
async def import_zip(dataset_id: RowId, request: Request, app: AppInfo = Depends(native_app)) -> object:
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


@router.post("/models/{model_id}/versions", status_code=202, response_model=VersionOut)
async def train(model_id: RowId, body: TrainIn, app: AppInfo = Depends(native_app)) -> object:
    """Train the next version (V1, V2, ...); poll the version or its job for progress."""
    return await in_thread(
        platform.start_training, app.pk, model_id, body.dataset_id, body.classes, body.base_version
    )


@router.get("/models/{model_id}/versions/{version}", response_model=VersionOut)
async def get_version(model_id: RowId, version: RowId, app: AppInfo = Depends(native_app)) -> object:
    """Status and, once trained, the evaluation report (accuracy, per-class P/R/F1, confusion matrix)."""
    return await in_thread(platform.get_version, app.pk, model_id, version)


@router.delete("/models/{model_id}/versions/{version}", response_model=DeletedVersion)
async def delete_version(
    model_id: RowId, version: RowId, app: AppInfo = Depends(native_app)
) -> DeletedVersion:
    """Delete one version; 409 while it is published (unpublish first) or still training (cancel first)."""
    await in_thread(platform.delete_version, app.pk, model_id, version)
    return DeletedVersion(deleted=VersionRef(model_id=model_id, version=version))


@router.post("/models/{model_id}/versions/{version}/cancel", response_model=VersionOut)
async def cancel(model_id: RowId, version: RowId, app: AppInfo = Depends(native_app)) -> object:
    return await in_thread(platform.cancel_version, app.pk, model_id, version)


@router.post(
    "/models/{model_id}/versions/{version}/predict",
    response_model=PredictionsOut,
    openapi_extra=AUDIO_CLIP_BODY,
)
async def validate(
    model_id: RowId,
    version: RowId,
    request: Request,
    top_num: int = Query(6, ge=1, le=1000),
    unknown_threshold: str | None = Query(
        None, description='"auto" or a number in [0, 1): answer [unknown] first for unfamiliar clips'
    ),
    app: AppInfo = Depends(native_app),
) -> object:
    """Model validation (模型校验): send a clip as the body, get the top classes of this version."""
    data = await request.body()

    threshold = platform.parse_threshold(unknown_threshold)

    def run() -> list[dict[str, Any]]:
        decoded = audio.decode(data, max_bytes=CLIP_MAX_BYTES, max_seconds=600)
        return platform.validate(app.pk, model_id, version, decoded.mono(), top_num, threshold)

    inference: InferenceExecutor = request.app.state.inference
    return {"results": await inference.run(run)}


@router.get(
    "/models/{model_id}/versions/{version}/export",
    response_class=StreamingResponse,
    responses={
        200: {"description": "the ONNX model and its labels, zipped", "content": {"application/zip": BINARY}}
    },
)
async def export(model_id: RowId, version: RowId, app: AppInfo = Depends(native_app)) -> StreamingResponse:
    """A zip with sound_classifier.onnx (audio in, scores out; onnxruntime alone runs it) and labels.txt."""
    key = await in_thread(platform.export_version, app.pk, model_id, version)
    return await stored_object_response(
        key, media_type="application/zip", filename=f"model{model_id}-V{version}-onnx.zip"
    )


@router.put("/services/{suffix}", response_model=ServiceOut)
async def publish(suffix: str, body: PublishIn, app: AppInfo = Depends(native_app)) -> object:
    """Publish a version at /rpc/2.0/ai_custom/v1/sound_cls/{suffix}; publishing another version at the
    same suffix swaps it in place (the new version is loaded before the swap)."""
    return await in_thread(
        platform.publish, app.pk, suffix, body.name, body.model_id, body.version, body.unknown_threshold
    )


@router.delete("/services/{suffix}", response_model=Unpublished)
async def unpublish(suffix: str, app: AppInfo = Depends(native_app)) -> object:
    """Take a service offline: its URL answers "service not support" (EasyDL 216102) from then on; the
    model and its versions stay and can be published again."""
    return {"unpublished": await in_thread(platform.unpublish, app.pk, suffix)}


@router.get("/services", response_model=ServiceList)
async def list_services(app: AppInfo = Depends(native_app)) -> object:
    return {"services": await in_thread(platform.list_services, app.pk)}


# ------------------------------------------------ dataset curation, uploads, evaluation, services
# (the web console's needs; every page of it calls these, so a script can do the same)


class ClassRow(BaseModel):
    name: str
    clips: int
    duration_ms: int = Field(description="total duration of the clips whose length is known")
    clips_without_duration: int


class ClassTable(BaseModel):
    classes: list[ClassRow]


class ClipOut(BaseModel):
    id: int
    label: str
    source_name: str
    size_bytes: int
    duration_ms: int | None
    created_at: str


class ClipPage(BaseModel):
    total: int
    offset: int
    clips: list[ClipOut]


class ClipIds(BaseModel):
    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, max_length=10_000)


class Count(BaseModel):
    deleted: int


class RenameIn(BaseModel):
    name: str = Field(description="new class name: letters, digits, '_'")


class MergeIn(BaseModel):
    sources: list[str] = Field(min_length=1)
    into: str = Field(description="an existing class or a new name")


class FromUploadIn(BaseModel):
    upload_id: str = Field(description="a complete upload from POST /v1/uploads")


class Misclassified(BaseModel):
    content_hash: str
    label: str = Field(description="the true class")
    predicted: str
    score: float | None
    dataset_id: int | None = Field(description="null when the clip was deleted from the dataset since")
    clip_id: int | None
    source_name: str | None


class MisclassifiedOut(BaseModel):
    clips: list[Misclassified]


@router.delete("/datasets/{dataset_id}", response_model=Count)
async def delete_dataset(dataset_id: RowId, app: AppInfo = Depends(native_app)) -> Count:
    """Delete a dataset and its clips (versions trained on it keep their weights and reports)."""
    await in_thread(platform.delete_dataset, app.pk, dataset_id)
    return Count(deleted=1)


@router.post(
    "/datasets/{dataset_id}/imports/from-upload", status_code=202, response_model=DatasetImportJobOut
)
async def import_uploaded_zip(
    dataset_id: RowId, body: FromUploadIn, app: AppInfo = Depends(native_app)
) -> object:
    """Import a zip sent through the resumable ``/v1/uploads`` (large archives, up to 5 GB); the job's
    result is the import report, as for ``/imports``."""
    from tingyin.jobs import get_job, input_key, new_job_id
    from tingyin.store.uploads import take_upload

    await in_thread(platform.get_dataset, app.pk, dataset_id)  # a wrong id is refused before the move
    job_id = new_job_id()
    archive, _name = await in_thread(take_upload, app.pk, body.upload_id, input_key(job_id, "dataset.zip"))
    await in_thread(platform.start_import, app.pk, dataset_id, archive, job_id)
    return (await in_thread(get_job, job_id)).as_dict()


@router.get("/datasets/{dataset_id}/classes", response_model=ClassTable)
async def dataset_classes(dataset_id: RowId, app: AppInfo = Depends(native_app)) -> ClassTable:
    """Per class: clips and total duration."""
    rows = await in_thread(platform.class_table, app.pk, dataset_id)
    return ClassTable(classes=[ClassRow.model_validate(r) for r in rows])


@router.patch("/datasets/{dataset_id}/classes/{label}", response_model=ClassTable)
async def rename_class(
    dataset_id: RowId, label: str, body: RenameIn, app: AppInfo = Depends(native_app)
) -> ClassTable:
    rows = await in_thread(platform.rename_class, app.pk, dataset_id, label, body.name)
    return ClassTable(classes=[ClassRow.model_validate(r) for r in rows])


@router.delete("/datasets/{dataset_id}/classes/{label}", response_model=Count)
async def delete_class(dataset_id: RowId, label: str, app: AppInfo = Depends(native_app)) -> Count:
    return Count(deleted=await in_thread(platform.delete_class, app.pk, dataset_id, label))


@router.post("/datasets/{dataset_id}/classes/merge", response_model=ClassTable)
async def merge_classes(dataset_id: RowId, body: MergeIn, app: AppInfo = Depends(native_app)) -> ClassTable:
    rows = await in_thread(platform.merge_classes, app.pk, dataset_id, body.sources, body.into)
    return ClassTable(classes=[ClassRow.model_validate(r) for r in rows])


@router.get("/datasets/{dataset_id}/clips", response_model=ClipPage)
async def list_clips(
    dataset_id: RowId,
    label: str | None = Query(None, description="one class; all classes when absent"),
    offset: int = Query(0, ge=0, le=MAX_ID),
    limit: int = Query(50, ge=1, le=500),
    app: AppInfo = Depends(native_app),
) -> ClipPage:
    page = await in_thread(platform.list_clips, app.pk, dataset_id, label, offset, limit)
    return ClipPage.model_validate(page)


@router.post(
    "/datasets/{dataset_id}/clips", status_code=201, response_model=ClipOut, openapi_extra=AUDIO_CLIP_BODY
)
async def add_clip(
    dataset_id: RowId,
    request: Request,
    label: str = Query(description="the class (created when new)"),
    filename: str = Query(description="original file name; its extension tells the format"),
    app: AppInfo = Depends(native_app),
) -> ClipOut:
    """Add one audio file (the raw body, at most 4 MB) to a class."""
    data = bytearray()
    async for chunk in request.stream():
        data.extend(chunk)
        if len(data) > CLIP_MAX_BYTES:
            raise InvalidRequest(f"a clip takes at most {CLIP_MAX_BYTES // 1024**2} MB")
    row = await in_thread(platform.add_clip, app.pk, dataset_id, label, bytes(data), filename)
    return ClipOut.model_validate(row)


@router.post("/datasets/{dataset_id}/clips/delete", response_model=Count)
async def delete_clips(dataset_id: RowId, body: ClipIds, app: AppInfo = Depends(native_app)) -> Count:
    """Delete clips by id."""
    return Count(deleted=await in_thread(platform.delete_clips, app.pk, dataset_id, body.ids))


@router.get(
    "/datasets/{dataset_id}/clips/{clip_id}/audio",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "the clip as uploaded",
            "content": {"audio/*": BINARY, "application/octet-stream": BINARY},
        }
    },
)
async def clip_audio(
    dataset_id: RowId, clip_id: RowId, app: AppInfo = Depends(native_app)
) -> StreamingResponse:
    """The clip's file as uploaded (for playback)."""
    import mimetypes

    key, name = await in_thread(platform.clip_file, app.pk, dataset_id, clip_id)
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return await stored_object_response(key, media_type=media, filename=name)


@router.get("/models/{model_id}/versions/{version}/misclassified", response_model=MisclassifiedOut)
async def misclassified(
    model_id: RowId, version: RowId, app: AppInfo = Depends(native_app)
) -> MisclassifiedOut:
    """The held-out clips this version got wrong (playable through their clip id)."""
    rows = await in_thread(platform.misclassified, app.pk, model_id, version)
    return MisclassifiedOut(clips=[Misclassified.model_validate(r) for r in rows])
