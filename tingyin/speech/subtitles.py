"""Transcripts as files: plain text, SubRip (SRT), WebVTT and RTTM, from the native job result's utterances
(``{text, start_ms, end_ms, speaker, role, words[{text, start_ms, end_ms}]}``).

One cue per utterance; an utterance longer than ``MAX_CUE_MS`` or its language's character limit is cut
at word boundaries into as few cues as fit, of even length, cut after punctuation or at pauses where it can
(``split_words``), so a subtitle stays readable and no cue is left with a word or two. Cues name the
speaker ("Speaker 1: ...", WebVTT's ``<v>`` tag) when the transcript has more than one. RTTM (NIST's
diarization format) has one ``SPEAKER`` line per utterance or speaker turn, speakers named
``SPEAKER_00``, ``SPEAKER_01``... (speaker 1, 2...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tingyin.speech.textnorm import SENTENCE_END

MAX_CUE_MS = 7000
MAX_CUE_CHARS = 84  # two lines of 42 characters
MAX_CUE_CHARS_CJK = 32  # two lines of 16 characters: a Chinese character is about two Latin ones wide
CJK_LANGUAGES = ("zh", "yue", "ja", "ko")
# Costs of a way to cut an utterance into cues (``split_words``): every cue costs CUE_COST, so the fewest
# cues that fit win; then even lengths (BALANCE_COST x the square of a cue's share of the limit: 84 + 1
# characters cost more than 43 + 42); then cuts after punctuation, or at a pause (CUT_COST less a point per
# 10 ms of pause), over cuts inside a phrase.
CUE_COST = 100.0
BALANCE_COST = 100.0
CUT_COST = 30.0
COMMA_CUT_COST = 5.0
SENTENCE_ENDS = tuple(SENTENCE_END)
CLAUSE_ENDS = tuple("，、；：,;:")


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    text: str
    speaker: str | None


def _joiner(language: str, text: str) -> str:
    """Words of Chinese (Japanese...) text join without spaces; a translation's English text with them even
    though the spoken language was Chinese."""
    return "" if language.startswith(CJK_LANGUAGES) and not text.isascii() else " "


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
        words = list(utterance.get("words") or [])
        text = str(utterance.get("text", "")).strip()
        joiner = _joiner(str(utterance.get("language") or result.get("language") or ""), text)
        start, end = int(utterance["start_ms"]), int(utterance["end_ms"])
        if not text:
            continue
        max_chars = MAX_CUE_CHARS if joiner else MAX_CUE_CHARS_CJK
        if not words or (end - start <= MAX_CUE_MS and len(text) <= max_chars):
            out.append(Cue(start, end, text, speaker))
            continue
        out += [_cue_of(group, joiner, speaker) for group in split_words(words, joiner, max_chars)]
    return out


def split_words(
    words: Sequence[Mapping[str, Any]], joiner: str, max_chars: int
) -> list[Sequence[Mapping[str, Any]]]:
    """``words`` cut into cues of at most ``MAX_CUE_MS`` and ``max_chars`` (a single word longer than that
    is a cue of its own) at the least cost (see ``CUE_COST``): a shortest path over the cut positions."""
    texts = [str(w["text"]).strip() for w in words]
    count = len(words)
    best = [0.0] + [math.inf] * count  # best[k]: the cheapest cues of words[:k]
    back = [0] * (count + 1)
    for stop in range(1, count + 1):
        cut = _cut_cost(words, texts, stop)
        for begin in range(stop - 1, -1, -1):
            length = len(joiner.join(texts[begin:stop]))
            span = int(words[stop - 1]["end_ms"]) - int(words[begin]["start_ms"])
            if stop - begin > 1 and (length > max_chars or span > MAX_CUE_MS):
                break  # a cue starting earlier is longer still
            cost = best[begin] + CUE_COST + BALANCE_COST * (length / max_chars) ** 2 + cut
            if cost < best[stop]:
                best[stop], back[stop] = cost, begin
    groups: list[Sequence[Mapping[str, Any]]] = []
    stop = count
    while stop > 0:
        groups.append(words[back[stop] : stop])
        stop = back[stop]
    return groups[::-1]


def _cut_cost(words: Sequence[Mapping[str, Any]], texts: Sequence[str], stop: int) -> float:
    """The cost of ending a cue after ``words[stop - 1]``: none at the end of the utterance or a sentence,
    little after a clause, else ``CUT_COST`` less a point per 10 ms of pause before the next word."""
    if stop == len(words) or texts[stop - 1].endswith(SENTENCE_ENDS):
        return 0.0
    if texts[stop - 1].endswith(CLAUSE_ENDS):
        return COMMA_CUT_COST
    pause_ms = int(words[stop]["start_ms"]) - int(words[stop - 1]["end_ms"])
    return max(0.0, CUT_COST - max(0, pause_ms) / 10)


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


def speaker_label(speaker: int | None) -> str:
    """RTTM and API name of speaker 1, 2... (``SPEAKER_00``, ``SPEAKER_01``...); no speaker is the first."""
    return f"SPEAKER_{max(0, (speaker or 1) - 1):02d}"


def rttm(file_id: str, segments: Sequence[tuple[float, float, str]]) -> str:
    """RTTM ``SPEAKER`` lines of ``(start_s, end_s, speaker name)`` segments, in time order. The file id
    and names are one token each (RTTM is space-separated)."""
    file_id = "_".join(file_id.split()) or "audio"
    lines = [
        (
            start,
            f"SPEAKER {file_id} 1 {start:.3f} {end - start:.3f} <NA> <NA> {'_'.join(name.split())} <NA> <NA>",
        )
        for start, end, name in segments
        if end > start
    ]
    lines.sort(key=lambda pair: pair[0])
    return "".join(line + "\n" for _, line in lines)


def to_rttm(result: Mapping[str, Any], file_id: str = "audio") -> str:
    """Who spoke when, one line per utterance (a transcript without speakers is one speaker)."""
    utterances: Sequence[Mapping[str, Any]] = result.get("utterances") or []
    return rttm(
        file_id,
        [
            (int(u["start_ms"]) / 1000, int(u["end_ms"]) / 1000, speaker_label(u.get("speaker")))
            for u in utterances
        ],
    )
