"""Native music tagging: a track in, tags per dimension with probabilities (the console's music page).

The same core as the SAMI ``MusicTagging`` adapter (``tingyin.music.service.analyse_music``), answered
in the native shape; audio that is not music is a 400 with code ``not_music``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from tingyin import audio
from tingyin.api.deps import AuthenticatedRoute, native_app
from tingyin.api.middleware import register_body_limit
from tingyin.api.openapi import BINARY, raw_body
from tingyin.api.spool import receive_upload, upload_chunks
from tingyin.inference import InferenceExecutor
from tingyin.store.apps import AppInfo

router = APIRouter(prefix="/v1/music", tags=["music"], route_class=AuthenticatedRoute)
MAX_BYTES = 100 * 1024 * 1024
NO_TRACK = "send the track as the request body (the file is empty)"
register_body_limit(lambda path: path == "/v1/music/tags", MAX_BYTES)
DIMENSIONS = (
    "MusicTaggingGenre34",
    "MusicTaggingMood10",
    "MusicTaggingVocal",
    "MusicTaggingLang30",
)


class Tag(BaseModel):
    name: str
    probability: float


class Dimension(BaseModel):
    task_type: str
    tags: list[Tag] = Field(description="best first")


class MusicTagsOut(BaseModel):
    duration_s: float
    vocal_probability: float
    vocal: bool
    language: str | None = Field(description="SAMI language code of the vocals; null when instrumental")
    dimensions: list[Dimension]
    embedding: list[float] | None = Field(description="with embed=true: the track's embeddings, concatenated")


def _tag(track: Path, task_types: list[str], top_num: int, embed: bool) -> MusicTagsOut:
    from tingyin.music.service import analyse_music

    decoded = audio.decode(track, max_bytes=MAX_BYTES, max_seconds=600)
    analysis = analyse_music(decoded.mono(), task_types=task_types, top_num=top_num, enable_embed=embed)
    dimensions = []
    for result in analysis.results:
        pairs = sorted(zip(result.tags, result.pred, strict=True), key=lambda p: -float(p[1]))
        tags = [Tag(name=name, probability=round(float(p), 6)) for name, p in pairs]
        dimensions.append(Dimension(task_type=result.task_type, tags=tags))
    embedding = analysis.embed
    return MusicTagsOut(
        duration_s=round(analysis.duration_s, 3),
        vocal_probability=round(analysis.vocal_probability, 6),
        vocal=analysis.vocal_probability >= 0.5,
        language=analysis.language,
        dimensions=dimensions,
        embedding=[round(float(v), 6) for v in embedding] if embedding is not None else None,
    )


@router.post(
    "/tags",
    response_model=MusicTagsOut,
    openapi_extra=raw_body(
        {"application/octet-stream": BINARY, "audio/*": BINARY}, "the track's bytes, any container"
    ),
)
async def tag_music(
    request: Request,
    tasks: str = Query(",".join(DIMENSIONS), description="comma-separated SAMI task types"),
    top_num: int = Query(10, ge=1, le=100, description="tags per dimension"),
    embed: bool = Query(False, description="also return the embedding"),
    app: AppInfo = Depends(native_app),
) -> MusicTagsOut:
    """Tag a track (the raw body, up to 100 MB and 10 minutes): genre, mood, theme, vocal, language."""
    from tingyin.store.blobs import blob_store

    task_types = [t.strip() for t in tasks.split(",") if t.strip()]
    inference: InferenceExecutor = request.app.state.inference
    scratch = blob_store().scratch
    # The body streams to a scratch file (gone once answered) rather than into memory: ten tracks of
    # 100 MB waiting for an inference slot would otherwise hold a gigabyte or two.
    with scratch.file() as path:
        await receive_upload(
            upload_chunks(request), scratch.writer(path), max_bytes=MAX_BYTES, empty_message=NO_TRACK
        )
        return await inference.run(_tag, path, task_types, top_num, embed)
