"""Stored objects: where their bytes live and who owns them.

Bytes live in a *backend*: a local directory (``$TINGYIN_HOME/blobs``, the default) or S3-compatible
object storage (``TINGYIN_BLOB_URL=s3://bucket/prefix``: MinIO, Ceph RGW, AWS S3, Aliyun OSS, Tencent
COS, Qiniu Kodo), which every API node and worker of a deployment shares.

Every object belongs to exactly one owner, and its key starts with the prefix of the owner it is meant
for: a job (its uploaded input, ``jobs/<id>/``), a dataset (its clips, ``datasets/<id>/``) or a model
version (its trained files and export, ``models/<id>/``). A ``stored_objects`` row names the owner; it is
written in the transaction that creates the owner (or adds to it) and the object goes with the owner.
Clips of a dataset import are recorded as they are written, owned by the import job, and pass to the
dataset in the transaction that adds them to it (a failed import's clips go with its job). Bytes are
written before their record, so a crash in between leaves an object without a record; the sweeper
deletes those once they are ``storage_orphan_grace_s`` old, and deletes the objects of owners that are
gone (a purged job, a deleted dataset or model). Only keys under the owner prefixes are ever swept.

Synchronous requests keep nothing here: their bodies go to node-local scratch files (``Scratch``) that
are deleted when the answer is sent. Model weights and embedding caches stay per node, outside the store.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import re
import shutil
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, ClassVar
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tingyin.config import Settings, get_settings
from tingyin.errors import InvalidRequest, NotFound, ServiceUnavailable
from tingyin.store.db import session_scope
from tingyin.store.models import (
    TERMINAL_JOB_STATUSES,
    Job,
    ModelVersion,
    SoundDataset,
    StoredObject,
    utcnow,
)

log = logging.getLogger(__name__)

# Keys are relative POSIX paths of plain names: safe as file paths and as S3 keys alike.
_KEY = re.compile(r"[a-z_]+(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)+")
_PARTIAL_DIR = ".partial"  # local backend: files being written, renamed into place when complete
PART_BYTES = 8 * 1024 * 1024  # S3 multipart part size (10,000 parts: objects up to 80 GB)
READ_BLOCK_BYTES = 8 * 1024 * 1024  # S3 ranged reads: one GET per block
_LIST_PAGE = 1000


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key) or len(key) > 512:
        raise InvalidRequest("bad stored object key")
    return key


@dataclass(frozen=True)
class Owner:
    """Who a stored object belongs to; its key starts with ``prefix``."""

    kind: str  # job | dataset | model_version
    id: str

    PREFIXES: ClassVar[dict[str, str]] = {"job": "jobs", "dataset": "datasets", "model_version": "models"}

    @classmethod
    def job(cls, job_id: str) -> Owner:
        return cls("job", str(job_id))

    @classmethod
    def dataset(cls, dataset_id: int) -> Owner:
        return cls("dataset", str(dataset_id))

    @classmethod
    def model_version(cls, version_id: int) -> Owner:
        return cls("model_version", str(version_id))

    @property
    def prefix(self) -> str:
        return f"{self.PREFIXES[self.kind]}/{self.id}/"

    def key(self, name: str) -> str:
        return check_key(self.prefix + name)

    @classmethod
    def of_key(cls, key: str) -> Owner | None:
        """The owner a key's prefix names (None: not under an owner prefix)."""
        top, _, rest = key.partition("/")
        owner_id, _, name = rest.partition("/")
        for kind, prefix in cls.PREFIXES.items():
            if top == prefix and owner_id and name:
                return cls(kind, owner_id)
        return None


@dataclass(frozen=True)
class StoredBlob:
    key: str
    size: int


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime


# ---------------------------------------------------------------- writers


