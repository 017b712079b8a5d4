"""Request bodies on their way to storage, as they arrive, and stored objects on their way out: never
whole in memory.

Three shapes of upload:

- a raw body, or the ``file`` part of a multipart form (``upload_chunks``), streamed into a writer
  (``receive_upload``): a stored object for a job, a scratch file for a synchronous request;
- a JSON object with base64 audio in one field (Qiniu ``audio``: up to 100 MB of audio in ~134 MB of
  JSON; SAMI ``data``), read incrementally (``receive_json_upload``): the field is decoded into a writer
  chunk by chunk and the other fields (small) are parsed once the body has ended.

Blocking writes (disk, object storage) run in threads, a batch of about a megabyte at a time. A writer is
aborted on any error (a body over its limit, a client that hangs up, bad base64), so a refused upload
leaves nothing behind.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse
from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

from tingyin.api.deps import in_thread
from tingyin.audio import AudioTooLarge
from tingyin.errors import InvalidRequest, NotFound, PayloadTooLarge
from tingyin.store.blobs import BlobWriter, StoredBlob, blob_store

BATCH_BYTES = 1024 * 1024  # bytes gathered before one blocking write
MAX_OTHER_FIELDS_BYTES = 4 * 1024 * 1024  # a JSON upload's fields besides its audio
_MAX_PART_HEADER_BYTES = 16 * 1024


class BadBase64(InvalidRequest):
    """A base64 field is not valid base64."""

    code = "bad_base64"


async def _abort(writer: BlobWriter | None) -> None:
    if writer is not None:
        # Shielded: when the request is being cancelled (the client hung up), the clean-up still runs.
        with anyio.CancelScope(shield=True):
            await in_thread(writer.abort)


# ---------------------------------------------------------------- raw and multipart bodies


class FormFieldError(InvalidRequest):
    """A multipart form's text fields are refused (not the file): too many, too long, not text."""


class FormFields:
    """The text fields of a multipart form besides its file, as sent (a name may repeat, in order), within
    a count and a byte budget: a form's small fields are read into memory, its file never is."""

    def __init__(self, *, max_fields: int = 32, max_bytes: int = 64 * 1024) -> None:
        self.max_fields = max_fields
        self.max_bytes = max_bytes
        self.values: dict[str, list[str]] = {}
        self._count = 0
        self._size = 0

    def add(self, name: str, value: bytes) -> None:
        self._count += 1
        self._size += len(value)
        if self._count > self.max_fields:
            raise FormFieldError(f"the form holds more than {self.max_fields} fields")
        if self._size > self.max_bytes:
            raise FormFieldError(f"the form's fields besides the file hold more than {self.max_bytes} bytes")
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise FormFieldError(f"the field {name!r} is not UTF-8 text", param=name) from None
        self.values.setdefault(name, []).append(text)


