"""Model store: the offline default from pip packages, checksum refusal, hub download with resume
(against a local HTTP server that serves a model directory like the Hugging Face hub), lazy load/unload."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tingyin.config import Settings
from tingyin.models import BUILTIN_MODELS, ChecksumMismatch, HubClient, ModelError, ModelManager, ModelStore
from tingyin.models.registry import WHISPER_BASE_SHA256, ModelSpec, PipFile


def test_whisper_base_joins_and_verifies(home: Path) -> None:
    from tingyin.config import get_settings

    store = ModelStore(get_settings())
    path = store.path("whisper-base")
    assert {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"} <= {
        p.name for p in path.iterdir()
    }
    assert (path / "model.bin").stat().st_size == 145_217_532
    assert store.verify("whisper-base") == []
    listed = {m.name: m for m in store.list()}
    assert listed["whisper-base"].materialised and listed["whisper-base"].source.startswith("pip:")
    assert BUILTIN_MODELS["whisper-base"].files[0].sha256 == WHISPER_BASE_SHA256


def private_settings(tmp_path: Path) -> Settings:
    """Settings with a cache of their own: fake models must not land in the shared test cache."""
    return Settings(home=tmp_path / "private", models_dir=tmp_path / "private" / "models")


def test_damaged_parts_are_refused(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "pkgs" / "damaged_model_pkg"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "data" / "a.part").write_bytes(b"first half ")
    (package / "data" / "b.part").write_bytes(b"second half, altered")
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    good = hashlib.sha256(b"first half second half").hexdigest()
    spec = ModelSpec(
        "damaged",
        "onnx",
        "test",
        files=(
            PipFile(
                (("damaged_model_pkg", "data/a.part"), ("damaged_model_pkg", "data/b.part")),
                "model.bin",
                good,
            ),
        ),
    )
    monkeypatch.setitem(BUILTIN_MODELS, "damaged", spec)
    store = ModelStore(private_settings(tmp_path))
    with pytest.raises(ChecksumMismatch, match="sha256"):
        store.path("damaged")
    assert not store.is_materialised("damaged")
    (package / "data" / "b.part").write_bytes(b"second half")
    assert (store.path("damaged") / "model.bin").read_bytes() == b"first half second half"
    sys.modules.pop("damaged_model_pkg", None)


class FakeHub:
    """Serves ``files`` like the hub: /api/models/{repo}/tree/{rev} and /{repo}/resolve/{rev}/{path},
    with HTTP Range support; can cut a download after N bytes to test resuming."""

    def __init__(self, repo: str, files: dict[str, bytes]) -> None:
        self.repo, self.files = repo, files
        self.cut_after: int | None = None
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                hub.requests.append(f"{self.path} {self.headers.get('Range', '')}")
                tree = f"/api/models/{hub.repo}/tree/main"
                if self.path == tree:
                    listing = [
                        {
                            "type": "file",
                            "path": name,
                            "size": len(data),
                            "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data)},
                        }
                        for name, data in hub.files.items()
                    ]
                    body = json.dumps(listing).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                prefix = f"/{hub.repo}/resolve/main/"
                name = self.path[len(prefix) :] if self.path.startswith(prefix) else None
                if name not in hub.files:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = hub.files[name]
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                chunk = data[start:]
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                if hub.cut_after is not None:
                    self.wfile.write(chunk[: hub.cut_after])
                    hub.cut_after = None
                    self.wfile.flush()
                    self.connection.close()
                    return
                self.wfile.write(chunk)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    hub = FakeHub("acme/tiny-model", {"model.bin": bytes(range(256)) * 4096, "config.json": b'{"a": 1}'})
    yield hub
    hub.server.shutdown()


def test_hub_download_resumes_after_interruption(tmp_path: Path, fake_hub: FakeHub) -> None:
    store = ModelStore(private_settings(tmp_path), hub=HubClient(endpoint=fake_hub.url, timeout=5))
    fake_hub.cut_after = 100_000
    with pytest.raises(ModelError, match=r"interrupted|expected"):
        store.path("hf:acme/tiny-model")
    assert not store.is_materialised("hf:acme/tiny-model")
    path = store.path("hf:acme/tiny-model")
    assert (path / "model.bin").read_bytes() == fake_hub.files["model.bin"]
    assert (path / "config.json").read_bytes() == b'{"a": 1}'
    assert any("bytes=100000-" in r for r in fake_hub.requests), fake_hub.requests


def test_hub_checksum_mismatch_is_refused(
    tmp_path: Path, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = HubClient(endpoint=fake_hub.url, timeout=5)
    original = client.list_files

    def lying_listing(repo: str, revision: str = "main"):  # type: ignore[no-untyped-def]
        files = original(repo, revision)
        for f in files:
            f.sha256 = "0" * 64
        return files

    monkeypatch.setattr(client, "list_files", lying_listing)
    with pytest.raises(ChecksumMismatch):
        ModelStore(private_settings(tmp_path), hub=client).path("hf:acme/tiny-model")


def test_unknown_hub_repo_is_not_found(tmp_path: Path, fake_hub: FakeHub) -> None:
    from tingyin.errors import NotFound

    with pytest.raises(NotFound):
        ModelStore(private_settings(tmp_path), hub=HubClient(endpoint=fake_hub.url)).path("hf:acme/missing")


def test_manager_loads_once_shares_and_unloads_idle() -> None:
    loads: list[int] = []
    manager = ModelManager(idle_ttl_s=0.2)

    def loader() -> object:
        loads.append(1)
        time.sleep(0.05)
        return object()

    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(manager.get("m", loader))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and len({id(r) for r in results}) == 1
    assert manager.loaded() == ["m"]
    assert manager.unload_idle(now=time.monotonic() + 1.0) == ["m"]
    assert manager.loaded() == []
    manager.get("m", loader)
    assert len(loads) == 2
