"""`tingyin eval asr MANIFEST.csv`: transcribe a manifest's clips and score them (CER for Chinese, WER else).

The manifest has columns ``id``, ``path`` (relative to the manifest's folder) and ``text`` (the reference).
Scoring follows ../shared/testdata/README.md (see ``tingyin.eval.text``).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tingyin.errors import InvalidRequest, TingyinError
from tingyin.eval.text import edit_counts, scoring_units
from tingyin.speech.textnorm import has_cjk


class AsrEvalResult(NamedTuple):
    metric: str  # "CER" or "WER"
    value: float  # error rate, 0..1 (may exceed 1 with many insertions)
    n: int  # clips scored
    audio_seconds: float
    wall_seconds: float
    rtf: float  # wall seconds per audio second
    errors: int  # edits (substitutions + deletions + insertions)
    reference_units: int  # reference characters (CER) or words (WER)


class _Row(NamedTuple):
    id: str
    path: Path
    text: str


def _read_manifest(manifest: Path, limit: int | None) -> list[_Row]:
    if not manifest.is_file():
        raise InvalidRequest(f"manifest {manifest} does not exist")
    with manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"id", "path", "text"} - set(reader.fieldnames or [])
        if missing:
            raise InvalidRequest(f"manifest {manifest} lacks column(s): {', '.join(sorted(missing))}")
        rows = [_Row(r["id"], manifest.parent / r["path"], r["text"]) for r in reader]
    return rows[:limit] if limit is not None else rows


def metric_for(language: str, references: list[str]) -> str:
    """CER for Chinese (asked for, or most references in Chinese script), WER otherwise."""
    if language in ("zh", "yue", "zh-en"):
        return "CER"
    if language == "en":
        return "WER"
    chinese = sum(has_cjk(text) for text in references)
    return "CER" if chinese * 2 >= len(references) else "WER"


class BaiduEndpoint(NamedTuple):
    """A running server's Baidu short-speech API, to evaluate through the path the SDK takes."""

    url: str  # base URL, e.g. http://127.0.0.1:8000
    api_key: str
    secret_key: str
    path: str = "/server_api"
    dev_pid: int = 1537


def _baidu_recognizer(endpoint: BaiduEndpoint) -> Callable[[np.ndarray], str]:
    import base64

    import httpx

    from tingyin.audio import encode_wav

    client = httpx.Client(base_url=endpoint.url, timeout=120)
    token = client.get(
        "/oauth/2.0/token",
        params={
            "grant_type": "client_credentials",
            "client_id": endpoint.api_key,
            "client_secret": endpoint.secret_key,
        },
    ).json()["access_token"]

    def recognize(samples: np.ndarray) -> str:
        wav = encode_wav(samples)
        body = {
            "format": "wav",
            "rate": 16000,
            "channel": 1,
            "cuid": "tingyin-eval",
            "token": token,
            "dev_pid": endpoint.dev_pid,
            "speech": base64.b64encode(wav).decode(),
            "len": len(wav),
        }
        answer = client.post(endpoint.path, json=body).json()
        if answer.get("err_no") == 3301:  # no speech: an empty hypothesis
            return ""
        if answer.get("err_no") != 0:
            raise InvalidRequest(f"err_no {answer.get('err_no')}: {answer.get('err_msg')}")
        return str(answer["result"][0])

    return recognize


def evaluate_asr(
    manifest: Path,
    *,
    language: str = "auto",
    itn: bool = False,
    punctuation: bool = False,
    limit: int | None = None,
    errors_out: Path | None = None,
    hyps_out: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    extra: dict[str, str] | None = None,
    endpoint: BaiduEndpoint | None = None,
    rate: int | None = None,
) -> AsrEvalResult:
    """Transcribe every clip of ``manifest`` and score it against its reference.

    By default the recognizer runs in this process; with ``endpoint`` every clip goes through a running
    server's Baidu API instead (language, ITN and punctuation then follow its dev_pid). ``errors_out``
    receives one tab-separated line per clip with errors: id, edits, reference, hypothesis; ``hyps_out`` one
    JSON line ``{"id", "text"}`` per clip, the input of ``../shared/eval/score.py``. ``extra`` holds
    ``DecodeOptions`` fields as strings (e.g. ``{"second_pass": "false"}``). ``rate`` (e.g. 8000 for
    telephony): each clip is first brought down to this sample rate, as a narrow-band caller would send it;
    it is resampled back to the model's 16 kHz as the server does with such input.
    """
    from tingyin.audio import decode, resample
    from tingyin.speech.models import speech_models
    from tingyin.speech.options import DecodeOptions

    rows = _read_manifest(Path(manifest), limit)
    metric = metric_for(language, [r.text for r in rows])
    options = DecodeOptions.parse(
        dict(extra or {}), language=language, itn=itn, punctuation=punctuation, word_timestamps=False
    )
    total_errors = 0
    total_units = 0
    audio_seconds = 0.0
    wall_seconds = 0.0
    lines: list[str] = []
    hypotheses: list[str] = []
    with speech_models().use(options.model) as recognizer:
        recognize = (
            _baidu_recognizer(endpoint)
            if endpoint is not None
            else (lambda samples: recognizer.transcribe(samples, options).text)
        )
        for index, row in enumerate(rows):
            audio = decode(row.path)
            samples = audio.samples
            if rate is not None:
                samples = resample(resample(samples, audio.sample_rate, rate), rate, audio.sample_rate)
            started = time.perf_counter()
            try:
                hypothesis = recognize(samples)
            except TingyinError as exc:  # one bad clip scores as all deletions; the run goes on
                hypothesis = ""
                lines.append(f"{row.id}\tfailed: {exc.message}")
            wall_seconds += time.perf_counter() - started
            audio_seconds += audio.duration_s
            counts = edit_counts(scoring_units(row.text, metric), scoring_units(hypothesis, metric))
            total_errors += counts.errors
            total_units += counts.reference_length
            hypotheses.append(json.dumps({"id": row.id, "text": hypothesis}, ensure_ascii=False))
            if counts.errors:
                lines.append(f"{row.id}\t{counts.errors}/{counts.reference_length}\t{row.text}\t{hypothesis}")
            if progress:
                progress(index + 1, len(rows))
    if errors_out is not None:
        Path(errors_out).write_text(
            "id\terrors/length\treference\thypothesis\n" + "".join(line + "\n" for line in lines),
            encoding="utf-8",
        )
    if hyps_out is not None:
        Path(hyps_out).write_text("".join(line + "\n" for line in hypotheses), encoding="utf-8")
    return AsrEvalResult(
        metric=metric,
        value=total_errors / max(1, total_units),
        n=len(rows),
        audio_seconds=audio_seconds,
        wall_seconds=wall_seconds,
        rtf=wall_seconds / audio_seconds if audio_seconds else 0.0,
        errors=total_errors,
        reference_units=total_units,
    )


def format_asr_report(result: AsrEvalResult) -> str:
    unit = "characters" if result.metric == "CER" else "words"
    return (
        f"{result.metric} {result.value * 100:.2f}% "
        f"({result.errors} errors / {result.reference_units} {unit}) "
        f"over {result.n} clips, {result.audio_seconds:.1f} s audio in {result.wall_seconds:.1f} s "
        f"(RTF {result.rtf:.3f})"
    )
