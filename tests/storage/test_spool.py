"""Streaming readers of request bodies: the JSON reader that decodes one base64 field as the body
arrives (whatever the chunk boundaries), and the multipart reader that keeps one part (and, when asked,
the form's text fields)."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from python_multipart.multipart import MultipartParser, parse_options_header

from tingyin.api.spool import BadBase64, Base64JsonReader, FormFields, _MultipartFile
from tingyin.audio import AudioTooLarge
from tingyin.errors import InvalidRequest
from tingyin.store.blobs import BlobWriter, Scratch


def read(body: bytes, tmp_path: Path, *, chunk: int, field: str = "audio", max_decoded: int = 10**8) -> Any:
    """Feed ``body`` in pieces of ``chunk`` bytes; returns (other fields, decoded bytes or None)."""
    scratch = Scratch(tmp_path / "scratch")
    target = tmp_path / f"decoded-{chunk}"
    target.unlink(missing_ok=True)
    opened: list[BlobWriter] = []

    def open_writer() -> BlobWriter:
        opened.append(scratch.writer(target))
        return opened[-1]

    reader = Base64JsonReader(field, open_writer, max_decoded=max_decoded)
    for start in range(0, len(body), chunk):
        reader.feed(body[start : start + chunk])
    fields = reader.finish()
    if reader.writer is None:
        return fields, None
    reader.writer.commit()
    return fields, target.read_bytes()


BODIES: list[tuple[str, dict[str, Any]]] = [
    ("first", {"audio": "A", "voice_id": "v1", "hot_words": [{"hot_word": "x", "factor": 2}]}),
    ("last", {"voice_id": "v", "need_words": 1, "audio": "A"}),
    (
        "decoys",
        {
            "note": 'says "audio": "not this", with \\ and "quotes"',
            "nested": {"audio": "QUJD", "list": [{"audio": 1}, "audio"]},
            "audio": "A",
            "tail": ["a", {"b": None}],
            "unicode": "中文\u2028",
        },
    ),
    ("empty", {"audio": "", "voice_id": "v"}),
    ("absent", {"voice_id": "v", "n": 1.5e3, "t": True, "f": False, "z": None}),
]


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 100, 30_001])
@pytest.mark.parametrize(("name", "template"), BODIES, ids=[n for n, _ in BODIES])
def test_field_is_decoded_and_the_rest_parsed_at_any_chunk_boundary(
    tmp_path: Path, size: int, name: str, template: dict[str, Any]
) -> None:
    payload = random.Random(size).randbytes(size)
    data = {k: (base64.b64encode(payload).decode() if v == "A" else v) for k, v in template.items()}
    body = json.dumps(data, ensure_ascii=False).encode()
    expected = {k: v for k, v in data.items() if k != "audio"}
    carries_audio = template.get("audio") == "A" and size > 0
    for chunk in (1, 2, 3, 7, 64, 4099, len(body)):
        fields, decoded = read(body, tmp_path, chunk=chunk)
        assert fields == expected, chunk
        assert decoded == (payload if carries_audio else None), chunk


def test_escaped_slashes_and_mime_line_breaks_are_taken(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 40
    text = base64.encodebytes(payload).decode()  # line breaks every 76 characters
    body = json.dumps({"audio": text, "k": 1}).replace("/", "\\/").encode()
    for chunk in (1, 5, 1000):
        fields, decoded = read(body, tmp_path, chunk=chunk)
        assert fields == {"k": 1} and decoded == payload


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"audio": "QUJD*EFC"}', BadBase64),  # not in the alphabet
        (b'{"audio": "QQ==QUJD"}', BadBase64),  # data after padding
        (b'{"audio": "QUJDR"}', BadBase64),  # not a multiple of four
        (b'{"audio": "QU\\tJD"}', BadBase64),  # an escape that base64 never holds
        (b'{"audio": "QUJD", "audio": "QUJD"}', InvalidRequest),
        (b'{"audio": 12}', InvalidRequest),
        (b'{"audio": "QUJD"', InvalidRequest),  # cut short
        (b'{"audio": "QUJ', InvalidRequest),
        (b"", InvalidRequest),
        (b"[1, 2]", InvalidRequest),
        (b'{"a": tru}', InvalidRequest),
    ],
)
def test_refusals(tmp_path: Path, body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        read(body, tmp_path, chunk=3)


def test_limits(tmp_path: Path) -> None:
    big = json.dumps({"audio": base64.b64encode(b"x" * 3001).decode()}).encode()
    with pytest.raises(AudioTooLarge):
        read(big, tmp_path, chunk=100, max_decoded=3000)
    reader = Base64JsonReader("audio", None, max_decoded=0)
    with pytest.raises(InvalidRequest, match="not expected"):
        reader.feed(b'{"audio": "QUJD"}')
    reader = Base64JsonReader("audio", None, max_decoded=0, max_other_bytes=100)
    with pytest.raises(InvalidRequest, match="besides audio"):
        reader.feed(json.dumps({"voice_id": "v" * 200}).encode())


def test_a_refused_body_leaves_no_file(tmp_path: Path) -> None:
    scratch = Scratch(tmp_path / "scratch")
    with scratch.file() as target:
        reader = Base64JsonReader("audio", lambda: scratch.writer(target), max_decoded=10**6)
        reader.feed(b'{"audio": "' + base64.b64encode(b"y" * 30000))
        assert reader.writer is not None and reader.writer.size == 30000
        with pytest.raises(BadBase64):
            reader.feed(b"*AAA")
        reader.writer.abort()
        assert not target.exists()
    assert scratch.usage() == (0, 0)


def test_multipart_keeps_the_file_part_only() -> None:
    payload = random.Random(1).randbytes(200_000)
    request = httpx.Request(
        "POST",
        "http://x/v1/recognize",
        data={"note": "file", "language": "zh"},
        files={"file": ("clip.wav", payload, "audio/wav")},
    )
    body = request.read()
    _, options = parse_options_header(request.headers["content-type"])
    for chunk in (1, 17, 4096, len(body)):
        part = _MultipartFile(b"file")
        parser = MultipartParser(options[b"boundary"], part.callbacks())
        received = b""
        for start in range(0, len(body), chunk):
            parser.write(body[start : start + chunk])
            received += b"".join(part.take())
        parser.finalize()
        received += b"".join(part.take())
        assert part.found and received == payload, chunk


def _parse_form(request: httpx.Request, fields: FormFields, chunk: int) -> tuple[_MultipartFile, bytes]:
    body = request.read()
    _, options = parse_options_header(request.headers["content-type"])
    part = _MultipartFile(b"file", fields)
    parser = MultipartParser(options[b"boundary"], part.callbacks())
    received = b""
    for start in range(0, len(body), chunk):
        parser.write(body[start : start + chunk])
        received += b"".join(part.take())
    parser.finalize()
    return part, received + b"".join(part.take())


def test_multipart_fields_are_kept_beside_the_file() -> None:
    payload = random.Random(2).randbytes(100_000)
    for chunk in (1, 13, 4096, 10**6):
        request = httpx.Request(
            "POST",
            "http://x/v1/audio/transcriptions",
            data={"model": "whisper-1", "prompt": "盛源", "timestamp_granularities[]": ["word", "segment"]},
            files={"file": ("clip.wav", payload, "audio/wav")},
        )
        fields = FormFields()
        part, received = _parse_form(request, fields, chunk)
        assert part.found and received == payload, chunk
        assert fields.values == {
            "model": ["whisper-1"],
            "prompt": ["盛源"],
            "timestamp_granularities[]": ["word", "segment"],
        }


def test_multipart_fields_are_bounded_and_text() -> None:
    def form(data: dict[str, Any], files: dict[str, Any]) -> httpx.Request:
        return httpx.Request("POST", "http://x/", data=data, files={"file": ("a.wav", b"x"), **files})

    with pytest.raises(InvalidRequest, match="more than 2 fields"):
        _parse_form(form({"a": "1", "b": "2", "c": "3"}, {}), FormFields(max_fields=2), 4096)
    with pytest.raises(InvalidRequest, match="too long"):
        _parse_form(form({"prompt": "x" * 200}, {}), FormFields(max_bytes=100), 7)
    with pytest.raises(InvalidRequest, match="'extra' must be a text field"):
        _parse_form(form({}, {"extra": ("b.wav", b"y")}), FormFields(), 4096)
    with pytest.raises(InvalidRequest, match="not UTF-8"):
        _parse_form(form({"model": "\xff".encode("latin-1")}, {}), FormFields(), 4096)
