"""Diarization error rate (DER) scoring and the `tingyin eval diarization MANIFEST.csv` evaluation.

DER = (missed speech + false alarm + speaker confusion) / reference speech, measured over the UEM
regions with a no-score collar around every reference segment boundary (0.25 s each side, as NIST
md-eval's ``-c 0.25``). Overlapping reference speech counts once per speaker. Hypothesis speakers are
mapped one-to-one to reference speakers by the Hungarian assignment that maximises matched time.
Scoring is exact: it runs on the elementary intervals between all segment, collar and UEM edges.
"""

from __future__ import annotations

import csv
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tingyin.errors import InvalidRequest

Segment = tuple[float, float]  # (start_s, end_s)


class DerComponents(NamedTuple):
    """Seconds of each error kind and of scored reference speech; ``der`` is their ratio."""

    missed: float
    false_alarm: float
    confusion: float
    reference: float

    @property
    def error(self) -> float:
        return self.missed + self.false_alarm + self.confusion

    @property
    def der(self) -> float:
        if self.reference > 0:
            return self.error / self.reference
        return 0.0 if self.error == 0 else float("inf")


def _merge(segments: Iterable[Segment]) -> list[Segment]:
    merged: list[list[float]] = []
    for start, end in sorted(segments):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def _active(segments: list[Segment], points: np.ndarray) -> np.ndarray:
    """Whether each point lies inside one of the merged, sorted ``segments``."""
    if not segments:
        return np.zeros(points.shape[0], dtype=bool)
    starts = np.array([s for s, _ in segments])
    ends = np.array([e for _, e in segments])
    index = np.searchsorted(starts, points, side="right") - 1
    return (index >= 0) & (points < ends[np.clip(index, 0, None)])


def _activity_matrix(speakers: list[list[Segment]], points: np.ndarray) -> np.ndarray:
    matrix = np.zeros((len(speakers), points.shape[0]), dtype=bool)
    for row, segments in enumerate(speakers):
        matrix[row] = _active(segments, points)
    return matrix


def diarization_error(
    reference: Mapping[str, Sequence[Segment]],
    hypothesis: Mapping[str, Sequence[Segment]],
    *,
    uem: Sequence[Segment] | None = None,
    collar: float = 0.25,
    skip_overlap: bool = False,
) -> DerComponents:
    """DER components of ``hypothesis`` against ``reference`` (speaker → segments in seconds).

    ``uem`` limits scoring to those regions (default: from the earliest to the latest segment of
    either side); ``collar`` seconds either side of every reference boundary are not scored;
    ``skip_overlap`` also leaves out time where the reference has more than one speaker (a diagnostic)."""
    reference_merged = {k: _merge(v) for k, v in reference.items()}
    hypothesis_merged = {k: _merge(v) for k, v in hypothesis.items()}
    reference_merged = {k: v for k, v in reference_merged.items() if v}
    hypothesis_merged = {k: v for k, v in hypothesis_merged.items() if v}
    if uem is None:
        edges = [
            t for segs in (*reference_merged.values(), *hypothesis_merged.values()) for s in segs for t in s
        ]
        uem = [(min(edges), max(edges))] if edges else []
    uem_merged = _merge(uem)
    no_score = _merge(
        (t - collar, t + collar) for segs in reference_merged.values() for s in segs for t in s if collar > 0
    )
    boundaries = sorted(
        {
            t
            for segs in (*reference_merged.values(), *hypothesis_merged.values(), uem_merged, no_score)
            for s in segs
            for t in s
        }
    )
    if len(boundaries) < 2:
        return DerComponents(0.0, 0.0, 0.0, 0.0)
    edges_array = np.array(boundaries)
    durations = np.diff(edges_array)
    middles = (edges_array[:-1] + edges_array[1:]) / 2
    scored = _active(uem_merged, middles) & ~_active(no_score, middles)
    durations = np.where(scored, durations, 0.0)

    reference_names = sorted(reference_merged)
    hypothesis_names = sorted(hypothesis_merged)
    reference_activity = _activity_matrix([reference_merged[k] for k in reference_names], middles)
    hypothesis_activity = _activity_matrix([hypothesis_merged[k] for k in hypothesis_names], middles)
    reference_count = reference_activity.sum(axis=0)
    if skip_overlap:
        durations = np.where(reference_count > 1, 0.0, durations)
    hypothesis_count = hypothesis_activity.sum(axis=0)

    correct = np.zeros_like(durations)
    if reference_names and hypothesis_names:
        from scipy.optimize import linear_sum_assignment

        overlap = (reference_activity[:, None, :] & hypothesis_activity[None, :, :]) @ durations
        rows, columns = linear_sum_assignment(overlap, maximize=True)
        for row, column in zip(rows, columns, strict=True):
            correct += reference_activity[row] & hypothesis_activity[column]

    missed = float(np.maximum(reference_count - hypothesis_count, 0) @ durations)
    false_alarm = float(np.maximum(hypothesis_count - reference_count, 0) @ durations)
    confusion = float((np.minimum(reference_count, hypothesis_count) - correct) @ durations)
    total = float(reference_count @ durations)
    return DerComponents(missed, false_alarm, confusion, total)


