"""Fast checks of the OpenAI dialect's pure parts: error bodies, speaker names, RTTM lines, language names."""

from __future__ import annotations

from fastapi import Request

from tingyin.api.compat.openai import _error_body, _letter, _render
from tingyin.api.errors import ErrorInfo
from tingyin.errors import InvalidRequest, QuotaExceeded
from tingyin.inference import ServerBusy
from tingyin.speech import subtitles
from tingyin.speech.languages import LANGUAGE_NAMES, language_name


def _info(error: Exception, status: int, code: str) -> ErrorInfo:
    return ErrorInfo(status, code, str(error), error)  # type: ignore[arg-type]


def test_errors_take_openais_types_and_name_the_field() -> None:
    bad = _info(InvalidRequest("temperature is too high", param="temperature"), 400, "invalid_request")
    assert _error_body(bad) == {
        "message": "temperature is too high",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": "invalid_request",
    }
    assert _error_body(_info(QuotaExceeded("too many", kind="qps"), 429, "quota_exceeded"))["code"] == (
        "rate_limit_exceeded"
    )
    assert _error_body(_info(QuotaExceeded("no more", kind="daily"), 429, "quota_exceeded"))["type"] == (
        "insufficient_quota"
    )
    busy = _info(ServerBusy("busy", retry_after_s=2.4), 503, "server_busy")
    assert _error_body(busy)["type"] == "server_error"
    response = _render(Request({"type": "http", "path": "/v1/audio/transcriptions", "headers": []}), busy)
    assert response.status_code == 503 and response.headers["retry-after"] == "2"


def test_speaker_names() -> None:
    assert [_letter(i) for i in (0, 1, 25, 26, 27)] == ["A", "B", "Z", "AA", "AB"]
    assert [subtitles.speaker_label(s) for s in (1, 2, 11, None)] == [
        "SPEAKER_00",
        "SPEAKER_01",
        "SPEAKER_10",
        "SPEAKER_00",
    ]


def test_rttm_lines_are_one_token_per_field_in_time_order() -> None:
    text = subtitles.rttm("my file", [(2.5, 3.0, "SPEAKER_01"), (0.0, 1.25, "SPEAKER_00"), (4.0, 4.0, "x")])
    assert text.splitlines() == [
        "SPEAKER my_file 1 0.000 1.250 <NA> <NA> SPEAKER_00 <NA> <NA>",
        "SPEAKER my_file 1 2.500 0.500 <NA> <NA> SPEAKER_01 <NA> <NA>",
    ]
    result = {
        "utterances": [
            {"text": "你好", "start_ms": 0, "end_ms": 900, "speaker": 1},
            {"text": "hi", "start_ms": 1000, "end_ms": 1500, "speaker": 2},
        ]
    }
    assert [line.split()[7] for line in subtitles.to_rttm(result, "job").splitlines()] == [
        "SPEAKER_00",
        "SPEAKER_01",
    ]


def test_translated_cues_keep_spaces_between_words() -> None:
    words = [
        {"text": w, "start_ms": i * 400, "end_ms": i * 400 + 300}
        for i, w in enumerate(("word " * 30).split())
    ]
    result = {
        "language": "zh",
        "utterances": [
            {
                "text": " ".join(w["text"] for w in words),
                "start_ms": 0,
                "end_ms": 12_000,
                "language": "zh",
                "words": words,
            }
        ],
    }
    cues = subtitles.cues(result)
    assert len(cues) > 1 and all(" " in cue.text for cue in cues)


def test_language_names() -> None:
    assert language_name("zh") == "chinese" and language_name("yue") == "cantonese"
    assert language_name("ht") == "haitian creole" and language_name("xx") == "xx"
    assert len(LANGUAGE_NAMES) == 100
