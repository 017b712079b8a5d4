"""Content-addressed files under ``$TINGYIN_HOME/blobs`` (uploaded audio, datasets, trained models)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tingyin.config import get_settings
from tingyin.errors import InvalidRequest, NotFound


@dataclass(frozen=True)
class Blob:
    key: str  # "<sha256>", stable across machines
    size: int

    @property
    def path(self) -> Path:
        return blob_path(self.key)


def blob_path(key: str) -> Path:
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise InvalidRequest("bad blob key")
    return get_settings().blob_dir / key[:2] / key[2:4] / key


def put_blob(chunks: bytes | Iterable[bytes], *, max_bytes: int | None = None) -> Blob:
    """Stream ``chunks`` to disk while hashing (never the whole upload in memory twice)."""
    base = get_settings().blob_dir
    base.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    descriptor, temporary = tempfile.mkstemp(dir=base, prefix=".upload-")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            for chunk in [chunks] if isinstance(chunks, bytes | bytearray) else chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise InvalidRequest(f"upload larger than {max_bytes} bytes")
                digest.update(chunk)
                handle.write(chunk)
        blob = Blob(digest.hexdigest(), size)
        target = blob.path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temporary, target)
        return blob
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def get_blob(key: str) -> Blob:
    path = blob_path(key)
    if not path.exists():
        raise NotFound(f"no blob {key}")
    return Blob(key, path.stat().st_size)
