"""Our own REST API (OpenAPI at /docs)."""

from fastapi import APIRouter

from tingyin.api.native import sound, system, transcriptions, vocabulary

router = APIRouter()
router.include_router(system.router)
router.include_router(transcriptions.router)
router.include_router(vocabulary.router)
router.include_router(sound.router)

__all__ = ["router"]
