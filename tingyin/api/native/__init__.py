"""Our own REST API (OpenAPI at /docs)."""

from fastapi import APIRouter

from tingyin.api.native import system, transcriptions

router = APIRouter()
router.include_router(system.router)
router.include_router(transcriptions.router)

__all__ = ["router"]
