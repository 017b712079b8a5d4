"""Per-app custom vocabulary (Baidu 自定义词库): at most 10,000 phrases, one per line."""

from __future__ import annotations

import re

from sqlalchemy import select

from tingyin.errors import InvalidRequest
from tingyin.store.db import session_scope
from tingyin.store.models import Vocabulary, utcnow

MAX_PHRASES = 10_000
MAX_PHRASE_CHARS = 50  # the engine biases decoding with phrases up to this length
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # tabs become spaces; NUL and the rest are refused


def parse_phrases(text: str) -> list[str]:
    """One phrase per line; blank lines dropped, duplicates kept once, order kept."""
    phrases: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        phrase = line.replace("\t", " ").strip()
        if not phrase or phrase in seen:
            continue
        if CONTROL.search(phrase):
            raise InvalidRequest(f"line {number}: control characters are not allowed in a phrase")
        if len(phrase) > MAX_PHRASE_CHARS:
            raise InvalidRequest(f"line {number}: a phrase holds at most {MAX_PHRASE_CHARS} characters")
        seen.add(phrase)
        phrases.append(phrase)
    if len(phrases) > MAX_PHRASES:
        raise InvalidRequest(f"a vocabulary holds at most {MAX_PHRASES} phrases, got {len(phrases)}")
    return phrases


def set_vocabulary(app_pk: int, phrases: list[str]) -> list[str]:
    cleaned = parse_phrases("\n".join(phrases))
    with session_scope() as session:
        row = session.get(Vocabulary, app_pk)
        if row is None:
            session.add(Vocabulary(app_pk=app_pk, phrases={"phrases": cleaned}))
        else:
            row.phrases = {"phrases": cleaned}
            row.updated_at = utcnow()
    return cleaned


def get_vocabulary(app_pk: int) -> list[str]:
    with session_scope() as session:
        row = session.scalar(select(Vocabulary).where(Vocabulary.app_pk == app_pk))
        return list((row.phrases or {}).get("phrases", [])) if row else []
