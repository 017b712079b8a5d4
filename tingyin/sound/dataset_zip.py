"""Safe import of a sound-classification dataset zip: one top-level folder per class, audio files inside.

The seed's rules: class names of letters, digits and underscores only; wav/mp3/m4a files (we also take
flac/ogg) of at most 4 MB; a zip of at most 5 GB with at most 100,000 files and 1,000 classes; advice of
50+ (better 100+) clips per class. Every file that is not taken gets a per-file reason.

Nothing in the archive is trusted: names never become paths (files are written under their content
hash), symlink and encrypted entries are refused, and sizes are counted on the bytes actually inflated,
so a member whose header lies about its size, or that inflates far beyond its compressed size, is cut off
as soon as it crosses a limit (the whole archive stops when the total crosses its limit).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import zipfile
from collections import Counter
from collections.abc import Callable, Container, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tingyin.audio import AudioError, decode
from tingyin.errors import InvalidRequest

CLASS_NAME = re.compile(r"[A-Za-z0-9_]+")
AUDIO_EXTENSIONS = frozenset({".wav", ".mp3", ".m4a", ".flac", ".ogg"})
_CHUNK = 256 * 1024
# Entries archivers add that are not data: macOS resource forks, Finder and Explorer metadata.
_JUNK_DIRS = frozenset({"__MACOSX"})
_JUNK_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


class DatasetZipError(InvalidRequest):
    """The dataset archive cannot be imported."""

    code = "dataset_zip_invalid"


class ZipBombDetected(DatasetZipError):
    """The archive inflates beyond the allowed total size or ratio."""

    code = "dataset_zip_bomb"


@dataclass(frozen=True)
class ZipLimits:
    max_zip_bytes: int = 5 * 1024**3
    max_file_bytes: int = 4 * 1024**2
    max_files: int = 100_000
    max_classes: int = 1_000
    # Audio hardly compresses (wav of near-silence ~10x at most); anything far beyond is a bomb.
    max_member_ratio: float = 200.0
    max_total_uncompressed_bytes: int = 10 * 1024**3
    # Ratio of everything inflated to the archive's size on disk.
    max_total_ratio: float = 50.0
    min_clips_warning: int = 50
    recommended_clips: int = 100


@dataclass(frozen=True)
class ZipMember:
    """An accepted audio file: its class, bytes and sha256."""

    name: str
    label: str
    data: bytes
    content_hash: str
    extension: str


@dataclass(frozen=True)
class Rejection:
    """A file (or entry) that was not taken, with a machine code and a sentence for the user."""

    name: str
    code: str
    reason: str


@dataclass(frozen=True)
class ImportedClip:
    label: str
    content_hash: str
    file_name: str  # relative to the destination directory
    source_name: str
    size_bytes: int


@dataclass(frozen=True)
class DuplicateClip:
    source_name: str
    label: str
    content_hash: str
    first_label: str | None  # the class the first copy went to (None: already in the destination)


@dataclass
class ImportReport:
    """What an import did: accepted clips, duplicates counted once, rejected files with reasons."""

    accepted: list[ImportedClip] = field(default_factory=list)
    duplicates: list[DuplicateClip] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def class_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(clip.label for clip in self.accepted).items()))

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["class_counts"] = self.class_counts
        return data


AudioValidator = Callable[[bytes, str], None]
# Stores an accepted clip under its file name (``<sha256><ext>``); writing the same name twice is harmless.
ClipWriter = Callable[[str, bytes], None]
Archive = Path | BinaryIO  # a zip file, or a seekable stream of one (e.g. from object storage)


def directory_writer(destination: Path) -> ClipWriter:
    """A ``ClipWriter`` into a local directory (each file written whole, then renamed into place)."""
    destination.mkdir(parents=True, exist_ok=True)

    def write(file_name: str, data: bytes) -> None:
        target = destination / file_name
        if not target.exists():
            temporary = target.with_name(file_name + ".part")
            temporary.write_bytes(data)
            temporary.replace(target)

    return write


def _archive_size(archive: Archive) -> int:
    if isinstance(archive, Path):
        return archive.stat().st_size
    position = archive.tell()
    size = archive.seek(0, os.SEEK_END)
    archive.seek(position)
    return size


def validate_audio(data: bytes, extension: str) -> None:
    """Raise ``AudioError`` unless the bytes decode to audio."""
    decode(data, format=extension.lstrip("."))


def _class_and_rest(name: str, strip_root: str | None) -> tuple[str | None, PurePosixPath]:
    path = PurePosixPath(name)
    parts = path.parts
    if strip_root is not None and parts and parts[0] == strip_root:
        parts = parts[1:]
    if len(parts) < 2:
        return None, PurePosixPath(*parts) if parts else path
    return parts[0], PurePosixPath(*parts[1:])


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    raw = info.orig_filename
    name = raw.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
        return "absolute path in the archive"
    if any(part == ".." for part in name.split("/")):
        return "path leaves its folder ('..')"
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_ISLNK(mode):
        return "symbolic link entry"
    if info.flag_bits & 0x1:
        return "encrypted entry"
    return None


def _common_root(infos: list[zipfile.ZipInfo]) -> str | None:
    """A single wrapping folder (``dataset/cat/1.wav``, ``dataset/dog/2.wav``) to look through."""
    tops = set()
    deep = False
    for info in infos:
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if not parts or parts[0] in _JUNK_DIRS:
            continue
        tops.add(parts[0])
        if len(parts) >= 3:
            deep = True
        elif (
            len(parts) == 2
            and not info.is_dir()
            and os.path.splitext(parts[1])[1].lower() in AUDIO_EXTENSIONS
        ):
            return None  # audio directly inside a top folder: the top folders are the classes
    return next(iter(tops)) if len(tops) == 1 and deep else None


def _read_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    limits: ZipLimits,
    inflated_total: list[int],
    zip_size: int,
) -> bytes | Rejection:
    """The member's bytes, counting what is actually inflated against every limit."""
    chunks: list[bytes] = []
    size = 0
    compressed = max(info.compress_size, 1)
    try:
        with archive.open(info) as handle:
            while block := handle.read(_CHUNK):
                size += len(block)
                inflated_total[0] += len(block)
                if inflated_total[0] > limits.max_total_uncompressed_bytes:
                    raise ZipBombDetected(
                        f"the archive inflates beyond {limits.max_total_uncompressed_bytes} bytes in total"
                    )
                if inflated_total[0] > limits.max_total_ratio * max(zip_size, 1) + 64 * 1024 * 1024:
                    raise ZipBombDetected(
                        f"the archive inflates more than {limits.max_total_ratio:g}x its size"
                    )
                if size > limits.max_file_bytes:
                    ratio = size / compressed
                    if ratio > limits.max_member_ratio:
                        return Rejection(
                            info.filename,
                            "zip_bomb",
                            f"inflates more than {limits.max_member_ratio:g}x and past the "
                            f"{limits.max_file_bytes} byte limit: refused as a zip bomb",
                        )
                    return Rejection(
                        info.filename,
                        "file_too_large",
                        f"larger than {limits.max_file_bytes // (1024 * 1024)} MB",
                    )
                if size > limits.max_member_ratio * compressed and size > 1024 * 1024:
                    return Rejection(
                        info.filename,
                        "zip_bomb",
                        f"inflates more than {limits.max_member_ratio:g}x its compressed size: "
                        "refused as a zip bomb",
                    )
                chunks.append(block)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        OSError,
        NotImplementedError,
        ValueError,
    ) as exc:
        return Rejection(info.filename, "corrupt_entry", f"the archive entry cannot be read: {exc}")
    except RuntimeError as exc:  # zipfile raises RuntimeError for encrypted members
        return Rejection(info.filename, "corrupt_entry", f"the archive entry cannot be read: {exc}")
    return b"".join(chunks)


