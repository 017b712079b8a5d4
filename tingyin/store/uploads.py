"""Resumable chunked uploads: large files (dataset zips up to 5 GB) sent in pieces over plain HTTP.

The client declares the size, then appends chunks at the offset the server reports; after a broken
connection it asks for the offset and goes on from there. A complete upload becomes a stored object of
its consumer (the import job) when an endpoint takes it. Unfinished uploads are dropped after
``STALE_AFTER_S``. Each upload lives in this node's scratch area (``$TINGYIN_HOME/scratch/uploads/<id>/``,
``data`` and ``meta.json``): behind a load balancer, the chunks of one upload must reach one node (sticky
sessions), or clients use the streaming ``POST /v1/sound/datasets/{id}/imports`` instead.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path

from tingyin.config import get_settings
from tingyin.errors import InvalidRequest, NotFound
from tingyin.store.blobs import StoredBlob, blob_store

MAX_UPLOAD_BYTES = 5 * 1024**3
MAX_CHUNK_BYTES = 64 * 1024**2
STALE_AFTER_S = 24 * 3600.0
UPLOAD_ID = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


class UploadOffsetMismatch(InvalidRequest):
    """The chunk does not start where the upload stands (resume from ``received``)."""

    code = "upload_offset_mismatch"
    http_status = 409


@dataclass(frozen=True)
class Upload:
    id: str
    app_pk: int
    filename: str
    size: int
    received: int
    created_at: float

    @property
    def complete(self) -> bool:
        return self.received == self.size

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "filename": self.filename,
            "size": self.size,
            "received": self.received,
            "complete": self.complete,
        }


def _root() -> Path:
    return get_settings().scratch_dir / "uploads"


def _directory(upload_id: str) -> Path:
    if not UPLOAD_ID.match(upload_id):
        raise NotFound("no such upload")
    return _root() / upload_id


def _purge_stale(now: float) -> None:
    root = _root()
    if not root.is_dir():
        return
    for entry in root.iterdir():
        meta = entry / "meta.json"
        try:
            created = float(json.loads(meta.read_text())["created_at"])
        except (OSError, ValueError, KeyError):
            created = entry.stat().st_mtime
        if now - created > STALE_AFTER_S:
            shutil.rmtree(entry, ignore_errors=True)


def create_upload(app_pk: int, filename: str, size: int) -> Upload:
    if size < 1:
        raise InvalidRequest("the file is empty (0 bytes)")
    if size > MAX_UPLOAD_BYTES:
        raise InvalidRequest(f"uploads take at most {MAX_UPLOAD_BYTES} bytes")
    now = time.time()
    _purge_stale(now)
    upload = Upload(secrets.token_urlsafe(24), app_pk, Path(filename).name[:200], size, 0, now)
    directory = _directory(upload.id)
    directory.mkdir(parents=True)
    (directory / "data").touch()
    meta = {k: v for k, v in asdict(upload).items() if k != "received"}
    (directory / "meta.json").write_text(json.dumps(meta))
    return upload


def get_upload(app_pk: int, upload_id: str) -> Upload:
    directory = _directory(upload_id)
    try:
        meta = json.loads((directory / "meta.json").read_text())
        received = (directory / "data").stat().st_size
    except (OSError, ValueError):
        raise NotFound("no such upload (finished, expired or never started)") from None
    if int(meta["app_pk"]) != app_pk:
        raise NotFound("no such upload (finished, expired or never started)")
    return Upload(upload_id, app_pk, str(meta["filename"]), int(meta["size"]), received, meta["created_at"])


async def append_chunk(app_pk: int, upload_id: str, offset: int, chunks: AsyncIterator[bytes]) -> Upload:
    """Append the request body at ``offset`` (which must be where the upload stands)."""
    upload = get_upload(app_pk, upload_id)
    path = _directory(upload_id) / "data"
    with path.open("ab") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UploadOffsetMismatch("another chunk of this upload is being written; retry") from None
        position = handle.seek(0, os.SEEK_END)
        if offset != position:
            raise UploadOffsetMismatch(f"the upload stands at byte {position}, not {offset}; resume there")
        written = 0
        try:
            async for chunk in chunks:
                written += len(chunk)
                if written > MAX_CHUNK_BYTES:
                    raise InvalidRequest(f"a chunk takes at most {MAX_CHUNK_BYTES} bytes")
                if position + written > upload.size:
                    raise InvalidRequest(f"more bytes than the declared size ({upload.size})")
                handle.write(chunk)
        except BaseException:
            handle.truncate(position)  # a chunk lands whole or not at all
            raise
    return get_upload(app_pk, upload_id)


def take_upload(app_pk: int, upload_id: str, key: str) -> tuple[StoredBlob, str]:
    """Store a complete upload as object ``key`` (and forget the upload): (stored object, file name)."""
    upload = get_upload(app_pk, upload_id)
    if not upload.complete:
        raise InvalidRequest(
            f"upload {upload_id} has {upload.received} of {upload.size} bytes; finish it first"
        )
    directory = _directory(upload_id)
    try:
        stored = blob_store().put_file(key, directory / "data")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return stored, upload.filename


def delete_upload(app_pk: int, upload_id: str) -> None:
    get_upload(app_pk, upload_id)
    shutil.rmtree(_directory(upload_id), ignore_errors=True)
