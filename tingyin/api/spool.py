"""Large JSON uploads with base64 audio (Qiniu: up to 100 MB of audio, ~134 MB of JSON).

The body is streamed to a temporary file (hashing it on the way for signatures); the base64 field
is then decoded from the file, in chunks, straight into a blob. Memory holds a chunk at a time, not
the body, its parsed JSON and the decoded audio together.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import mmap
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request

from tingyin.config import get_settings
from tingyin.errors import InvalidRequest
from tingyin.store.blobs import Blob, put_blob

CHUNK_CHARS = 4 * 1024 * 1024  # a multiple of 4, so each chunk decodes on its own


@dataclass
class SpooledBody:
    path: Path
    size: int

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


async def spool_body(request: Request, *, mac: hmac.HMAC | None = None) -> SpooledBody:
    """Write the request body to a temporary file, feeding ``mac`` with it as it arrives."""
    directory = get_settings().blob_dir / "tmp"
    directory.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=directory, prefix="body-")
    size = 0
    try:
        with os.fdopen(descriptor, "wb") as handle:
            async for chunk in request.stream():
                if chunk:
                    size += len(chunk)
                    handle.write(chunk)
                    if mac is not None:
                        mac.update(chunk)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return SpooledBody(Path(name), size)


class BadBase64(InvalidRequest):
    """A base64 field is not valid base64."""

    code = "bad_base64"


def _decode_chunks(view: mmap.mmap, start: int, end: int) -> Iterator[bytes]:
    for offset in range(start, end, CHUNK_CHARS):
        piece = view[offset : min(offset + CHUNK_CHARS, end)]
        try:
            yield base64.b64decode(piece, validate=True)
        except (binascii.Error, ValueError):
            raise BadBase64("the audio field is not valid base64") from None


def split_base64_field(
    body: SpooledBody, field: str, *, max_decoded: int
) -> tuple[dict[str, Any], Blob | None]:
    """Parse the JSON body in ``body`` with ``field`` (a base64 string) decoded into a blob.

    Returns the other fields, and the blob (None when the field is absent or empty)."""
    if body.size == 0:
        raise InvalidRequest("the request body is empty")
    with body.path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        match = re.search(rb'"' + re.escape(field.encode()) + rb'"\s*:\s*"', view)
        if match is None:
            return _loads(view[:]), None
        start = match.end()
        end = view.find(b'"', start)
        if end < 0:
            raise InvalidRequest("the JSON body is cut short")
        if view.find(b"\\", start, end) >= 0:
            # Escaped characters (e.g. "\/") in the field: rare; parse the slow way.
            data = _loads(view[:])
            value = data.pop(field, "")
            if not isinstance(value, str):
                raise InvalidRequest(f"{field} must be a base64 string")
            raw = value.encode()
            if not raw:
                return data, None
            if len(raw) * 3 // 4 > max_decoded:
                raise InvalidRequest(f"{field} holds more than {max_decoded} bytes")
            try:
                return data, put_blob(base64.b64decode(raw, validate=True))
            except (binascii.Error, ValueError):
                raise BadBase64(f"the {field} field is not valid base64") from None
        rest = _loads(view[: match.start()] + b'"' + field.encode() + b'": ""' + view[end + 1 :])
        rest.pop(field, None)
        if end == start:
            return rest, None
        if (end - start) * 3 // 4 > max_decoded + 3:
            raise InvalidRequest(f"{field} holds more than {max_decoded} bytes")
        blob = put_blob(_decode_chunks(view, start, end), max_bytes=max_decoded)
        return rest, blob


def _loads(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the JSON body must be an object")
    return data
