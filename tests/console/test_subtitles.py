"""Transcript files (tingyin.speech.subtitles): SRT and WebVTT cues, speakers, long utterances cut."""

from __future__ import annotations

from typing import Any

from tingyin.speech import subtitles


def words(text: str, start_ms: int, step_ms: int) -> list[dict[str, Any]]:
    return [
        {"text": w, "start_ms": start_ms + i * step_ms, "end_ms": start_ms + (i + 1) * step_ms}
        for i, w in enumerate(text.split())
    ]


TWO_SPEAKERS: dict[str, Any] = {
    "language": "en",
    "text": "Hello there. Hi, how are you?",
    "speakers": [1, 2],
    "roles": {"1": "S", "2": "C"},
    "utterances": [
        {
            "text": "Hello there.",
            "start_ms": 500,
            "end_ms": 1500,
            "speaker": 1,
            "words": words("Hello there.", 500, 500),
        },
        {"text": "Hi, how are you?", "start_ms": 3_723_004, "end_ms": 3_725_000, "speaker": 2, "words": []},
    ],
}


def test_srt_numbers_cues_and_names_speakers() -> None:
    srt = subtitles.to_srt(TWO_SPEAKERS)
    assert srt == (
        "1\n00:00:00,500 --> 00:00:01,500\nSpeaker 1 (S): Hello there.\n\n"
        "2\n01:02:03,004 --> 01:02:05,000\nSpeaker 2 (C): Hi, how are you?\n"
    )


def test_vtt_uses_voice_tags_and_escapes() -> None:
    result = {**TWO_SPEAKERS, "utterances": [{**TWO_SPEAKERS["utterances"][0], "text": "a < b & c"}]}
    vtt = subtitles.to_vtt(result)
    assert vtt.startswith("WEBVTT\n\n")
    assert "00:00:00.500 --> 00:00:01.500\na &lt; b &amp; c" in vtt  # one speaker: no voice tag
    assert "<v Speaker 2 (C)>Hi, how are you?" in subtitles.to_vtt(TWO_SPEAKERS)


def test_long_utterance_is_cut_at_words() -> None:
    text = " ".join(f"word{i}" for i in range(40))
    result = {
        "language": "en",
        "text": text,
        "utterances": [
            {"text": text, "start_ms": 0, "end_ms": 20_000, "speaker": None, "words": words(text, 0, 500)}
        ],
    }
    cues = subtitles.cues(result)
    assert len(cues) >= 3
    assert all(c.end_ms - c.start_ms <= subtitles.MAX_CUE_MS for c in cues)
    assert " ".join(c.text for c in cues) == text
    assert [c.start_ms for c in cues] == sorted(c.start_ms for c in cues)


def one_utterance(language: str, text: str, timed: list[dict[str, Any]]) -> dict[str, Any]:
    utterance = {
        "text": text,
        "start_ms": timed[0]["start_ms"],
        "end_ms": timed[-1]["end_ms"],
        "words": timed,
    }
    return {"language": language, "text": text, "utterances": [{**utterance, "speaker": None}]}


def test_a_long_utterance_is_cut_into_even_cues_after_punctuation() -> None:
    """A greedy cut filled the first cue to the limit and left "can go" (or one character) on its own."""
    text = "Of Jenson it must be said that he carried the development of Roman type as far as it can go"
    cues = subtitles.cues(one_utterance("en", text, words(text, 0, 250)))  # 92 characters over 5 s
    assert [c.text for c in cues] == [
        "Of Jenson it must be said that he carried the",
        "development of Roman type as far as it can go",
    ]
    text = "The paper that is used for ordinary books is exceedingly bad, even in this country, and beaten"
    cues = subtitles.cues(one_utterance("en", text, words(text, 0, 250)))
    assert [c.text for c in cues] == [
        "The paper that is used for ordinary books is exceedingly bad,",
        "even in this country, and beaten",
    ]


def test_a_long_chinese_utterance_is_cut_at_its_pause() -> None:
    said = "看来三星的支付业务虽未能抢占先机但是它在国内的合作银行已经超过二十家之多"  # 36 characters
    timed = [{"text": ch, "start_ms": i * 200, "end_ms": i * 200 + 180} for i, ch in enumerate(said)]
    for char in timed[16:]:  # a pause of 0.4 s before 但是
        char["start_ms"] += 400
        char["end_ms"] += 400
    cues = subtitles.cues(one_utterance("zh", said, timed))
    assert [c.text for c in cues] == [
        "看来三星的支付业务虽未能抢占先机",
        "但是它在国内的合作银行已经超过二十家之多",
    ]
    assert all(len(c.text) <= subtitles.MAX_CUE_CHARS_CJK for c in cues)


def test_chinese_words_join_without_spaces() -> None:
    chars = [
        {"text": ch, "start_ms": i * 400, "end_ms": (i + 1) * 400}
        for i, ch in enumerate("今天天气很好我们去公园散步吧")
    ]
    result = {
        "language": "zh",
        "text": "今天天气很好我们去公园散步吧",
        "utterances": [
            {
                "text": "今天天气很好我们去公园散步吧",
                "start_ms": 0,
                "end_ms": 5600,
                "speaker": None,
                "words": chars,
            }
        ],
    }
    cues = subtitles.cues(result)
    assert len(cues) == 1 and cues[0].text == "今天天气很好我们去公园散步吧"


def test_text_lists_speaker_turns() -> None:
    assert subtitles.to_text(TWO_SPEAKERS) == "Speaker 1 (S): Hello there.\nSpeaker 2 (C): Hi, how are you?\n"
    assert subtitles.to_text({"text": "just text ", "utterances": []}) == "just text\n"
