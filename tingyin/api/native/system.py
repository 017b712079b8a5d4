"""Health, readiness, models and the calling app."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from tingyin import __version__
from tingyin.api.deps import AuthenticatedRoute, in_thread, native_app
from tingyin.api.errors import without_server_paths
from tingyin.store.apps import AppInfo

router = APIRouter(route_class=AuthenticatedRoute)
log = logging.getLogger(__name__)


@router.get("/healthz", tags=["system"])
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok", "version": __version__}


def _readiness() -> tuple[bool, dict[str, Any]]:
    from tingyin.config import get_settings
    from tingyin.jobs.celery_app import ping_broker
    from tingyin.models import get_manager
    from tingyin.speech.models import speech_models
    from tingyin.store.blobs import blob_store
    from tingyin.store.db import ping

    checks: dict[str, Any] = {}
    ready = True
    for name, probe in (
        ("database", ping),
        ("broker", ping_broker),
        ("storage", lambda: blob_store().ping()),
    ):
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:
            # The operator's probe: the reason, but no server path (the detail is in the log).
            log.warning("readiness: %s unavailable: %s", name, exc)
            checks[name] = f"unavailable: {without_server_paths(str(exc))}"
            ready = False
    checks["models_loaded"] = get_manager().loaded()
    default_asr = get_settings().asr_model
    if default_asr not in speech_models().loaded():
        checks["asr_model"] = f"{default_asr} not loaded yet"
        ready = False
    else:
        checks["asr_model"] = "ok"
    return ready, checks


@router.get("/readyz", tags=["system"])
async def readyz() -> JSONResponse:
    """Readiness: database and broker reachable, default ASR model loaded."""
    ready, checks = await in_thread(_readiness)
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/v1/models", tags=["system"])
async def list_models() -> dict[str, Any]:
    from tingyin.models import get_store
    from tingyin.speech.models import speech_models

    models = speech_models()
    enabled, loaded = models.enabled(), models.loaded()
    return {
        "models": [
            {
                "name": m.name,
                "family": m.family,
                "source": m.source,
                "description": m.description,
                "available": m.materialised,
                "enabled": m.name in enabled,
                "loaded": m.name in loaded,
            }
            for m in get_store().list()
        ],
        "asr_models": sorted(enabled),
        "default_asr_model": models.settings.asr_model,
    }


@router.get("/v1/app", tags=["apps"])
async def current_app(app: AppInfo = Depends(native_app)) -> dict[str, object]:
    """The app the bearer token belongs to."""
    return app.as_dict()
