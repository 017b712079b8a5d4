#!/usr/bin/env python
"""Throughput and latency of the speech engine against plain faster-whisper, side by side.

Builds a ~10 minute recording by concatenating dev clips (../shared/testdata/zh_dev by default) with pauses
of 0.5-3 s between them, then transcribes it (a) with plain ``WhisperModel.transcribe`` (same model, compute
type, threads, language and beam size) and (b) with ``tingyin.speech.transcribe``. Prints wall time, RTF,
the speed-up and the CER of each against the concatenated references. Then measures the warm latency of the
engine on 5 s clips (p50, p90).

    python scripts/bench_asr.py [--testdata DIR] [--minutes 10] [--latency-clips 20]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import time
from pathlib import Path

import numpy as np


def _testdata(cli_value: str | None) -> Path:
    if cli_value:
        return Path(cli_value)
    if os.environ.get("TINGYIN_TESTDATA"):
        return Path(os.environ["TINGYIN_TESTDATA"])
    return Path(__file__).resolve().parents[1] / ".." / "shared" / "testdata"


def _rows(set_dir: Path) -> list[dict[str, str]]:
    with (set_dir / "manifest.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def build_recording(set_dir: Path, minutes: float, seed: int = 7) -> tuple[np.ndarray, str]:
    """Dev clips joined with 0.5-3 s of quiet noise between them, up to ``minutes`` long."""
    from tingyin.audio import decode

    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    rows = _rows(set_dir)
    rng.shuffle(rows)
    pieces: list[np.ndarray] = []
    references: list[str] = []
    total = 0
    limit = int(minutes * 60 * 16000)
    for row in rows:
        if total >= limit:
            break
        clip = decode(set_dir / row["path"]).samples
        pause = (noise.standard_normal(int(rng.uniform(0.5, 3.0) * 16000)) * 1e-3).astype(np.float32)
        pieces += [clip, pause]
        references.append(row["text"])
        total += len(clip) + len(pause)
    return np.concatenate(pieces), "".join(references)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--testdata", help="folder with zh_dev/ (default ../shared/testdata)")
    parser.add_argument("--set", default="zh_dev")
    parser.add_argument("--language", default="zh")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--latency-clips", type=int, default=20)
    parser.add_argument("--skip-plain", action="store_true", help="only time the engine")
    parser.add_argument(
        "--option", action="append", default=[], help="engine decoder option KEY=VALUE (repeatable)"
    )
    args = parser.parse_args()

    from tingyin.audio import decode
    from tingyin.config import get_settings
    from tingyin.eval.text import error_rate
    from tingyin.speech import TranscribeOptions, transcribe
    from tingyin.speech.engine import STYLE_PROMPTS
    from tingyin.speech.whisper import load_whisper

    settings = get_settings()
    set_dir = _testdata(args.testdata) / args.set
    audio, reference = build_recording(set_dir, args.minutes)
    seconds = len(audio) / 16000
    metric = "CER" if args.language in ("zh", "yue") else "WER"
    model = load_whisper()
    print(
        f"recording: {seconds:.1f} s from {set_dir.name}; model {settings.asr_model}, "
        f"compute {settings.compute_type}, {settings.cpu_threads} threads, language {args.language}, beam 5"
    )

    if not args.skip_plain:
        started = time.perf_counter()
        segments, _ = model.transcribe(
            audio, language=args.language, beam_size=5, initial_prompt=STYLE_PROMPTS.get(args.language)
        )
        plain_text = "".join(s.text for s in segments)
        plain_s = time.perf_counter() - started
        plain_error = error_rate([reference], [plain_text], metric)
        print(
            f"plain WhisperModel.transcribe : {plain_s:7.1f} s  RTF {plain_s / seconds:.3f}  "
            f"{metric} {plain_error * 100:.2f}%"
        )

    extra = dict(pair.split("=", 1) for pair in args.option)
    options = TranscribeOptions(language=args.language, itn=False, punctuation=True, extra=extra)
    started = time.perf_counter()
    engine_text = transcribe(audio, options).text
    engine_s = time.perf_counter() - started
    engine_error = error_rate([reference], [engine_text], metric)
    print(
        f"tingyin.speech.transcribe     : {engine_s:7.1f} s  RTF {engine_s / seconds:.3f}  "
        f"{metric} {engine_error * 100:.2f}%"
    )
    if not args.skip_plain:
        print(f"throughput ratio (plain time / engine time): {plain_s / engine_s:.2f}x")

    clips = [r for r in _rows(set_dir) if 4.0 <= float(r["duration_s"]) <= 6.0][: args.latency_clips]
    samples = [decode(set_dir / r["path"]).samples for r in clips]
    if samples:
        transcribe(samples[0], options)  # warm-up
        latencies = []
        cpu_seconds = []
        for clip in samples:
            started = time.perf_counter()
            cpu_started = time.process_time()
            transcribe(clip, options)
            latencies.append(time.perf_counter() - started)
            cpu_seconds.append(time.process_time() - cpu_started)
        latencies.sort()
        p90 = latencies[min(len(latencies) - 1, int(0.9 * len(latencies)))]
        print(
            f"latency on {len(samples)} clips of 4-6 s (warm): p50 {statistics.median(latencies):.3f} s, "
            f"p90 {p90:.3f} s; CPU time p50 {statistics.median(cpu_seconds):.3f} s "
            "(the wall time on an idle machine, where nothing else competes for the cores, is at most this)"
        )
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
