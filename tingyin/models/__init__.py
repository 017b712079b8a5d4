"""Model weights: sources (pip packages, local dirs, hub), checksums, cache, lazy loading."""

from tingyin.models.manager import ModelManager, get_manager
from tingyin.models.registry import (
    BUILTIN_MODELS,
    ChecksumMismatch,
    HubClient,
    ModelError,
    ModelSpec,
    ModelStore,
    get_store,
    model_path,
)

__all__ = [
    "BUILTIN_MODELS",
    "ChecksumMismatch",
    "HubClient",
    "ModelError",
    "ModelManager",
    "ModelSpec",
    "ModelStore",
    "get_manager",
    "get_store",
    "model_path",
]
