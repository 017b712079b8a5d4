"""Resumable chunked uploads (``/v1/uploads``) for files too large for one request: dataset zips.

1. ``POST /v1/uploads`` with ``{filename, size}`` → ``{id, received: 0}``;
2. ``PUT /v1/uploads/{id}?offset=N`` with the next bytes as the body, until ``complete``;
   after a broken connection ``GET /v1/uploads/{id}`` tells where to resume;
3. hand the id to the endpoint that consumes it, e.g. ``POST /v1/sound/datasets/{id}/imports?upload_id=``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from tingyin.api.deps import AuthenticatedRoute, in_thread, native_app
from tingyin.api.openapi import BINARY, raw_body
from tingyin.store import uploads
from tingyin.store.apps import AppInfo

router = APIRouter(prefix="/v1/uploads", tags=["uploads"], route_class=AuthenticatedRoute)


class UploadIn(BaseModel):
    filename: str = Field(max_length=255)
    size: int = Field(description=f"bytes, 1 to {uploads.MAX_UPLOAD_BYTES} (checked by the store)")


class UploadOut(BaseModel):
    id: str
    filename: str
    size: int
    received: int = Field(description="bytes stored so far: the offset of the next chunk")
    complete: bool
    max_chunk_bytes: int = uploads.MAX_CHUNK_BYTES


def _out(upload: uploads.Upload) -> UploadOut:
    return UploadOut.model_validate(upload.as_dict())


@router.post("", status_code=201, response_model=UploadOut)
async def create_upload(body: UploadIn, app: AppInfo = Depends(native_app)) -> UploadOut:
    return _out(await in_thread(uploads.create_upload, app.pk, body.filename, body.size))


@router.get("/{upload_id}", response_model=UploadOut)
async def get_upload(upload_id: str, app: AppInfo = Depends(native_app)) -> UploadOut:
    return _out(await in_thread(uploads.get_upload, app.pk, upload_id))


@router.put(
    "/{upload_id}",
    response_model=UploadOut,
    openapi_extra=raw_body({"application/octet-stream": BINARY}, "the next bytes of the file"),
)
async def put_chunk(
    upload_id: str,
    request: Request,
    offset: int = Query(
        ge=0, le=uploads.MAX_UPLOAD_BYTES, description="must equal `received`; 409 otherwise"
    ),
    app: AppInfo = Depends(native_app),
) -> UploadOut:
    """Append the body (at most max_chunk_bytes) at ``offset``; a failed chunk leaves nothing behind."""

    async def body() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            if chunk:
                yield chunk

    return _out(await uploads.append_chunk(app.pk, upload_id, offset, body()))


class Deleted(BaseModel):
    deleted: str


@router.delete("/{upload_id}", response_model=Deleted)
async def delete_upload(upload_id: str, app: AppInfo = Depends(native_app)) -> Deleted:
    await in_thread(uploads.delete_upload, app.pk, upload_id)
    return Deleted(deleted=upload_id)