def scan_zip(
    path: Archive, *, limits: ZipLimits | None = None, validate: AudioValidator | None = validate_audio
) -> Iterator[ZipMember | Rejection]:
    """Each file entry of the archive as an accepted ``ZipMember`` or a ``Rejection`` with its reason.

    Raises ``DatasetZipError`` when the file is not a readable zip or is too large, and
    ``ZipBombDetected`` (while streaming) when the inflated total crosses its limits.
    Duplicates are not judged here (see ``import_zip``).
    """
    limits = limits or ZipLimits()
    try:
        zip_size = _archive_size(path)
    except OSError as exc:
        raise DatasetZipError(f"cannot read the archive: {exc}") from exc
    if zip_size > limits.max_zip_bytes:
        raise DatasetZipError(
            f"the archive is {zip_size} bytes, more than the {limits.max_zip_bytes} byte limit"
        )
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DatasetZipError(f"not a readable zip archive: {exc}") from exc
    with archive:
        infos = archive.infolist()
        root = _common_root(infos)
        classes: set[str] = set()
        files = 0
        inflated_total = [0]
        for info in infos:
            if info.is_dir():
                continue
            name = info.filename
            unsafe = _unsafe_reason(info)
            if unsafe is not None:
                yield Rejection(name, "unsafe_path", f"{unsafe}: refused")
                continue
            label, rest = _class_and_rest(name.replace("\\", "/"), root)
            if label in _JUNK_DIRS or rest.name in _JUNK_FILES or rest.name.startswith("._"):
                continue
            if label is None:
                yield Rejection(
                    name, "no_class_folder", "not inside a class folder (zip one folder per class)"
                )
                continue
            if not CLASS_NAME.fullmatch(label):
                yield Rejection(
                    name,
                    "bad_class_name",
                    f"class folder {label!r} must use only letters, digits and underscores "
                    "(no Chinese characters, no spaces)",
                )
                continue
            extension = os.path.splitext(rest.name)[1].lower()
            if extension not in AUDIO_EXTENSIONS:
                yield Rejection(
                    name,
                    "unsupported_type",
                    f"not an audio file of a supported type ({', '.join(sorted(AUDIO_EXTENSIONS))})",
                )
                continue
            if info.file_size > limits.max_file_bytes:
                yield Rejection(
                    name, "file_too_large", f"larger than {limits.max_file_bytes // (1024 * 1024)} MB"
                )
                continue
            if files >= limits.max_files:
                yield Rejection(name, "too_many_files", f"over the {limits.max_files} file limit")
                continue
            if label not in classes and len(classes) >= limits.max_classes:
                yield Rejection(name, "too_many_classes", f"over the {limits.max_classes} class limit")
                continue
            data = _read_member(archive, info, limits, inflated_total, zip_size)
            if isinstance(data, Rejection):
                yield data
                continue
            if not data:
                yield Rejection(name, "empty_file", "the file is empty")
                continue
            if validate is not None:
                try:
                    validate(data, extension)
                except AudioError as exc:
                    yield Rejection(name, "corrupt_audio", f"cannot be decoded as audio: {exc.message}")
                    continue
            files += 1
            classes.add(label)
            yield ZipMember(name, label, data, hashlib.sha256(data).hexdigest(), extension)


