"""Helpers of the security tests: what a data directory holds, watching the blob store while a
request runs, requests that declare a body and never send it, and the server log's records."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.conftest import Server

# The databases and the server key change on their own (WAL, the broker's journal, token rows): not
# request data.
NOT_DATA = (".db", ".db-wal", ".db-shm", ".db-journal", "server.key")
EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z]+(Error|Exception)\b|Traceback|File \"")


def data_files(home: Path) -> dict[str, int]:
    """Every file under ``home`` but the database and the server key: relative path -> size."""
    found: dict[str, int] = {}
    for root, _, names in os.walk(home):
        for name in names:
            if name.endswith(NOT_DATA):
                continue
            path = Path(root) / name
            with contextlib.suppress(FileNotFoundError):
                found[str(path.relative_to(home))] = path.stat().st_size
    return found


def du(home: Path) -> tuple[int, int]:
    """(files, bytes) of the data under ``home``, as ``du`` and ``find | wc -l`` would count them."""
    files = data_files(home)
    return len(files), sum(files.values())


class BlobWatch:
    """Records every file that appears under ``home/blobs`` while the block runs (polled every 20 ms):
    permanent storage must see nothing of a refused request, not even for a moment."""

    def __init__(self, home: Path) -> None:
        self.blobs = home / "blobs"
        self.before = set(data_files(self.blobs)) if self.blobs.exists() else set()
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            if self.blobs.exists():
                self.seen |= set(data_files(self.blobs)) - self.before

    def __enter__(self) -> BlobWatch:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()


def head_only(
    server: Server, method: str, target: str, headers: dict[str, str], length: int
) -> tuple[int, Any]:
    """Send a request that declares ``length`` bytes of body and sends none; the status and JSON body
    of the answer, which must come without the body (30 s, or the test fails)."""
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Length: {length}",
        "Connection: close",
    ]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            raise AssertionError(f"no answer without the body: {data[:200]!r}") from None
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    return int(head.split(b" ", 2)[1]), json.loads(body)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out


def log_records(server: Server) -> list[dict[str, Any]]:
    """The JSON records of the server's log so far (stdout and stderr together)."""
    records = []
    for line in server.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
    return records


def access_line(server: Server, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """The access-log record of ``request_id`` (written just after the answer: waited for)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [
            r
            for r in log_records(server)
            if r.get("event") == "request" and r.get("request_id") == request_id
        ]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.1)
