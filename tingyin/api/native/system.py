"""Health, readiness, models and the calling app."""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tingyin import __version__
from tingyin.api.deps import AuthenticatedRoute, in_thread, native_app
from tingyin.api.errors import without_server_paths
from tingyin.store.apps import AppInfo

router = APIRouter(route_class=AuthenticatedRoute)
log = logging.getLogger(__name__)


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str


@router.get("/healthz", tags=["system"], response_model=HealthOut)
async def healthz() -> HealthOut:
    """Liveness: the process answers."""
    return HealthOut(status="ok", version=__version__)


class ReadyChecks(BaseModel):
    database: str = Field(description='"ok" or why it is unavailable')
    broker: str = Field(description='"ok" or why it is unavailable')
    storage: str = Field(description='"ok" or why the blob store is unavailable')
    models_loaded: list[str] = Field(description="model manager keys loaded in this process")
    asr_model: str = Field(description='"ok" once the default ASR model is loaded')


class ReadyOut(BaseModel):
    ready: bool
    checks: ReadyChecks


def _readiness() -> ReadyOut:
    from tingyin.config import get_settings
    from tingyin.jobs.celery_app import ping_broker
    from tingyin.models import get_manager
    from tingyin.speech.models import speech_models
    from tingyin.store.blobs import blob_store
    from tingyin.store.db import ping

    states: dict[str, str] = {}
    ready = True
    for name, probe in (
        ("database", ping),
        ("broker", ping_broker),
        ("storage", lambda: blob_store().ping()),
    ):
        try:
            probe()
            states[name] = "ok"
        except Exception as exc:
            # The operator's probe: the reason, but no server path (the detail is in the log).
            log.warning("readiness: %s unavailable: %s", name, exc)
            states[name] = f"unavailable: {without_server_paths(str(exc))}"
            ready = False
    default_asr = get_settings().asr_model
    loaded = default_asr in speech_models().loaded()
    ready = ready and loaded
    return ReadyOut(
        ready=ready,
        checks=ReadyChecks(
            database=states["database"],
            broker=states["broker"],
            storage=states["storage"],
            models_loaded=get_manager().loaded(),
            asr_model="ok" if loaded else f"{default_asr} not loaded yet",
        ),
    )


@router.get(
    "/readyz",
    tags=["system"],
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "not ready: the failing checks say why"}},
)
async def readyz() -> JSONResponse:
    """Readiness: database, broker and blob store reachable, default ASR model loaded."""
    ready = await in_thread(_readiness)
    return JSONResponse(ready.model_dump(mode="json"), status_code=200 if ready.ready else 503)


class ModelEntry(BaseModel):
    name: str
    family: str
    source: str
    description: str
    available: bool = Field(description="downloaded or joined into the model cache")
    enabled: bool = Field(description="an ASR model requests may name")
    loaded: bool = Field(description="loaded in this process now")


class ModelCatalog(BaseModel):
    models: list[ModelEntry]
    asr_models: list[str] = Field(description="the ASR models requests may name")
    default_asr_model: str


@router.get("/v1/system/models", tags=["system"], response_model=ModelCatalog)
async def list_models() -> ModelCatalog:
    """Every model the server knows (ASR, VAD, speaker, sound), whether it is downloaded, enabled for
    requests and loaded now. (``GET /v1/models`` is the OpenAI-shaped list of the ASR models requests may
    name.)"""
    from tingyin.models import get_store
    from tingyin.speech.models import speech_models

    models = speech_models()
    enabled, loaded = models.enabled(), models.loaded()
    return ModelCatalog(
        models=[
            ModelEntry(
                name=m.name,
                family=m.family,
                source=m.source,
                description=m.description,
                available=m.materialised,
                enabled=m.name in enabled,
                loaded=m.name in loaded,
            )
            for m in get_store().list()
        ],
        asr_models=sorted(enabled),
        default_asr_model=models.settings.asr_model,
    )


class AppOut(BaseModel):
    """An app as its owner sees it (its secrets are not shown again)."""

    name: str
    app_id: str
    api_key: str
    qps_limit: int | None
    daily_limit: int | None
    created_at: str
    rotated_at: str | None


@router.get("/v1/app", tags=["apps"], response_model=AppOut)
async def current_app(app: AppInfo = Depends(native_app)) -> AppOut:
    """The app the bearer token belongs to."""
    return AppOut.model_validate(app.as_dict())
