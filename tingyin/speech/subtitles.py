"""Transcripts as files: plain text, SubRip (SRT) and WebVTT, from the native job result's utterances
(``{text, start_ms, end_ms, speaker, role, words[{text, start_ms, end_ms}]}``).

One cue per utterance; an utterance longer than ``MAX_CUE_MS`` or ``MAX_CUE_CHARS`` is cut at word
boundaries so a subtitle stays readable. Cues name the speaker ("Speaker 1: ...", WebVTT's ``<v>`` tag)
when the transcript has more than one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_CUE_MS = 7000
MAX_CUE_CHARS = 84
CJK_LANGUAGES = ("zh", "yue", "ja", "ko")


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    text: str
    speaker: str | None


def _joiner(language: str) -> str:
    return "" if language.startswith(CJK_LANGUAGES) else " "


def _speaker_name(utterance: Mapping[str, Any], roles: Mapping[str, str]) -> str | None:
    speaker = utterance.get("speaker")
    if speaker is None:
        return None
    role = utterance.get("role") or roles.get(str(speaker))
    return f"Speaker {speaker}" + (f" ({role})" if role else "")


def cues(result: Mapping[str, Any]) -> list[Cue]:
    utterances: Sequence[Mapping[str, Any]] = result.get("utterances") or []
    roles: Mapping[str, str] = result.get("roles") or {}
    several = len({u.get("speaker") for u in utterances if u.get("speaker") is not None}) > 1
    out: list[Cue] = []
    for utterance in utterances:
        speaker = _speaker_name(utterance, roles) if several else None
        joiner = _joiner(str(utterance.get("language") or result.get("language") or ""))
        words = list(utterance.get("words") or [])
        text = str(utterance.get("text", "")).strip()
        start, end = int(utterance["start_ms"]), int(utterance["end_ms"])
        if not text:
            continue
        if not words or (end - start <= MAX_CUE_MS and len(text) <= MAX_CUE_CHARS):
            out.append(Cue(start, end, text, speaker))
            continue
        group: list[Mapping[str, Any]] = []
        for word in words:
            if group:
                span = int(word["end_ms"]) - int(group[0]["start_ms"])
                length = len(joiner.join(str(w["text"]).strip() for w in [*group, word]))
                if span > MAX_CUE_MS or length > MAX_CUE_CHARS:
                    out.append(_cue_of(group, joiner, speaker))
                    group = []
            group.append(word)
        if group:
            out.append(_cue_of(group, joiner, speaker))
    return out


def _cue_of(words: Sequence[Mapping[str, Any]], joiner: str, speaker: str | None) -> Cue:
    text = joiner.join(str(w["text"]).strip() for w in words).strip()
    return Cue(int(words[0]["start_ms"]), int(words[-1]["end_ms"]), text, speaker)


def _clock(ms: int, separator: str) -> str:
    ms = max(0, ms)
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def to_srt(result: Mapping[str, Any]) -> str:
    blocks = []
    for number, cue in enumerate(cues(result), start=1):
        text = f"{cue.speaker}: {cue.text}" if cue.speaker else cue.text
        blocks.append(f"{number}\n{_clock(cue.start_ms, ',')} --> {_clock(cue.end_ms, ',')}\n{text}\n")
    return "\n".join(blocks)


def to_vtt(result: Mapping[str, Any]) -> str:
    blocks = ["WEBVTT\n"]
    for cue in cues(result):
        text = cue.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if cue.speaker:
            text = f"<v {cue.speaker}>{text}"
        blocks.append(f"{_clock(cue.start_ms, '.')} --> {_clock(cue.end_ms, '.')}\n{text}\n")
    return "\n".join(blocks)


def to_text(result: Mapping[str, Any]) -> str:
    """One line per utterance, with the speaker when there are several; else the whole text."""
    utterances: Sequence[Mapping[str, Any]] = result.get("utterances") or []
    roles: Mapping[str, str] = result.get("roles") or {}
    several = len({u.get("speaker") for u in utterances if u.get("speaker") is not None}) > 1
    if not several:
        return str(result.get("text", "")).strip() + "\n"
    lines = [f"{_speaker_name(u, roles)}: {str(u.get('text', '')).strip()}" for u in utterances]
    return "\n".join(lines) + "\n"
