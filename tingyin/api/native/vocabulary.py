"""The calling app's custom vocabulary: phrases that must come out exactly when spoken."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from tingyin.api.deps import in_thread, native_app
from tingyin.errors import InvalidRequest
from tingyin.store.apps import AppInfo
from tingyin.store.vocabulary import get_vocabulary, parse_phrases, set_vocabulary

router = APIRouter(prefix="/v1", tags=["speech"])


class VocabularyIn(BaseModel):
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
    (at most 10,000 phrases)."""
    try:
        body = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("the vocabulary must be UTF-8 text") from None
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            payload = json.loads(body)
        except ValueError:
            raise InvalidRequest('the body is not JSON; send {"phrases": ["...", ...]}') from None
        if not isinstance(payload, dict) or not isinstance(payload.get("phrases"), list):
            raise InvalidRequest('send {"phrases": ["...", ...]}')
        body = "\n".join(str(p) for p in payload["phrases"])
    phrases = await in_thread(set_vocabulary, app.pk, parse_phrases(body))
    return VocabularyOut(phrases=phrases, count=len(phrases))
