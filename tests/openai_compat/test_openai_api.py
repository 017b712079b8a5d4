"""The OpenAI-compatible speech API driven by the official ``openai`` SDK against a running server, with real
speech: every response format (SRT and WebVTT read back by subtitle libraries), translation, streaming,
the extensions (hot words, ITN, speakers), the diarization endpoint (RTTM scored against a known two-speaker
recording) and errors in OpenAI's shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import srt
import webvtt
from openai import OpenAI

from tests.conftest import Server, bearer
from tests.openai_compat.conftest import SPEECH, Conversation, client_for, write_wav
from tingyin.audio import decode
from tingyin.eval.diarization import diarization_error, read_rttm
from tingyin.eval.text import edit_counts, scoring_units

pytestmark = pytest.mark.slow

MALONG = SPEECH / "BAC009S0252W0396.flac"  # 马龙以一百一十七比一百一十六收获前两局胜利, 6.6 s
MALONG_TEXT = "马龙以一百一十七比一百一十六收获前两局胜利"


def _cer(reference: str, hypothesis: str) -> float:
    counts = edit_counts(scoring_units(reference, "CER"), scoring_units(hypothesis, "CER"))
    return counts.errors / counts.reference_length


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def _file(path: Path) -> tuple[str, bytes]:
    return path.name, path.read_bytes()


def _error(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.response.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"]), body
    return dict(body["error"])


def test_models_are_listed_in_openais_shape(client: OpenAI, server: Server, demo_app: dict[str, str]) -> None:
    models = {m.id: m for m in client.models.list()}
    assert {"whisper-1", "whisper-base"} <= set(models)
    assert all(m.object == "model" and m.owned_by == "tingyin" for m in models.values())
    assert models["whisper-1"].created == models["whisper-base"].created > 1_600_000_000
    assert client.models.retrieve("whisper-1").id == "whisper-1"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("gpt-4o-transcribe")
    assert _error(missing.value)["type"] == "invalid_request_error"
    with pytest.raises(openai.AuthenticationError) as refused:
        client_for(server, {"app_token": "not-a-token"}).models.list()
    assert _error(refused.value)["code"] == "invalid_api_key"
    # The richer listing of every model the server knows stays reachable.
    system = httpx.get(f"{server.url}/v1/system/models").json()
    assert system["default_asr_model"] == "whisper-base" and "whisper-base" in system["asr_models"]


def test_response_formats(client: OpenAI) -> None:
    duration = decode(MALONG).duration_s
    plain = client.audio.transcriptions.create(file=_file(MALONG), model="whisper-1")
    assert _cer(MALONG_TEXT, plain.text) <= 0.15 and "117" in plain.text
    assert plain.usage is not None and plain.usage.seconds == pytest.approx(duration, abs=0.01)

    text = client.audio.transcriptions.create(
        file=_file(MALONG), model="whisper-base", response_format="text"
    )
    assert text.strip() == plain.text

    subtitles = list(
        srt.parse(
            client.audio.transcriptions.create(file=_file(MALONG), model="whisper-1", response_format="srt")
        )
    )
    assert subtitles and "".join(s.content for s in subtitles) == plain.text
    assert 0 < subtitles[0].start.total_seconds() < subtitles[-1].end.total_seconds() <= duration

    vtt = client.audio.transcriptions.create(file=_file(MALONG), model="whisper-1", response_format="vtt")
    captions = webvtt.from_string(vtt)
    assert "".join(c.text for c in captions) == plain.text and all(c.voice is None for c in captions)

    verbose = client.audio.transcriptions.create(
        file=_file(MALONG),
        model="whisper-1",
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert verbose.language == "chinese" and verbose.text == plain.text
    assert verbose.duration == pytest.approx(duration, abs=0.01)
    assert verbose.segments and verbose.words
    for segment in verbose.segments:
        assert 0 <= segment.start < segment.end <= duration
        assert segment.seek <= segment.start * 100  # mel frames of the decoded chunk's start
        assert segment.tokens and all(isinstance(t, int) for t in segment.tokens)
        assert segment.temperature == 0.0 and -1.0 < segment.avg_logprob < 0.0
        assert 0.0 <= segment.no_speech_prob < 0.5 and 0.0 < segment.compression_ratio < 2.4
    # One word per Chinese character, in time order, inside their segment.
    assert "".join(w.word for w in verbose.words) == "".join(ch for ch in plain.text if ch not in "。，")
    starts = [w.start for w in verbose.words]
    assert starts == sorted(starts)
    assert (
        verbose.segments[0].start
        <= verbose.words[0].start
        <= verbose.words[-1].end
        <= verbose.segments[-1].end
    )
    words_only = client.audio.transcriptions.create(
        file=_file(MALONG),
        model="whisper-1",
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert words_only.words and words_only.segments is None


def test_translation_into_english(client: OpenAI) -> None:
    translation = client.audio.translations.create(file=_file(MALONG), model="whisper-1")
    assert translation.text and not _has_cjk(translation.text)
    assert "117" in translation.text and "116" in translation.text
    verbose = client.audio.translations.create(
        file=_file(MALONG), model="whisper-1", response_format="verbose_json"
    )
    assert verbose.language == "english" and verbose.text == translation.text
    assert verbose.segments and all(s.tokens and s.end > s.start for s in verbose.segments)
    assert json.loads(verbose.model_dump_json())["task"] == "translate"


def test_streaming_sends_text_as_it_is_decoded(client: OpenAI, tmp_path: Path) -> None:
    pause = np.zeros(24000, dtype=np.float32)
    pieces = [decode(SPEECH / "LJ002-0114.flac").samples, pause, decode(SPEECH / "LJ001-0126.flac").samples]
    path = write_wav(tmp_path / "two-sentences.wav", np.concatenate(pieces))
    events = list(client.audio.transcriptions.create(file=_file(path), model="whisper-1", stream=True))
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) >= 2 and events[-1].type == "transcript.text.done"
    assert "".join(d.delta for d in deltas) == events[-1].text
    whole = client.audio.transcriptions.create(file=_file(path), model="whisper-1")
    assert events[-1].text == whole.text
    assert "imprisonment" in whole.text and "letters" in whole.text


def test_hot_words_and_itn_extensions(client: OpenAI) -> None:
    name = SPEECH / "BAC009S0150W0016.flac"  # 盛源生活广场: the plain model writes the name otherwise
    plain = client.audio.transcriptions.create(file=_file(name), model="whisper-1", language="zh")
    assert "盛源" not in plain.text
    biased = client.audio.transcriptions.create(
        file=_file(name), model="whisper-1", language="zh", extra_body={"hotwords": "盛源:8"}
    )
    assert "盛源生活广场" in biased.text
    words = client.audio.transcriptions.create(
        file=_file(MALONG), model="whisper-1", language="zh", extra_body={"itn": "false"}
    )
    assert "一百一十七" in words.text and not any(ch.isdigit() for ch in words.text)


def test_speakers_on_segments_words_and_cues(client: OpenAI, two_turns: Conversation) -> None:
    (a_start, a_end, _), (_, b_end, _) = two_turns.turns
    verbose = client.audio.transcriptions.create(
        file=_file(two_turns.path),
        model="whisper-1",
        response_format="verbose_json",
        timestamp_granularities=["segment", "word"],
        extra_body={"diarize": "true"},
    )
    assert verbose.segments and verbose.words
    speakers = [s.model_extra["speaker"] for s in verbose.segments if s.model_extra]
    assert (
        speakers[0] == "SPEAKER_00"
        and speakers[-1] == "SPEAKER_01"
        and len(speakers) == len(verbose.segments)
    )
    for word in verbose.words:  # each word is said by the speaker of its clip
        middle = (word.start + word.end) / 2
        expected = "SPEAKER_00" if middle < a_end else "SPEAKER_01"
        assert word.model_extra and word.model_extra["speaker"] == expected, word

    vtt = client.audio.transcriptions.create(
        file=_file(two_turns.path),
        model="whisper-1",
        response_format="vtt",
        extra_body={"diarize": "true"},
    )
    voices = [c.voice for c in webvtt.from_string(vtt)]
    assert voices[0] == "Speaker 1" and voices[-1] == "Speaker 2"

    diarized = client.audio.transcriptions.create(
        file=_file(two_turns.path), model="whisper-1", response_format="diarized_json"
    )
    assert diarized.segments[0].speaker == "A" and diarized.segments[-1].speaker == "B"
    assert all(s.type == "transcript.text.segment" and s.text for s in diarized.segments)
    assert diarized.segments[-1].end <= b_end + 0.5 and diarized.segments[0].start >= a_start


def _diarize(client: OpenAI, path: Path, cast: type[Any], **fields: Any) -> Any:
    return client.post(
        "/audio/diarization",
        cast_to=cast,
        body=fields,
        files=[("file", (path.name, path.read_bytes(), "audio/wav"))],
        options={"headers": {"Content-Type": "multipart/form-data"}},
    )


def test_diarization_endpoint_scored_against_the_known_turns(
    client: OpenAI, six_turns: Conversation, tmp_path: Path
) -> None:
    answer = _diarize(client, six_turns.path, object)
    assert answer["speakers"] == ["SPEAKER_00", "SPEAKER_01"]
    labels = [s["speaker"] for s in answer["segments"]]
    assert labels[:2] == ["SPEAKER_00", "SPEAKER_01"] and [s["id"] for s in answer["segments"]] == list(
        range(len(labels))
    )
    rttm_text = _diarize(client, six_turns.path, str, response_format="rttm", num_speakers="2")
    rttm_file = tmp_path / "hypothesis.rttm"
    rttm_file.write_text(rttm_text)
    hypothesis = read_rttm(rttm_file)
    assert set(hypothesis) == {"SPEAKER_00", "SPEAKER_01"}
    errors = diarization_error(six_turns.reference(), hypothesis, collar=0.25)
    # The reference counts each clip's leading and trailing silence as speech, hence some "missed" time.
    assert errors.confusion == 0.0 and errors.der < 0.12, errors
    with pytest.raises(openai.BadRequestError) as bounds:
        _diarize(client, six_turns.path, object, min_speakers="3", max_speakers="2")
    assert "min_speakers" in _error(bounds.value)["message"]


def test_native_transcripts_download_as_rttm(
    server: Server, demo_app: dict[str, str], six_turns: Conversation, tmp_path: Path
) -> None:
    job = httpx.post(
        f"{server.url}/v1/transcriptions",
        params={"diarize": "true", "language": "zh"},
        content=six_turns.path.read_bytes(),
        headers=bearer(demo_app),
    ).json()
    assert server.wait_job(demo_app, job["id"])["status"] == "succeeded"
    download = httpx.get(
        f"{server.url}/v1/transcriptions/{job['id']}/transcript",
        params={"format": "rttm"},
        headers=bearer(demo_app),
    )
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/plain")
    assert download.headers["content-disposition"].endswith('.rttm"')
    path = tmp_path / "job.rttm"
    path.write_text(download.text)
    errors = diarization_error(six_turns.reference(), read_rttm(path), collar=0.25)
    assert errors.confusion < 0.05 * errors.reference and errors.der < 0.3, errors


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": "2"}, "temperature"),
        ({"response_format": "xml"}, "response_format"),
        ({"language": "de"}, "language"),
        ({"model": "gpt-4o-transcribe"}, "model"),
        ({"stream": "true", "response_format": "srt"}, "stream"),
        ({"timestamp_granularities[]": "word"}, "timestamp_granularities[]"),
        ({"hotwords": "盛源:99"}, "hotwords"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_fields_are_named_in_the_error(client: OpenAI, fields: dict[str, str], param: str) -> None:
    body = {"model": "whisper-1", **fields}
    with pytest.raises(openai.BadRequestError) as refused:
        client.post(
            "/audio/transcriptions",
            cast_to=object,
            body=body,
            files=[("file", ("a.flac", MALONG.read_bytes(), "audio/flac"))],
            options={"headers": {"Content-Type": "multipart/form-data"}},
        )
    error = _error(refused.value)
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


def test_bad_audio_and_missing_file(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as broken:
        client.audio.transcriptions.create(file=("x.wav", b"RIFF not really a wave file"), model="whisper-1")
    assert _error(broken.value)["param"] == "file"
    with pytest.raises(openai.BadRequestError) as missing:
        client.post(
            "/audio/transcriptions",
            cast_to=object,
            body={"model": "whisper-1"},
            options={"headers": {"Content-Type": "multipart/form-data"}},
        )
    assert _error(missing.value)["param"] == "file"


def test_quota_answers_openais_rate_limit_error(server: Server) -> None:
    app = server.create_app("openai-quota")
    server.cli("apps", "limits", "openai-quota", "--daily", "1")
    client = client_for(server, app)
    with pytest.raises(openai.BadRequestError):  # counted, then refused for the missing file
        client.post("/audio/translations", cast_to=object, body={"model": "whisper-1"})
    with pytest.raises(openai.RateLimitError) as limited:
        client.audio.translations.create(file=_file(MALONG), model="whisper-1")
    assert _error(limited.value)["type"] == "insufficient_quota"
    usage = httpx.get(f"{server.url}/v1/app/usage", headers=bearer(app)).json()
    assert [a["api"] for a in usage["apis"]] == ["openai"] and usage["over_daily_limit"] == ["openai"]


def test_readme_example(server: Server, demo_app: dict[str, str]) -> None:
    """The two lines the README shows."""
    client = OpenAI(base_url=f"{server.url}/v1", api_key=demo_app["app_token"])
    with open(SPEECH / "LJ002-0114.flac", "rb") as audio:
        text = client.audio.transcriptions.create(model="whisper-1", file=audio).text
    assert "imprisonment for debt" in text.lower()