class BlobWriter(ABC):
    """Bytes on their way into storage. ``commit`` makes the object visible, whole; ``abort`` leaves
    nothing. As a context manager it commits on success and aborts on any error."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.size = 0
        self._done = False

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _abort(self) -> None: ...

    def commit(self) -> StoredBlob:
        if not self._done:
            try:
                self._commit()
            except BaseException:
                self.abort()
                raise
            self._done = True
        return StoredBlob(self.key, self.size)

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._abort()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class FileWriter(BlobWriter):
    """Writes to a partial file, renamed to ``target`` on commit (readers never see half a file)."""

    def __init__(self, key: str, target: Path, partial_dir: Path) -> None:
        super().__init__(key)
        self.target = target
        partial_dir.mkdir(parents=True, exist_ok=True)
        self._partial = partial_dir / f"{uuid.uuid4().hex}.part"
        self._handle: BinaryIO | None = self._partial.open("wb")

    def write(self, data: bytes) -> None:
        assert self._handle is not None, "write after commit or abort"
        try:
            self._handle.write(data)
        except OSError as exc:  # a full or failing disk: the caller's 503, never a path in an answer
            raise ServiceUnavailable(f"cannot store the data: {exc.strerror}") from exc
        self.size += len(data)

    def _commit(self) -> None:
        assert self._handle is not None
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())  # the record that follows must not point at lost bytes
            self._handle.close()
            self._handle = None
            self.target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._partial, self.target)
        except OSError as exc:
            raise ServiceUnavailable(f"cannot store the data: {exc.strerror}") from exc

    def _abort(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self._partial.unlink(missing_ok=True)


# ---------------------------------------------------------------- backends


class BlobBackend(ABC):
    """Where bytes live. Keys are checked by the caller (``check_key``)."""

    url: str

    @abstractmethod
    def ping(self) -> None:
        """Raise ``ServiceUnavailable`` unless objects can be stored now."""

    @abstractmethod
    def writer(self, key: str) -> BlobWriter: ...

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A seekable stream of the object (``NotFound`` when absent); the caller closes it."""

    @abstractmethod
    def size(self, key: str) -> int | None: ...

    @abstractmethod
    def delete(self, keys: Sequence[str]) -> None: ...

    @abstractmethod
    def objects(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def pending_uploads(self) -> list[ObjectInfo]:
        """Writes begun and neither committed nor aborted (a crashed process's, or in flight)."""

    @abstractmethod
    def abort_pending(self, older_than: datetime) -> int: ...

    @abstractmethod
    def local_copy(self, prefix: str, names: Iterable[str] | None) -> AbstractContextManager[Path]:
        """A local directory holding the objects under ``prefix`` (only ``names`` when given)."""


class LocalBackend(BlobBackend):
    """Objects as files under ``root`` (one machine, or a directory every node mounts)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"
        self._partial = root / _PARTIAL_DIR

    def _path(self, key: str) -> Path:
        return self.root / key

    def ping(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise ServiceUnavailable("the blob directory is not writable")

    def writer(self, key: str) -> BlobWriter:
        return FileWriter(key, self._path(key), self._partial)

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"no stored object {key}") from None

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            # Drop directories left empty, up to the owner's prefix.
            for parent in list(path.parents)[: max(0, key.count("/") - 1)]:
                try:
                    parent.rmdir()
                except OSError:
                    break

    def objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return
        for directory, subdirs, files in os.walk(base):
            if Path(directory) == self.root:
                subdirs[:] = [d for d in subdirs if d != _PARTIAL_DIR]
            subdirs.sort()
            for name in sorted(files):
                path = Path(directory) / name
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                key = path.relative_to(self.root).as_posix()
                yield ObjectInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))

    def pending_uploads(self) -> list[ObjectInfo]:
        if not self._partial.is_dir():
            return []
        found = []
        for path in self._partial.iterdir():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            # mtime moves with every write: a live upload always looks recent.
            found.append(ObjectInfo(path.name, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC)))
        return found

    def abort_pending(self, older_than: datetime) -> int:
        count = 0
        for info in self.pending_uploads():
            if info.modified < older_than:
                (self._partial / info.key).unlink(missing_ok=True)
                count += 1
        return count

    @contextmanager
    def local_copy(self, prefix: str, names: Iterable[str] | None) -> Iterator[Path]:
        yield self.root / prefix


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ending in "/"
    endpoint_url: str | None
    region: str | None
    access_key_id: str | None
    secret_access_key: str | None
    addressing_style: str

    @classmethod
    def parse(cls, url: str, settings: Settings) -> S3Location:
        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError(f"TINGYIN_BLOB_URL {url!r} names no bucket (s3://bucket/prefix)")
        prefix = parts.path.strip("/")
        secret = settings.s3_secret_access_key
        return cls(
            bucket=parts.netloc,
            prefix=f"{prefix}/" if prefix else "",
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region or None,
            access_key_id=settings.s3_access_key_id or None,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
            addressing_style=settings.s3_addressing_style,
        )


def _s3_error(exc: Exception, key: str) -> Exception:
    """A missing object is ``NotFound``; anything else means the object store is unreachable or
    refusing us, which callers see as ``ServiceUnavailable`` (503 in every dialect)."""
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    if code in ("NoSuchKey", "404", "NotFound"):
        return NotFound(f"no stored object {key}")
    return ServiceUnavailable(f"object storage unavailable ({code or type(exc).__name__})")


class S3Writer(BlobWriter):
    """Small objects in one PUT; larger ones as a multipart upload of ``PART_BYTES`` parts, so memory
    holds one part at most. An aborted upload is aborted on the server too."""

    def __init__(self, key: str, client: Any, bucket: str, object_key: str) -> None:
        super().__init__(key)
        self._client, self._bucket, self._object_key = client, bucket, object_key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        while len(self._buffer) >= PART_BYTES:
            part = bytes(self._buffer[:PART_BYTES])
            del self._buffer[:PART_BYTES]
            self._upload_part(part)

    def _upload_part(self, data: bytes) -> None:
        try:
            if self._upload_id is None:
                started = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._object_key)
                self._upload_id = str(started["UploadId"])
            number = len(self._parts) + 1
            answer = self._client.upload_part(
                Bucket=self._bucket,
                Key=self._object_key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=data,
            )
        except Exception as exc:
            raise _s3_error(exc, self.key) from exc
        self._parts.append({"ETag": answer["ETag"], "PartNumber": number})

    def _commit(self) -> None:
        try:
            if self._upload_id is None:
                self._client.put_object(Bucket=self._bucket, Key=self._object_key, Body=bytes(self._buffer))
            else:
                if self._buffer:
                    self._upload_part(bytes(self._buffer))
                self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._object_key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        except Exception as exc:
            raise _s3_error(exc, self.key) from exc
        self._buffer = bytearray()

    def _abort(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is not None:
            try:
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._object_key, UploadId=self._upload_id
                )
            except Exception:  # the sweep reports it; a bucket lifecycle rule expires it
                log.warning("could not abort the multipart upload of %s", self.key, exc_info=True)


class S3Reader(io.RawIOBase):
    """A seekable read-only stream over an object: ranged GETs of ``READ_BLOCK_BYTES``, one block
    held at a time. Decoders (PyAV) and ``zipfile`` read it like a local file."""

    def __init__(self, client: Any, bucket: str, object_key: str, key: str, size: int) -> None:
        super().__init__()
        self._client, self._bucket, self._object_key, self._key = client, bucket, object_key, key
        self._size = size
        self._position = 0
        self._block_start = 0
        self._block = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def _fetch(self, start: int) -> None:
        end = min(self._size, start + READ_BLOCK_BYTES) - 1
        try:
            answer = self._client.get_object(
                Bucket=self._bucket, Key=self._object_key, Range=f"bytes={start}-{end}"
            )
            self._block = answer["Body"].read()
        except Exception as exc:
            raise _s3_error(exc, self._key) from exc
        self._block_start = start

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and self._position < self._size:
            offset = self._position - self._block_start
            if not 0 <= offset < len(self._block):
                self._fetch(self._position)
                offset = 0
                if not self._block:
                    break
            count = min(len(view) - filled, len(self._block) - offset)
            view[filled : filled + count] = self._block[offset : offset + count]
            filled += count
            self._position += count
        return filled

    def close(self) -> None:
        self._block = b""
        super().close()


class S3Backend(BlobBackend):
    """Objects in an S3-compatible bucket, under an optional key prefix."""

    def __init__(self, location: S3Location, scratch: Scratch) -> None:
        import boto3
        from botocore.config import Config

        self.location = location
        self.url = f"s3://{location.bucket}/{location.prefix}"
        self._scratch = scratch
        config = Config(
            s3={"addressing_style": location.addressing_style},
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=10,
            read_timeout=120,
            max_pool_connections=32,
            # Only what the S3 API requires: the newer default checksums are refused by many
            # S3-compatible servers (older MinIO, Ceph RGW, OSS).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # A session per backend: boto3's default session is shared state and not thread-safe.
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=location.endpoint_url,
            region_name=location.region,
            aws_access_key_id=location.access_key_id,
            aws_secret_access_key=location.secret_access_key,
            config=config,
        )

    def _object_key(self, key: str) -> str:
        return self.location.prefix + key

    def ping(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.location.bucket)
        except Exception as exc:
            error = _s3_error(exc, "")
            if isinstance(error, NotFound):
                raise ServiceUnavailable(f"the bucket {self.location.bucket} does not exist") from exc
            raise error from exc

    def writer(self, key: str) -> BlobWriter:
        return S3Writer(key, self._client, self.location.bucket, self._object_key(key))

    def open(self, key: str) -> BinaryIO:
        size = self.size(key)
        if size is None:
            raise NotFound(f"no stored object {key}")
        reader = S3Reader(self._client, self.location.bucket, self._object_key(key), key, size)
        return io.BufferedReader(reader, buffer_size=64 * 1024)

    def size(self, key: str) -> int | None:
        try:
            answer = self._client.head_object(Bucket=self.location.bucket, Key=self._object_key(key))
        except Exception as exc:
            error = _s3_error(exc, key)
            if isinstance(error, NotFound):
                return None
            raise error from exc
        return int(answer["ContentLength"])

    def delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), _LIST_PAGE):
            batch = [{"Key": self._object_key(k)} for k in keys[start : start + _LIST_PAGE]]
            try:
                answer = self._client.delete_objects(
                    Bucket=self.location.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except Exception as exc:
                raise _s3_error(exc, batch[0]["Key"]) from exc
            if answer.get("Errors"):
                raise ServiceUnavailable(f"object storage refused {len(answer['Errors'])} deletions")

    def objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        strip = len(self.location.prefix)
        try:
            for page in paginator.paginate(
                Bucket=self.location.bucket,
                Prefix=self._object_key(prefix) if prefix else self.location.prefix,
            ):
                for item in page.get("Contents", []):
                    yield ObjectInfo(item["Key"][strip:], int(item["Size"]), item["LastModified"])
        except Exception as exc:
            raise _s3_error(exc, prefix) from exc

    def pending_uploads(self) -> list[ObjectInfo]:
        strip = len(self.location.prefix)
        found = []
        try:
            paginator = self._client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.location.bucket, Prefix=self.location.prefix):
                for item in page.get("Uploads", []):
                    found.append(
                        ObjectInfo(f"{item['Key'][strip:]}#{item['UploadId']}", 0, item["Initiated"])
                    )
        except Exception as exc:
            raise _s3_error(exc, "") from exc
        return found

    def abort_pending(self, older_than: datetime) -> int:
        count = 0
        for info in self.pending_uploads():
            if info.modified < older_than:
                key, _, upload_id = info.key.rpartition("#")
                try:
                    self._client.abort_multipart_upload(
                        Bucket=self.location.bucket, Key=self._object_key(key), UploadId=upload_id
                    )
                except Exception as exc:
                    raise _s3_error(exc, key) from exc
                count += 1
        return count

    @contextmanager
    def local_copy(self, prefix: str, names: Iterable[str] | None) -> Iterator[Path]:
        with self._scratch.directory("downloads") as directory:
            if names is None:
                names = [info.key[len(prefix) :] for info in self.objects(prefix)]
            wanted = list(names)
            for name in wanted:
                target = directory / name
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    # Managed transfer: ranged parts in parallel, straight to disk.
                    self._client.download_file(
                        self.location.bucket, self._object_key(prefix + name), str(target)
                    )
                except Exception as exc:
                    raise _s3_error(exc, prefix + name) from exc
            yield directory


# ---------------------------------------------------------------- node-local scratch


class Scratch:
    """Node-local temporary files under ``$TINGYIN_HOME/scratch``: request bodies while a synchronous
    request runs (``requests/``), job work directories (``jobs/<id>/``), copies of stored objects
    (``downloads/``), exports being built (``exports/``). Everything is deleted when its request or
    job ends; the sweeper removes what a crashed process left behind."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextmanager
    def file(self, area: str = "requests") -> Iterator[Path]:
        """A fresh path (not created), deleted when the block ends."""
        directory = self.root / area
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / uuid.uuid4().hex
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    @contextmanager
    def directory(self, area: str) -> Iterator[Path]:
        path = self.root / area / uuid.uuid4().hex
        path.mkdir(parents=True)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def writer(self, path: Path) -> BlobWriter:
        """Writes ``path`` (from ``file``) the way the store writes objects: whole or not at all."""
        return FileWriter(path.name, path, path.parent)

    def job_dir(self, job_id: str) -> Path:
        path = self.root / "jobs" / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def remove_job_dir(self, job_id: str) -> None:
        shutil.rmtree(self.root / "jobs" / job_id, ignore_errors=True)

    def job_dirs(self) -> list[str]:
        base = self.root / "jobs"
        return sorted(p.name for p in base.iterdir()) if base.is_dir() else []

    def stale_files(self, older_than: datetime) -> list[Path]:
        """Files outside job directories untouched since ``older_than`` (left by a crashed process)."""
        found: list[Path] = []
        cutoff = older_than.timestamp()
        if not self.root.is_dir():
            return found
        for area in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name != "jobs"):
            for directory, _, files in os.walk(area):
                for name in files:
                    path = Path(directory) / name
                    try:
                        if path.stat().st_mtime < cutoff:
                            found.append(path)
                    except FileNotFoundError:
                        continue
        return found

    def usage(self) -> tuple[int, int]:
        """(files, bytes) under the scratch root."""
        files = size = 0
        for directory, _, names in os.walk(self.root):
            for name in names:
                try:
                    size += (Path(directory) / name).stat().st_size
                    files += 1
                except FileNotFoundError:
                    continue
        return files, size