async def upload_chunks(
    request: Request, field: str = "file", *, fields: FormFields | None = None
) -> AsyncIterator[bytes]:
    """The bytes of a raw-body upload, or of the ``field`` part of a multipart form, as they arrive. With
    ``fields``, a multipart form's other parts are collected there (text only); without, they are skipped."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        if fields is not None:
            raise InvalidRequest(f"send a multipart form with the file in its '{field}' field")
        async for chunk in request.stream():
            if chunk:
                yield chunk
        return
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidRequest("the multipart body names no boundary")
    part = _MultipartFile(field.encode(), fields)
    parser = MultipartParser(boundary, part.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            for piece in part.take():
                yield piece
        parser.finalize()
    except MultipartParseError:
        raise InvalidRequest("the multipart body is malformed") from None
    for piece in part.take():
        yield piece
    if not part.found:
        raise InvalidRequest(f"multipart upload needs a '{field}' field")


class _MultipartFile:
    """Collects the data of one named part from python-multipart's callbacks; other parts are skipped, or
    kept in ``fields`` when given."""

    def __init__(self, name: bytes, fields: FormFields | None = None) -> None:
        self.name = name
        self.fields = fields
        self.found = False
        self._inside = False
        self._pieces: list[bytes] = []
        self._other: bytearray | None = None  # the value of another field being read
        self._other_name = ""
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def take(self) -> list[bytes]:
        pieces, self._pieces = self._pieces, []
        return pieces

    def _begin(self) -> None:
        self._inside = False
        self._disposition = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]
        self._check_header()

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        self._check_header()

    def _check_header(self) -> None:
        if len(self._header_name) + len(self._header_value) > _MAX_PART_HEADER_BYTES:
            raise InvalidRequest("a multipart header is too long")

    def _header_end(self) -> None:
        if bytes(self._header_name).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if options.get(b"name") == self.name:
            if self.found:
                raise InvalidRequest(f"the form holds more than one '{self.name.decode()}' field")
            self.found = self._inside = True
        elif self.fields is not None:
            self._other_name = options.get(b"name", b"").decode("utf-8", "replace")
            if b"filename" in options:
                raise FormFieldError(f"{self._other_name!r} must be a text field", param=self._other_name)
            self._other = bytearray()

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._inside:
            self._pieces.append(bytes(data[start:end]))
        elif self._other is not None and self.fields is not None:
            self._other += data[start:end]
            if len(self._other) > self.fields.max_bytes:
                raise FormFieldError(f"the field {self._other_name!r} is too long", param=self._other_name)

    def _end(self) -> None:
        self._inside = False
        if self._other is not None and self.fields is not None:
            self.fields.add(self._other_name, bytes(self._other))
        self._other = None


async def receive_upload(
    chunks: AsyncIterator[bytes], writer: BlobWriter, *, max_bytes: int, empty_message: str
) -> StoredBlob:
    """Stream ``chunks`` into ``writer`` and commit it; abort it on any error."""
    batch = bytearray()
    try:
        async for chunk in chunks:
            batch += chunk
            if writer.size + len(batch) > max_bytes:
                raise PayloadTooLarge.over(max_bytes)
            if len(batch) >= BATCH_BYTES:
                await in_thread(writer.write, bytes(batch))
                batch.clear()
        if batch:
            await in_thread(writer.write, bytes(batch))
        if writer.size == 0:
            raise InvalidRequest(empty_message)
        return await in_thread(writer.commit)
    except BaseException:
        await _abort(writer)
        raise


# ---------------------------------------------------------------- JSON with a base64 field

_STRING_STOP = re.compile(rb'["\\]')


class Base64JsonReader:
    """Reads a JSON object incrementally, decoding the base64 string of its top-level ``field`` into
    a writer (opened when the field starts) and keeping everything else, with the field emptied, for
    ``json.loads`` at the end. Only the structure of the object is tracked (depth, strings, keys); the
    other fields' bytes are kept as sent, up to ``max_other_bytes``."""

    def __init__(
        self,
        field: str,
        open_writer: Callable[[], BlobWriter] | None,
        *,
        max_decoded: int,
        max_other_bytes: int = MAX_OTHER_FIELDS_BYTES,
    ) -> None:
        self.field = field
        self._field_key = field.encode()
        self._open_writer = open_writer
        self.max_decoded = max_decoded
        self.max_other_bytes = max_other_bytes
        self.writer: BlobWriter | None = None
        self.other = bytearray()
        # Structure outside the field.
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._key: bytearray | None = None  # the top-level key being read
        self._expect_key = False
        self._last_key = b""
        self._value_is_field = False  # after `"field":`, before its value
        self._seen_field = False
        # Inside the field's string.
        self._in_field = False
        self._field_escape = False
        self._carry = b""  # base64 characters short of a group of four
        self._padded = False

    # -- feeding ----------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        position = 0
        while position < len(data):
            if self._in_field:
                position = self._feed_field(data, position)
            else:
                position = self._feed_structure(data, position)
        if len(self.other) > self.max_other_bytes:
            raise InvalidRequest(
                f"the fields besides {self.field} hold more than {self.max_other_bytes} bytes"
            )

    def _feed_structure(self, data: bytes, position: int) -> int:
        while position < len(data):
            if self._in_string and self._key is None and not self._escaped:
                # Jump over string content that is not a top-level key.
                stop = _STRING_STOP.search(data, position)
                end = stop.start() if stop else len(data)
                self.other += data[position:end]
                position = end
                if position >= len(data):
                    break
            byte = data[position : position + 1]
            position += 1
            if self._in_string:
                self.other += byte
                if self._escaped:
                    self._escaped = False
                    if self._key is not None:
                        self._key += byte
                elif byte == b"\\":
                    self._escaped = True
                    if self._key is not None:
                        self._key += byte
                elif byte == b'"':
                    self._in_string = False
                    if self._key is not None:
                        self._last_key, self._key = bytes(self._key), None
                        self._expect_key = False
                elif self._key is not None:
                    self._key += byte
                continue
            if byte == b'"' and self._depth == 1 and self._value_is_field:
                self.other += b'"'
                self._start_field()
                return position
            self.other += byte
            if byte in b" \t\r\n":
                continue
            if byte == b'"':
                self._in_string = True
                if self._depth == 1 and self._expect_key:
                    self._key = bytearray()
            elif byte in b"{[":
                self._depth += 1
                self._expect_key = byte == b"{" and self._depth == 1
                self._value_is_field = False
            elif byte in b"}]":
                self._depth -= 1
            elif byte == b":" and self._depth == 1:
                self._value_is_field = self._last_key == self._field_key
            elif byte == b"," and self._depth == 1:
                self._expect_key, self._value_is_field = True, False
            elif self._depth == 1:
                self._value_is_field = False  # a number, true, false or null
        return position

    def _start_field(self) -> None:
        if self._seen_field:
            raise InvalidRequest(f"the body holds {self.field} twice")
        self._seen_field = True
        self._in_field = True
        self._value_is_field = False

    def _feed_field(self, data: bytes, position: int) -> int:
        while position < len(data):
            if self._field_escape:
                self._field_escape = False
                escaped = data[position : position + 1]
                position += 1
                if escaped == b"/":
                    self._decode(b"/")
                elif escaped not in (b"n", b"r"):  # line breaks of MIME-style base64 are skipped
                    raise BadBase64(f"the {self.field} field is not valid base64")
                continue
            stop = _STRING_STOP.search(data, position)
            end = stop.start() if stop else len(data)
            if end > position:
                self._decode(data[position:end])
            position = end
            if stop is None:
                break
            position += 1
            if stop.group() == b"\\":
                self._field_escape = True
            else:  # the closing quote
                self._end_field()
                self.other += b'"'
                return position
        return position

    def _decode(self, text: bytes) -> None:
        if self._padded:
            raise BadBase64(f"the {self.field} field has data after its padding")
        text = self._carry + text
        usable = len(text) - len(text) % 4
        self._carry = text[usable:]
        if not usable:
            return
        try:
            decoded = base64.b64decode(text[:usable], validate=True)
        except (binascii.Error, ValueError):
            raise BadBase64(f"the {self.field} field is not valid base64") from None
        self._padded = text[usable - 1 : usable] == b"="
        self._write(decoded)

    def _write(self, decoded: bytes) -> None:
        if not decoded:
            return
        if self.writer is None:
            if self._open_writer is None or self.max_decoded <= 0:
                raise InvalidRequest(f"{self.field} is not expected in this request")
            self.writer = self._open_writer()
        if self.writer.size + len(decoded) > self.max_decoded:
            raise AudioTooLarge(f"the {self.field} field holds more than {self.max_decoded} bytes")
        self.writer.write(decoded)

    def _end_field(self) -> None:
        self._in_field = False
        if self._carry:
            raise BadBase64(f"the {self.field} field is not valid base64 (its length is not a multiple of 4)")

    # -- the end ----------------------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        """The other fields (``field`` removed). The writer, if any, is left to commit or abort."""
        if self._in_field or self._in_string or self._depth != 0:
            raise InvalidRequest("the JSON body is cut short")
        if not self.other.strip():
            raise InvalidRequest("the request body is empty")
        try:
            data = json.loads(bytes(self.other))
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest("the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidRequest("the JSON body must be an object")
        value = data.pop(self.field, "")
        if value not in ("", None):
            raise InvalidRequest(f"{self.field} must be a base64 string")
        return data


@dataclass
class JsonUpload:
    """A JSON body read by ``receive_json_upload``: its fields, and the decoded field's bytes in a
    writer that is not committed yet (so a caller can still check a signature first)."""

    fields: dict[str, Any]
    writer: BlobWriter | None

    def commit(self) -> StoredBlob | None:
        return self.writer.commit() if self.writer is not None else None

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


async def receive_json_upload(
    request: Request,
    field: str,
    open_writer: Callable[[], BlobWriter] | None,
    *,
    max_decoded: int,
    mac: hmac.HMAC | None = None,
) -> JsonUpload:
    """Read a JSON body whose ``field`` holds base64 data, decoding the field into
    ``open_writer()`` as the body arrives and feeding ``mac`` with the raw body."""
    reader = Base64JsonReader(field, open_writer, max_decoded=max_decoded)
    batch = bytearray()
    try:
        async for chunk in request.stream():
            if mac is not None:
                mac.update(chunk)
            batch += chunk
            if len(batch) >= BATCH_BYTES:
                await in_thread(reader.feed, bytes(batch))
                batch.clear()
        if batch:
            await in_thread(reader.feed, bytes(batch))
        fields = reader.finish()
    except BaseException:
        await _abort(reader.writer)
        raise
    return JsonUpload(fields, reader.writer)


# ---------------------------------------------------------------- downloads


async def stored_object_response(key: str, *, media_type: str, filename: str) -> StreamingResponse:
    """A stored object as a download, read a megabyte at a time (from disk or object storage)."""
    store = blob_store()
    size = await in_thread(store.size, key)
    if size is None:
        raise NotFound(f"no stored object {key}")

    async def body() -> AsyncIterator[bytes]:
        stream = await in_thread(store.backend.open, key)
        try:
            while block := await in_thread(stream.read, BATCH_BYTES):
                yield block
        finally:
            with anyio.CancelScope(shield=True):
                await in_thread(stream.close)

    return StreamingResponse(
        body(),
        media_type=media_type,
        headers={
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )
