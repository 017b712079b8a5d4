"""Our own REST API (OpenAPI at /docs)."""

from fastapi import APIRouter

from tingyin.api.native import (
    jobs,
    music,
    session,
    sound,
    system,
    transcriptions,
    uploads,
    usage,
    vocabulary,
)

router = APIRouter()
router.include_router(system.router)
router.include_router(transcriptions.router)
router.include_router(jobs.router)
router.include_router(vocabulary.router)
router.include_router(sound.router)
router.include_router(music.router)
router.include_router(uploads.router)
router.include_router(usage.router)
router.include_router(session.router)

__all__ = ["router"]