# ---------------------------------------------------------------- the store


@dataclass
class Tally:
    objects: int = 0
    bytes: int = 0
    keys: list[str] = field(default_factory=list)

    def add(self, key: str, size: int, keep: int = 20) -> None:
        self.objects += 1
        self.bytes += size
        if len(self.keys) < keep:
            self.keys.append(key)

    def as_dict(self) -> dict[str, Any]:
        return {"objects": self.objects, "bytes": self.bytes, "keys": self.keys}


@dataclass
class SweepReport:
    released_owners: int = 0
    orphans_deleted: int = 0
    orphan_bytes: int = 0
    uploads_aborted: int = 0
    scratch_removed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class BlobStore:
    """The backend plus the owner records in the database; the one way in and out of stored bytes."""

    def __init__(self, backend: BlobBackend, scratch: Scratch) -> None:
        self.backend = backend
        self.scratch = scratch
        self._last_listing: float | None = None
        self._sweep_lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.backend.url

    def ping(self) -> None:
        self.backend.ping()

    # -- bytes ----------------------------------------------------------------------------------------
    def writer(self, key: str) -> BlobWriter:
        """Stream an object in; record it (``record``) in the owner's transaction once committed."""
        return self.backend.writer(check_key(key))

    def put_bytes(self, key: str, data: bytes) -> StoredBlob:
        with self.writer(key) as writer:
            writer.write(data)
        return StoredBlob(key, len(data))

    def put_file(self, key: str, path: Path) -> StoredBlob:
        with self.writer(key) as writer, path.open("rb") as handle:
            while block := handle.read(1024 * 1024):
                writer.write(block)
        return StoredBlob(key, writer.size)

    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        """A seekable stream of a stored object, for decoding or unzipping: a local file, or ranged
        reads from object storage (nothing is copied to disk first)."""
        stream = self.backend.open(check_key(key))
        try:
            yield stream
        finally:
            stream.close()

    def local_directory(
        self, owner: Owner, names: Iterable[str] | None = None
    ) -> AbstractContextManager[Path]:
        """A local directory with the owner's objects (``names`` under its prefix, or
        all). The store's own directory for the local backend; a scratch copy for object storage."""
        return self.backend.local_copy(owner.prefix, names)

    def size(self, key: str) -> int | None:
        """The object's size, None when it does not exist."""
        return self.backend.size(check_key(key))

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def discard(self, blobs: Iterable[StoredBlob | None]) -> None:
        """Delete objects that never got an owner record (a refused or failed upload)."""
        keys = [b.key for b in blobs if b is not None]
        if keys:
            try:
                self.backend.delete(keys)
            except Exception:  # the sweeper deletes it later
                log.warning("could not delete %s", keys, exc_info=True)

    # -- owners ---------------------------------------------------------------------------------------
    def record(self, session: Session, owner: Owner, blobs: Iterable[StoredBlob]) -> None:
        """Make ``owner`` the owner of ``blobs``, in the caller's transaction (a recorded object changes
        hands: clips an import job recorded as it wrote them pass to their dataset)."""
        for blob in blobs:
            row = session.get(StoredObject, blob.key)
            if row is None:
                session.add(
                    StoredObject(key=blob.key, owner_kind=owner.kind, owner_id=owner.id, size_bytes=blob.size)
                )
            else:
                row.owner_kind, row.owner_id, row.size_bytes = owner.kind, owner.id, blob.size

    def record_now(self, owner: Owner, blobs: Sequence[StoredBlob]) -> None:
        """``record`` in a transaction of its own; a concurrent identical record is not an error."""
        try:
            with session_scope() as session:
                self.record(session, owner, blobs)
        except IntegrityError:
            pass

    def remove(self, keys: Sequence[str]) -> None:
        """Delete these objects and their owner records (say, the clips taken out of a dataset)."""
        if not keys:
            return
        with session_scope() as session:
            session.execute(delete(StoredObject).where(StoredObject.key.in_(list(keys))))
        self.backend.delete(list(keys))

    def release(self, owner: Owner) -> int:
        """Delete the owner's records, then its objects: those recorded, and any under its prefix.
        Returns the number of objects deleted."""
        mine = (StoredObject.owner_kind == owner.kind) & (StoredObject.owner_id == owner.id)
        with session_scope() as session:
            recorded = set(session.scalars(select(StoredObject.key).where(mine)))
            session.execute(delete(StoredObject).where(mine))
        keys = sorted(recorded | {info.key for info in self.backend.objects(owner.prefix)})
        if keys:
            self.backend.delete(keys)
        return len(keys)

    def release_quietly(self, owner: Owner) -> None:
        """``release`` for clean-up paths: a failure is logged and left to the sweeper."""
        try:
            self.release(owner)
        except Exception:
            log.warning("could not release the stored objects of %s %s", owner.kind, owner.id, exc_info=True)

    def _dead_owners(self) -> list[Owner]:
        """Owners with records that no longer exist (or, for jobs, that are over)."""
        with session_scope() as session:
            pairs = session.execute(select(StoredObject.owner_kind, StoredObject.owner_id).distinct()).all()
            by_kind: dict[str, set[str]] = defaultdict(set)
            for kind, owner_id in pairs:
                by_kind[kind].add(owner_id)
            dead: list[Owner] = []
            for kind, ids in by_kind.items():
                alive = _alive_owner_ids(session, kind, ids)
                dead += [Owner(kind, owner_id) for owner_id in sorted(ids - alive)]
            return dead

    # -- sweeping -------------------------------------------------------------------------------------
    def _unrecorded(self) -> Iterator[tuple[ObjectInfo, bool]]:
        """Objects under owner prefixes, each with whether it has a record."""
        page: list[ObjectInfo] = []

        def judge(items: list[ObjectInfo]) -> Iterator[tuple[ObjectInfo, bool]]:
            with session_scope() as session:
                known = set(
                    session.scalars(
                        select(StoredObject.key).where(StoredObject.key.in_([i.key for i in items]))
                    )
                )
            for item in items:
                yield item, item.key in known

        for prefix in Owner.PREFIXES.values():
            for info in self.backend.objects(prefix + "/"):
                page.append(info)
                if len(page) >= _LIST_PAGE:
                    yield from judge(page)
                    page = []
        if page:
            yield from judge(page)

    def sweep(
        self, *, list_objects: bool | None = None, grace_s: float | None = None, abort_uploads: bool = False
    ) -> SweepReport:
        """Delete what nobody owns: objects of owners that are gone, objects never recorded (older than
        the grace period; listing the store runs every ``storage_sweep_interval_s`` unless asked), and
        this node's abandoned scratch files. ``abort_uploads`` also aborts unfinished S3 multipart
        uploads older than the grace period (the local backend's partial files always go)."""
        settings = get_settings()
        now = utcnow()
        grace = timedelta(seconds=settings.storage_orphan_grace_s if grace_s is None else grace_s)
        report = SweepReport()
        with self._sweep_lock:
            for owner in self._dead_owners():
                self.release(owner)
                report.released_owners += 1
            if list_objects is None:
                now_s = time.monotonic()
                list_objects = (
                    self._last_listing is None
                    or now_s - self._last_listing >= settings.storage_sweep_interval_s
                )
                if list_objects:
                    self._last_listing = now_s
            if list_objects:
                doomed = [
                    info
                    for info, recorded in self._unrecorded()
                    if not recorded and info.modified < now - grace
                ]
                if doomed:
                    self.backend.delete([info.key for info in doomed])
                    log.warning("deleted %d stored objects without an owner", len(doomed))
                report.orphans_deleted = len(doomed)
                report.orphan_bytes = sum(info.size for info in doomed)
                if abort_uploads or isinstance(self.backend, LocalBackend):
                    report.uploads_aborted = self.backend.abort_pending(now - grace)
            report.scratch_removed = self._sweep_scratch(now - grace)
        return report

    def _sweep_scratch(self, older_than: datetime) -> int:
        removed = 0
        for path in self.scratch.stale_files(older_than):
            path.unlink(missing_ok=True)
            removed += 1
        job_ids = self.scratch.job_dirs()
        if job_ids:
            with session_scope() as session:
                alive = _alive_owner_ids(session, "job", set(job_ids))
            for job_id in job_ids:
                if job_id not in alive:
                    self.scratch.remove_job_dir(job_id)
                    removed += 1
        return removed

    def check(self) -> dict[str, Any]:
        """What is stored, by owner kind, and everything that should not be there."""
        grace = timedelta(seconds=get_settings().storage_orphan_grace_s)
        now = utcnow()
        with session_scope() as session:
            totals = session.execute(
                select(
                    StoredObject.owner_kind, func.count(), func.coalesce(func.sum(StoredObject.size_bytes), 0)
                ).group_by(StoredObject.owner_kind)
            ).all()
            recorded = dict(session.execute(select(StoredObject.key, StoredObject.size_bytes)).tuples().all())
        owners = {kind: {"objects": 0, "bytes": 0} for kind in Owner.PREFIXES}
        for kind, count, size in totals:
            owners[kind] = {"objects": int(count), "bytes": int(size)}
        orphans, recent, foreign, missing = Tally(), Tally(), Tally(), Tally()
        present: set[str] = set()
        for info in self.backend.objects():
            present.add(info.key)
            if info.key in recorded:
                continue
            if Owner.of_key(info.key) is None:
                foreign.add(info.key, info.size)
            elif info.modified < now - grace:
                orphans.add(info.key, info.size)
            else:
                recent.add(info.key, info.size)
        for key, size in recorded.items():
            if key not in present:
                missing.add(key, size)
        ownerless = Tally()
        dead = {(o.kind, o.id) for o in self._dead_owners()}
        if dead:
            with session_scope() as session:
                for row in session.scalars(select(StoredObject)):
                    if (row.owner_kind, row.owner_id) in dead:
                        ownerless.add(row.key, row.size_bytes)
        pending = self.backend.pending_uploads()
        scratch_files, scratch_bytes = self.scratch.usage()
        return {
            "backend": self.url,
            "owners": owners,
            "orphans": orphans.as_dict(),
            "unrecorded_recent": recent.as_dict(),
            "ownerless_records": ownerless.as_dict(),
            "missing_objects": missing.as_dict(),
            "foreign_objects": foreign.as_dict(),
            "pending_uploads": {"count": len(pending), "bytes": sum(p.size for p in pending)},
            "scratch": {"files": scratch_files, "bytes": scratch_bytes},
        }


