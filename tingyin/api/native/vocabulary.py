"""The calling app's custom vocabulary: phrases that must come out exactly when spoken."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from tingyin.api.deps import AuthenticatedRoute, in_thread, native_app
from tingyin.api.middleware import register_body_limit
from tingyin.errors import InvalidRequest
from tingyin.store.apps import AppInfo
from tingyin.store.vocabulary import MAX_PHRASES, get_vocabulary, parse_phrases, set_vocabulary

router = APIRouter(prefix="/v1", tags=["speech"], route_class=AuthenticatedRoute)
# 10,000 phrases of 50 characters of 3 UTF-8 bytes, as JSON strings, with room to spare.
BODY_MAX_BYTES = 2 * 1024 * 1024
register_body_limit(lambda path: path == "/v1/vocabulary", BODY_MAX_BYTES)


def _phrases_from_json(raw: bytes) -> str:
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the body is not valid JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("phrases"), list):
        raise InvalidRequest('send {"phrases": ["...", ...]}')
    unknown = sorted(set(payload) - set(VocabularyIn.model_fields))
    if unknown:  # as every native JSON body: a misspelt field is an error, not ignored
        raise InvalidRequest(f'unknown field(s): {", ".join(unknown)}; send {{"phrases": [...]}}')
    phrases = payload["phrases"]
    if len(phrases) > MAX_PHRASES:
        raise InvalidRequest(f"a vocabulary holds at most {MAX_PHRASES} phrases, got {len(phrases)}")
    for number, phrase in enumerate(phrases, 1):
        if not isinstance(phrase, str):
            raise InvalidRequest(f"phrase {number} is not a string")
        if "\n" in phrase or "\r" in phrase:
            raise InvalidRequest(f"phrase {number} spans several lines")
    return "\n".join(phrases)


class VocabularyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phrases: list[str] = Field(max_length=10_000)


class VocabularyOut(BaseModel):
    phrases: list[str]
    count: int


VOCABULARY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/plain": {"schema": {"type": "string", "description": "one phrase per line"}},
            "application/json": {"schema": VocabularyIn.model_json_schema()},
        },
    }
}


@router.get("/vocabulary", response_model=VocabularyOut)
async def read_vocabulary(app: AppInfo = Depends(native_app)) -> VocabularyOut:
    phrases = await in_thread(get_vocabulary, app.pk)
    return VocabularyOut(phrases=phrases, count=len(phrases))


@router.put("/vocabulary", response_model=VocabularyOut, openapi_extra=VOCABULARY_BODY)
async def replace_vocabulary(request: Request, app: AppInfo = Depends(native_app)) -> VocabularyOut:
    """Replace the vocabulary: a text body with one phrase per line, or JSON ``{"phrases": [...]}``
    (at most 10,000 phrases of 50 characters, no control characters; a body of at most 2 MB)."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        text = _phrases_from_json(raw)
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("the vocabulary must be UTF-8 text") from None
    phrases = await in_thread(set_vocabulary, app.pk, parse_phrases(text))
    return VocabularyOut(phrases=phrases, count=len(phrases))
