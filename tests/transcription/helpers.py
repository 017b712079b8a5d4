"""Local peers for the long-file APIs: a file server (with redirects) and a callback receiver."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from tests.conftest import FIXTURES
from tingyin import audio

CLIPS = FIXTURES / "foundation"
SPEAKER_A = [CLIPS / "BAC009S0150W0191.flac", CLIPS / "BAC009S0150W0158.flac"]
SPEAKER_B = [CLIPS / "BAC009S0252W0131.flac", CLIPS / "BAC009S0252W0286.flac"]
EN_CLIP = CLIPS / "LJ001-0156.flac"


def conversation(gap_s: float = 0.7) -> tuple[bytes, list[tuple[float, float, str]]]:
    """A, B, A, B turns with ``gap_s`` pauses, as WAV, and the reference turns (start s, end s, speaker)."""
    pieces: list[np.ndarray] = []
    turns: list[tuple[float, float, str]] = []
    position = 0.0
    for a, b in zip(SPEAKER_A, SPEAKER_B, strict=True):
        for path, speaker in ((a, "A"), (b, "B")):
            samples = audio.decode(path).samples
            pieces += [samples, np.zeros(int(gap_s * 16000), dtype=np.float32)]
            turns.append((position, position + samples.shape[0] / 16000, speaker))
            position += samples.shape[0] / 16000 + gap_s
    return audio.encode_wav(np.concatenate(pieces)), turns


def stereo_call() -> bytes:
    """Left channel: a Mandarin sentence; right channel: an English one (call-centre layout)."""
    left = audio.decode(SPEAKER_B[0]).samples
    right = audio.decode(EN_CLIP).samples
    length = max(left.shape[0], right.shape[0])
    both = np.zeros((2, length), dtype=np.float32)
    both[0, : left.shape[0]] = left
    both[1, : right.shape[0]] = right
    return audio.encode_wav(both)


class FileServer:
    """Serves ``files`` at /name; /redirect?to=URL answers 302; counts requests."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.hits.append(self.path)
                if self.path.startswith("/redirect?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.split("=", 1)[1])
                    self.end_headers()
                    return
                name = self.path.lstrip("/")
                if name not in outer.files:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = outer.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


class CallbackReceiver:
    """Records POSTed JSON bodies; answers 500 to the first ``fail_first`` calls."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        self.fail_first = fail_first
        self.event = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                outer.attempts += 1
                if outer.attempts <= outer.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                outer.event.set()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