def read_rttm(path: Path, file_id: str | None = None) -> dict[str, list[Segment]]:
    """Speaker → segments (seconds) from an RTTM file (``SPEAKER file chan start dur ... name ...``)."""
    speakers: dict[str, list[Segment]] = {}
    for line_number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise InvalidRequest(f"{path}:{line_number}: an RTTM SPEAKER line needs at least 8 fields")
        if file_id is not None and fields[1] != file_id:
            continue
        start, duration = float(fields[3]), float(fields[4])
        speakers.setdefault(fields[7], []).append((start, start + duration))
    return speakers


def read_uem(path: Path, file_id: str | None = None) -> list[Segment]:
    """Scored regions (seconds) from a UEM file (``file chan start end``)."""
    regions = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) >= 4 and (file_id is None or fields[0] == file_id):
            regions.append((float(fields[2]), float(fields[3])))
    return regions


def format_rttm(file_id: str, speakers: Mapping[str, Sequence[Segment]]) -> str:
    from tingyin.speech.subtitles import rttm

    return rttm(
        file_id, [(start, end, name) for name, segments in speakers.items() for start, end in segments]
    )


@dataclass(frozen=True)
class ClipDiarization:
    id: str
    errors: DerComponents
    reference_speakers: int
    hypothesis_speakers: int
    duration_s: float
    seconds: float  # processing time

    @property
    def der(self) -> float:
        return self.errors.der

    @property
    def count_correct(self) -> bool:
        return self.reference_speakers == self.hypothesis_speakers


@dataclass(frozen=True)
class DiarizationEvalResult:
    clips: list[ClipDiarization]
    collar: float

    @property
    def overall(self) -> DerComponents:
        """Errors and reference time summed over all clips (the usual corpus-level DER)."""
        return DerComponents(
            sum(c.errors.missed for c in self.clips),
            sum(c.errors.false_alarm for c in self.clips),
            sum(c.errors.confusion for c in self.clips),
            sum(c.errors.reference for c in self.clips),
        )

    @property
    def overall_der(self) -> float:
        return self.overall.der

    @property
    def mean_der(self) -> float:
        return float(np.mean([c.der for c in self.clips])) if self.clips else 0.0

    @property
    def speaker_count_accuracy(self) -> float:
        return sum(c.count_correct for c in self.clips) / len(self.clips) if self.clips else 0.0

    @property
    def rtf(self) -> float:
        audio = sum(c.duration_s for c in self.clips)
        return sum(c.seconds for c in self.clips) / audio if audio else 0.0


def evaluate_diarization(
    manifest: Path, *, collar: float = 0.25, limit: int | None = None, oracle_count: bool = False
) -> DiarizationEvalResult:
    """Diarize every clip of ``manifest`` (columns id, path, rttm, uem, n_speakers; paths relative to the
    manifest's folder) and score it. ``oracle_count`` passes the true speaker count (for analysis)."""
    from tingyin.audio import decode
    from tingyin.speech.diarization import diarize

    manifest = Path(manifest)
    with manifest.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if limit is not None:
        rows = rows[:limit]
    base = manifest.parent
    clips = []
    for row in rows:
        reference = read_rttm(base / row["rttm"])
        uem = read_uem(base / row["uem"]) if row.get("uem") else None
        expected = int(row["n_speakers"]) if row.get("n_speakers") else len(reference)
        audio = decode(base / row["path"]).samples
        started = time.perf_counter()
        turns = diarize(audio, 16000, num_speakers=expected if oracle_count else None)
        seconds = time.perf_counter() - started
        hypothesis: dict[str, list[Segment]] = {}
        for turn in turns:
            hypothesis.setdefault(str(turn.speaker), []).append((turn.start_ms / 1000, turn.end_ms / 1000))
        errors = diarization_error(reference, hypothesis, uem=uem, collar=collar)
        clips.append(
            ClipDiarization(row["id"], errors, expected, len(hypothesis), audio.shape[0] / 16000, seconds)
        )
    return DiarizationEvalResult(clips, collar)


