"""The calling app's custom vocabulary: phrases that must come out exactly when spoken."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tingyin.api.deps import in_thread, native_app
from tingyin.errors import InvalidRequest
from tingyin.store.apps import AppInfo
from tingyin.store.vocabulary import get_vocabulary, parse_phrases, set_vocabulary

router = APIRouter(prefix="/v1", tags=["speech"])


@router.get("/vocabulary")
async def read_vocabulary(app: AppInfo = Depends(native_app)) -> dict[str, object]:
    phrases = await in_thread(get_vocabulary, app.pk)
    return {"phrases": phrases, "count": len(phrases)}


@router.put("/vocabulary")
async def replace_vocabulary(request: Request, app: AppInfo = Depends(native_app)) -> dict[str, object]:
    """Replace the vocabulary: a text body with one phrase per line, or JSON ``{"phrases": [...]}``
    (at most 10,000 phrases)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        payload = await request.json()
        if not isinstance(payload, dict) or not isinstance(payload.get("phrases"), list):
            raise InvalidRequest('send {"phrases": ["...", ...]}')
        text = "\n".join(str(p) for p in payload["phrases"])
    else:
        try:
            text = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("the vocabulary must be UTF-8 text") from None
    phrases = await in_thread(set_vocabulary, app.pk, parse_phrases(text))
    return {"phrases": phrases, "count": len(phrases)}
