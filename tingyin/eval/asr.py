"""`tingyin eval asr MANIFEST.csv`: transcribe a manifest's clips and score them (CER for Chinese, WER else).

The manifest has columns ``id``, ``path`` (relative to the manifest's folder) and ``text`` (the reference).
Scoring follows ../shared/testdata/README.md (see ``tingyin.eval.text``).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

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


def evaluate_asr(
    manifest: Path,
    *,
    language: str = "auto",
    itn: bool = False,
    punctuation: bool = False,
    limit: int | None = None,
    errors_out: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    extra: dict[str, str] | None = None,
) -> AsrEvalResult:
    """Transcribe every clip of ``manifest`` with the engine and score it against its reference.

    ``errors_out`` receives one tab-separated line per clip with errors: id, edits, reference, hypothesis.
    ``extra`` holds decoder options (``TranscribeOptions.extra``, e.g. ``{"second_pass": "false"}``).
    """
    from tingyin.audio import decode
    from tingyin.speech import TranscribeOptions, transcribe

    rows = _read_manifest(Path(manifest), limit)
    metric = metric_for(language, [r.text for r in rows])
    options = TranscribeOptions(
        language=language, itn=itn, punctuation=punctuation, word_timestamps=False, extra=dict(extra or {})
    )
    total_errors = 0
    total_units = 0
    audio_seconds = 0.0
    wall_seconds = 0.0
    lines: list[str] = []
    failures: list[str] = []
    for index, row in enumerate(rows):
        audio = decode(row.path)
        started = time.perf_counter()
        try:
            hypothesis = transcribe(audio.samples, options).text
        except TingyinError as exc:  # one bad clip scores as all deletions; the run goes on
            hypothesis = ""
            failures.append(f"{row.id}\tfailed: {exc.message}")
        wall_seconds += time.perf_counter() - started
        audio_seconds += audio.duration_s
        counts = edit_counts(scoring_units(row.text, metric), scoring_units(hypothesis, metric))
        total_errors += counts.errors
        total_units += counts.reference_length
        if counts.errors:
            lines.append(f"{row.id}\t{counts.errors}/{counts.reference_length}\t{row.text}\t{hypothesis}")
        if progress:
            progress(index + 1, len(rows))
    if errors_out is not None:
        Path(errors_out).write_text(
            "id\terrors/length\treference\thypothesis\n" + "".join(line + "\n" for line in lines),
            encoding="utf-8",
        )
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