def format_diarization_report(result: DiarizationEvalResult) -> str:
    header = ("clip", "DER", "miss", "FA", "conf", "ref_s", "spk", "hyp", "RTF")
    lines = [
        f"{header[0]:<24} " + " ".join(f"{h:>7}" if i < 5 else f"{h:>5}" for i, h in enumerate(header[1:]))
    ]
    for clip in result.clips:
        e = clip.errors
        reference = e.reference or 1.0
        lines.append(
            f"{clip.id:<24} {clip.der:>7.1%} {e.missed / reference:>7.1%} {e.false_alarm / reference:>7.1%} "
            f"{e.confusion / reference:>7.1%} {e.reference:>7.2f} {clip.reference_speakers:>5} "
            f"{clip.hypothesis_speakers:>5} {clip.seconds / max(clip.duration_s, 1e-9):>5.3f}"
        )
    overall = result.overall
    reference = overall.reference or 1.0
    lines.append(
        f"overall DER {overall.der:.1%} (missed {overall.missed / reference:.1%}, false alarm "
        f"{overall.false_alarm / reference:.1%}, confusion {overall.confusion / reference:.1%}; "
        f"{overall.reference:.1f} s scored, collar {result.collar:g} s)"
    )
    lines.append(
        f"mean per-clip DER {result.mean_der:.1%}; speaker count right on "
        f"{sum(c.count_correct for c in result.clips)}/{len(result.clips)} clips "
        f"({result.speaker_count_accuracy:.0%}); RTF {result.rtf:.3f}"
    )
    return "\n".join(lines)


def _aishell_speaker(clip_id: str) -> str | None:
    match = re.search(r"S\d{4}", clip_id)
    return match.group(0) if match else None


def evaluate_joined_conversations(
    manifest: Path,
    *,
    trials: int = 8,
    seed: int = 7,
    collar: float = 0.25,
    speaker_of: Callable[[str], str | None] = _aishell_speaker,
) -> DiarizationEvalResult:
    """Two-speaker "conversations" made by joining clips of two speakers of a speech manifest (columns
    id, path; the speaker is read from the id, AISHELL's ``S0150`` by default): 4–8 alternating turns
    each, the clip spans being the reference turns. Measures the clean two-party case (calls)."""
    from tingyin.audio import decode
    from tingyin.speech.diarization import diarize

    manifest = Path(manifest)
    with manifest.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_speaker: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        speaker = speaker_of(row["id"])
        if speaker:
            by_speaker.setdefault(speaker, []).append(row)
    if len(by_speaker) < 2:
        raise InvalidRequest(f"{manifest} holds clips of fewer than two speakers")
    rng = random.Random(seed)
    clips = []
    for trial in range(trials):
        first, second = rng.sample(sorted(by_speaker), 2)
        parts: list[np.ndarray] = []
        reference: dict[str, list[Segment]] = {}
        position = 0
        for turn in range(rng.randint(4, 8)):
            speaker = first if turn % 2 == 0 else second
            audio = decode(manifest.parent / rng.choice(by_speaker[speaker])["path"]).samples
            parts.append(audio)
            reference.setdefault(speaker, []).append((position / 16000, (position + audio.shape[0]) / 16000))
            position += audio.shape[0]
        joined = np.concatenate(parts)
        started = time.perf_counter()
        turns = diarize(joined, 16000)
        seconds = time.perf_counter() - started
        hypothesis: dict[str, list[Segment]] = {}
        for turn_ in turns:
            hypothesis.setdefault(str(turn_.speaker), []).append((turn_.start_ms / 1000, turn_.end_ms / 1000))
        errors = diarization_error(reference, hypothesis, collar=collar)
        clips.append(
            ClipDiarization(f"joined{trial:02d}", errors, 2, len(hypothesis), position / 16000, seconds)
        )
    return DiarizationEvalResult(clips, collar)