def import_zip(
    path: Archive,
    save: ClipWriter,
    *,
    limits: ZipLimits | None = None,
    existing_hashes: Container[str] = (),
    validate: AudioValidator | None = validate_audio,
    progress: Callable[[float, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> ImportReport:
    """Scan ``path`` and ``save`` each accepted new clip as ``<sha256><ext>``.

    A clip whose hash is in ``existing_hashes`` (already in the dataset) or was seen earlier in this
    archive is listed as a duplicate and counted once. Raises ``DatasetZipError`` for archive-level
    problems; clips already saved stay (their names are content hashes, so a retry is idempotent).
    """
    limits = limits or ZipLimits()
    report = ImportReport()
    seen: dict[str, str] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            total_entries = max(1, sum(1 for info in archive.infolist() if not info.is_dir()))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DatasetZipError(f"not a readable zip archive: {exc}") from exc
    for done, item in enumerate(scan_zip(path, limits=limits, validate=validate), start=1):
        if cancel is not None and cancel():
            raise DatasetZipError("the import was cancelled")
        if isinstance(item, Rejection):
            report.rejected.append(item)
        elif item.content_hash in seen or item.content_hash in existing_hashes:
            report.duplicates.append(
                DuplicateClip(item.name, item.label, item.content_hash, seen.get(item.content_hash))
            )
        else:
            file_name = item.content_hash + item.extension
            save(file_name, item.data)
            seen[item.content_hash] = item.label
            report.accepted.append(
                ImportedClip(item.label, item.content_hash, file_name, item.name, len(item.data))
            )
        if progress is not None:
            progress(min(1.0, done / total_entries), item.name)
    for label, count in report.class_counts.items():
        if count < limits.min_clips_warning:
            report.warnings.append(
                f"class {label!r} has {count} clips; at least {limits.min_clips_warning} are needed "
                f"for training and {limits.recommended_clips}+ are advised for good results"
            )
    return report
