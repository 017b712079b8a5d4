"""Small shared types of the sound-classification core."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tingyin.errors import InvalidRequest


class TrainingCancelled(InvalidRequest):
    """Training was cancelled on request."""

    code = "training_cancelled"
    http_status = 409


@dataclass(frozen=True)
class LabeledClip:
    """One training clip: the audio (a file path or its bytes), its class and the sha256 of its bytes."""

    source: Path | bytes
    label: str
    content_hash: str

    @classmethod
    def from_path(cls, path: Path, label: str) -> LabeledClip:
        return cls(path, label, sha256_file(path))

    @classmethod
    def from_bytes(cls, data: bytes, label: str) -> LabeledClip:
        return cls(data, label, hashlib.sha256(data).hexdigest())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