def _alive_owner_ids(session: Session, kind: str, ids: set[str]) -> set[str]:
    """Which of ``ids`` still own their objects: existing datasets and model versions, jobs not over, and
    succeeded jobs that keep their inputs until they are purged."""
    alive: set[str] = set()
    ordered = sorted(ids)
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        if kind == "job":
            alive |= set(
                session.scalars(
                    select(Job.id).where(
                        Job.id.in_(chunk),
                        Job.status.not_in(TERMINAL_JOB_STATUSES)
                        | (Job.keeps_inputs.is_(True) & (Job.status == "succeeded")),
                    )
                )
            )
            continue
        numbers = [int(i) for i in chunk if i.isdigit()]
        table: Any = {"dataset": SoundDataset, "model_version": ModelVersion}.get(kind)
        if table is None:
            continue  # an unknown kind owns nothing
        alive |= {str(i) for i in session.scalars(select(table.id).where(table.id.in_(numbers)))}
    return alive


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class _StoreConfig:
    blob_url: str
    blob_dir: Path
    scratch_dir: Path
    s3: S3Location | None


@functools.lru_cache(maxsize=4)
def _open_store(config: _StoreConfig) -> BlobStore:
    scratch = Scratch(config.scratch_dir)
    if config.s3 is not None:
        backend: BlobBackend = S3Backend(config.s3, scratch)
    elif config.blob_url.startswith("file://"):
        backend = LocalBackend(Path(urlsplit(config.blob_url).path))
    else:
        backend = LocalBackend(config.blob_dir)
    return BlobStore(backend, scratch)


def blob_store() -> BlobStore:
    """The store the settings describe (one client per configuration, shared by the process's threads)."""
    settings = get_settings()
    url = settings.blob_url.strip()
    if url and not url.startswith(("s3://", "file://")):
        raise ValueError(f"TINGYIN_BLOB_URL must be s3://bucket/prefix or file:///path, not {url!r}")
    s3 = S3Location.parse(url, settings) if url.startswith("s3://") else None
    return _open_store(_StoreConfig(url, settings.blob_dir, settings.scratch_dir, s3))
