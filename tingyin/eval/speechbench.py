"""`tingyin eval recordings`: the speech benchmark run, part by part, against a live server.

- ``drops``: the 10 recordings of ``tingyin.eval.recordings`` through the Volcano AUC API
  (``with_speaker_info``) and through faster-whisper's ``BatchedInferencePipeline``: dropped sentences and
  whole-text error; clean, or under a harder ``condition`` (telephone line, background noise).
- ``speed``: the ~10 minute Mandarin recording, wall time (submit → done for ours) and RTF of both, and CER.
- ``latency``: warm 5 s zh_dev clips through Baidu ``/server_api`` (dev_pid 1537): p50, p90.
- ``load``: concurrent SAMI requests with ~11 MB WAVs and concurrent ``/pro_api`` requests: 5xx, slowest
  request, and the server's RSS (process tree) before, at peak and a while after.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tingyin.audio import encode_wav
from tingyin.eval.live import (
    LocalServer,
    RemoteServer,
    RssSampler,
    ServerClient,
    Transcription,
    concurrent,
    load_average,
    looped_wav,
    sami_wav,
)
from tingyin.eval.recordings import (
    LONG_SECONDS,
    RATE,
    ZH_SPEAKERS,
    Normaliser,
    Recording,
    RecordingScore,
    build_recordings,
    decode_mono,
    degrade_recordings,
    dropped_details,
    format_drops_table,
    load_clips,
    percentile,
    score_recording,
)

if TYPE_CHECKING:
    from tingyin.eval.reference import BatchedReference

MUSIC_FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "music" / "loop_garzul_16k.flac"


@dataclass
class BenchmarkConfig:
    testdata: Path
    work_dir: Path
    out_json: Path
    parts: tuple[str, ...] = ("drops", "speed", "latency", "load")
    seed: int = 11
    limit: int | None = None  # only the first N recordings of the set
    condition: str = "clean"  # how the drops part's recordings are heard (recordings.CONDITIONS)
    long_seconds: float = LONG_SECONDS
    # Throughput rounds: the first times ours with and without speakers and the batched pipeline; each
    # further one times ours without speakers (on a fresh server) and the batched pipeline again, back to
    # back, because this kind of machine drifts by 10-15% within the hour (docs/speech.md).
    speed_rounds: int = 1
    threads: int = 2
    url: str | None = None  # a running server instead of starting one
    credentials: Path | None = None  # its app (JSON as `tingyin apps create` prints)
    server_pid: int | None = None  # its process, for RSS
    models_dir: Path | None = None
    scorer: Path | None = None
    batched: bool = True
    latency_clips: int = 20
    sami_requests: int = 10
    sami_bytes: int = 11 * 1024 * 1024
    pro_requests: int = 30
    settle_s: float = 60.0
    rss_limit_mb: float = 8000.0
    log: Callable[[str], None] = field(default=print)


def run_benchmark(config: BenchmarkConfig) -> dict[str, Any]:
    """Run the selected parts against a server (started here unless ``config.url``) and the batched
    pipeline; print as it goes and write the report to ``config.out_json`` after each part."""
    log = config.log
    normaliser = Normaliser(config.scorer)
    log(f"scoring normalisation: {normaliser.source}")
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "parts": list(config.parts),
        "seed": config.seed,
        "condition": config.condition,
        "threads": config.threads,
        "normalisation": normaliser.source,
        "load_average_start": load_average(),
    }
    include = []
    if "drops" in config.parts:
        include.append("set")
    if "speed" in config.parts:
        include.append("long")
    recordings = (
        build_recordings(
            config.testdata,
            config.work_dir / "recordings",
            seed=config.seed,
            include=include,
            limit=config.limit,
            long_seconds=config.long_seconds,
        )
        if include
        else []
    )

    def save() -> None:
        config.out_json.parent.mkdir(parents=True, exist_ok=True)
        config.out_json.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")

    server: ServerClient
    if config.url:
        if config.credentials is None:
            raise ValueError("--url needs --credentials (the JSON of `tingyin apps create`)")
        server = RemoteServer(config.url, json.loads(config.credentials.read_text()), config.server_pid)
    else:
        server = LocalServer(
            config.work_dir / "server-home", threads=config.threads, models_dir=config.models_dir, log=log
        )
    try:
        server.start()
        report["server"] = server.describe()
        scored = degrade_recordings(
            [r for r in recordings if r.kind != "zh-long"],
            config.condition,
            config.testdata,
            config.work_dir / "recordings",
            config.seed,
        )
        long = [r for r in recordings if r.kind == "zh-long"]
        reference: BatchedReference | None = None
        if config.batched and ("drops" in config.parts or "speed" in config.parts):
            from tingyin.eval.reference import BatchedReference

            reference = BatchedReference(config.models_dir, threads=config.threads)
            report["reference"] = reference.describe()
        if "drops" in config.parts:
            report["drops"] = _drops(scored, server, reference, normaliser, log)
            save()
        if "speed" in config.parts and long:
            report["speed"] = _speed(long[0], server, reference, normaliser, log, config.speed_rounds)
            save()
        if "latency" in config.parts:
            report["latency"] = _latency(config, server, log)
            save()
        if "load" in config.parts:
            report["load"] = _load(config, server, log)
    finally:
        server.stop()
    report["load_average_end"] = load_average()
    save()
    log(f"load average: start {report['load_average_start']}, end {report['load_average_end']}")
    log(f"written: {config.out_json}")
    return report


def _drops(
    recordings: Sequence[Recording],
    server: ServerClient,
    reference: BatchedReference | None,
    normaliser: Normaliser,
    log: Callable[..., None],
) -> dict[str, Any]:
    ours: dict[str, RecordingScore] = {}
    batched: dict[str, RecordingScore] = {}
    with server.files(recordings) as files:
        for recording in recordings:
            result = server.transcribe_volcano(files.url_of(recording), recording.language)
            ours[recording.name] = _scored("ours", recording, result, normaliser)
            log(_one_line(ours[recording.name]))
            if reference is not None:
                batched[recording.name] = _scored(
                    "batched", recording, reference.transcribe(recording), normaliser
                )
                log(_one_line(batched[recording.name]))
    log("")
    log(format_drops_table(recordings, ours, batched))
    details = dropped_details(recordings, ours) + dropped_details(recordings, batched)
    if details:
        log("dropped sentences:")
        for line in details:
            log(line)
    return {
        "recordings": [r.as_dict() for r in recordings],
        "ours": [s.as_dict() for s in ours.values()],
        "batched": [s.as_dict() for s in batched.values()],
    }


def _scored(system: str, recording: Recording, run: Transcription, normaliser: Normaliser) -> RecordingScore:
    """``run`` (ours through the API, or the batched pipeline's) scored against the recording."""
    return score_recording(
        system, recording, run.segments, run.text, normaliser, wall_s=run.wall_s, failure=run.failure
    )


def _one_line(score: RecordingScore) -> str:
    wall = f" in {score.wall_s:.1f} s" if score.wall_s is not None else ""
    failed = f" FAILED: {score.failure}" if score.failure else ""
    return (
        f"{score.system:>7} {score.recording}: {score.metric} {score.error_rate * 100:.2f}%, "
        f"{len(score.dropped)} dropped, {len(score.text_dropped)} text-dropped, {len(score.lost)} lost"
        f"{wall}{failed}"
    )


def _speed(
    recording: Recording,
    server: ServerClient,
    reference: BatchedReference | None,
    normaliser: Normaliser,
    log: Callable[..., None],
    rounds: int = 1,
) -> dict[str, Any]:
    result: dict[str, Any] = {"recording": recording.as_dict(), "audio_s": round(recording.duration_s, 2)}
    log(f"throughput: {recording.name}, {recording.duration_s:.1f} s, {len(recording.sentences)} sentences")
    with server.files([recording]) as files:
        # A short job first, so that the measured one finds the worker's models loaded.
        assert recording.path is not None
        warm_up = recording.path.with_name("warm-up.wav")
        warm_up.write_bytes(encode_wav(decode_mono(recording.path)[: 20 * RATE]))

        def without_speakers_on_fresh_server() -> Transcription | None:
            """Ours without the caches of an earlier request of the same recording (15% faster on this
            one): on a server started again here and warmed the same way; None where it cannot be."""
            if not server.restart():
                return None
            server.transcribe_volcano(files.url_of(warm_up), recording.language)
            return server.transcribe_volcano(files.url_of(recording), recording.language, speakers=False)

        server.transcribe_volcano(files.url_of(warm_up), recording.language)
        run = server.transcribe_volcano(files.url_of(recording), recording.language)
        # The batched pipeline finds no speakers: the same request without them is the like-for-like time.
        fresh = without_speakers_on_fresh_server()
        if fresh is None:
            log("  (a server started elsewhere: the request without speakers reuses the first one's caches)")
        bare = fresh or server.transcribe_volcano(files.url_of(recording), recording.language, speakers=False)
        result["fresh_server_without_speakers"] = fresh is not None
        ours: dict[str, RecordingScore] = {}
        for key, system, done in (("ours", "ours", run), ("ours_no_speakers", "ours, no speakers", bare)):
            ours[key] = _scored(system, recording, done, normaliser)
            result[key] = _speed_entry(ours[key], recording)
            log(_speed_line(ours[key], recording))
        if reference is None:
            return result
        reference_run = reference.transcribe(recording)
        batched = _scored("batched", recording, reference_run, normaliser)
        result["batched"] = _speed_entry(batched, recording)
        log(_speed_line(batched, recording))
        for key, ratio in (("ours", "speed_ratio"), ("ours_no_speakers", "speed_ratio_no_speakers")):
            wall = ours[key].wall_s
            if wall and batched.wall_s:
                result[ratio] = round(batched.wall_s / wall, 3)
                log(f"  {ours[key].system} runs at {result[ratio]:.2f}x the batched pipeline's speed")
        walls = [(bare.wall_s, reference_run.wall_s)]
        for number in range(2, rounds + 1):
            again = without_speakers_on_fresh_server()
            if again is None or again.failure:
                log(f"  round {number}: {'no fresh server' if again is None else again.failure}; stopped")
                break
            walls.append((again.wall_s, reference.transcribe(recording).wall_s))
            log(f"  round {number}: ours, no speakers {walls[-1][0]:.1f} s, batched {walls[-1][1]:.1f} s")
    if len(walls) > 1:
        ratios = sorted(theirs / mine for mine, theirs in walls if mine)
        result["rounds_no_speakers"] = [{"ours_s": round(m, 2), "batched_s": round(t, 2)} for m, t in walls]
        result["speed_ratio_no_speakers_median"] = round(float(np.median(ratios)), 3)
        log(
            f"  ours, no speakers, over {len(walls)} rounds: {', '.join(f'{r:.2f}x' for r in ratios)}; "
            f"median {result['speed_ratio_no_speakers_median']:.2f}x the batched pipeline's speed"
        )
    return result


def _speed_entry(score: RecordingScore, recording: Recording) -> dict[str, Any]:
    wall = score.wall_s or 0.0
    return {
        "wall_s": round(wall, 2),
        "rtf": round(wall / recording.duration_s, 4),
        "error_rate": round(score.error_rate, 4),
        "dropped": score.dropped,
        "text_dropped": score.text_dropped,
        "lost": score.lost,
        "failure": score.failure,
        "hypothesis": score.hypothesis,
    }


def _speed_line(score: RecordingScore, recording: Recording) -> str:
    wall = score.wall_s or 0.0
    return (
        f"  {score.system:>17}: {wall:.1f} s, RTF {wall / recording.duration_s:.4f}, "
        f"CER {score.error_rate * 100:.2f}%, {len(score.dropped)} dropped, "
        f"{len(score.text_dropped)} text-dropped, {len(score.lost)} lost"
        + (f" FAILED: {score.failure}" if score.failure else "")
    )


def latency_clips(testdata: Path, count: int, seed: int, seconds: float = 5.0) -> list[np.ndarray]:
    """``count`` zh_dev clips of at least ``seconds``, cut to ``seconds`` (seeded choice)."""
    clips = [c for speaker in ZH_SPEAKERS for c in load_clips(testdata)[speaker]]
    random.Random(f"{seed}:latency").shuffle(clips)
    chosen: list[np.ndarray] = []
    for clip in clips:
        samples = decode_mono(clip.path)
        if samples.shape[0] >= seconds * RATE:
            chosen.append(samples[: int(seconds * RATE)])
        if len(chosen) == count:
            break
    return chosen


def _latency(config: BenchmarkConfig, server: ServerClient, log: Callable[..., None]) -> dict[str, Any]:
    clips = latency_clips(config.testdata, config.latency_clips + 2, config.seed)
    for clip in clips[:2]:  # warm-up, not counted
        server.recognize_baidu(clip, "/server_api", 1537)
    times: list[float] = []
    failures: list[str] = []
    for clip in clips[2:]:
        answer = server.recognize_baidu(clip, "/server_api", 1537)
        times.append(answer.wall_s)
        if answer.failure:
            failures.append(answer.failure)
    result = {
        "clips": len(times),
        "clip_s": 5.0,
        "p50_s": round(percentile(times, 0.5), 3),
        "p90_s": round(percentile(times, 0.9), 3),
        "max_s": round(max(times), 3) if times else None,
        "failures": failures,
        "load_average": load_average(),
    }
    log(
        f"latency (/server_api dev_pid 1537, {len(times)} warm 5 s clips): p50 {result['p50_s']:.3f} s, "
        f"p90 {result['p90_s']:.3f} s, max {result['max_s']} s, {len(failures)} failed"
    )
    return result


def _load(config: BenchmarkConfig, server: ServerClient, log: Callable[..., None]) -> dict[str, Any]:
    """The /pro_api burst, then the SAMI burst (the heavier one), each measured against the RSS before it;
    a server started here is killed when its tree passes ``config.rss_limit_mb`` (the machine is shared:
    better a recorded failure than the kernel's OOM killer picking a process)."""
    if not MUSIC_FIXTURE.is_file():
        raise FileNotFoundError(f"the load part needs a checkout: {MUSIC_FIXTURE} is missing")
    music = decode_mono(MUSIC_FIXTURE)
    wav = sami_wav(music, config.sami_bytes)
    zh_clips = [c for s in ZH_SPEAKERS for c in load_clips(config.testdata)[s]]
    pro_clips = [decode_mono(c.path) for c in zh_clips[: config.pro_requests]]
    server.tag_sami(looped_wav(music, 2 * 1024 * 1024))  # warm-up: models loaded before the baseline
    server.recognize_baidu(pro_clips[0], "/pro_api", 80001)
    result: dict[str, Any] = {
        "sami_bytes": len(wav),
        "server_pid": server.pid,
        "rss_limit_mb": config.rss_limit_mb,
    }
    sampler = None
    if server.pid:
        sampler = RssSampler(server.pid, limit_mb=config.rss_limit_mb, on_limit=server.kill)
        result["rss_baseline_mb"] = sampler.current_mb()
        sampler.start()
    else:
        log("  no server process id: RSS not measured (give --server-pid with --url)")
    bursts: list[tuple[str, Callable[[Any], Any], list[Any]]] = [
        ("pro_api", lambda clip: server.recognize_baidu(clip, "/pro_api", 80001), list(pro_clips)),
        ("sami", lambda _: server.tag_sami(wav), list(range(config.sami_requests))),
    ]
    for name, call, items in bursts:
        what = f"{len(wav) / 1e6:.1f} MB WAV" if name == "sami" else "zh_dev clips"
        log(f"load: {len(items)} concurrent {name} requests ({what})")
        result[name] = concurrent(call, items).summary()
        log(f"  {result[name]}")
        if sampler is not None:
            peak = sampler.take_peak_mb()
            result[name]["rss_peak_mb"] = peak
            log(f"  server RSS peak {peak:.0f} MB (baseline {result['rss_baseline_mb']:.0f} MB)")
            if sampler.limit_hit is not None:
                result["rss_limit_hit_mb"] = sampler.limit_hit
                log(
                    f"  the server's RSS passed {config.rss_limit_mb:.0f} MB ({sampler.limit_hit:.0f} MB): "
                    "server stopped, load part ended"
                )
                break
    if sampler is not None:
        sampler.stop()
        if server.alive():
            log(f"  waiting {config.settle_s:.0f} s for the server to settle")
            time.sleep(config.settle_s)
            after = sampler.current_mb()
            baseline = result["rss_baseline_mb"]
            result["rss_after_mb"] = after
            result["rss_after_vs_baseline"] = round(after / baseline, 3) if baseline else None
            log(
                f"  server RSS (process tree): baseline {baseline:.0f} MB, {config.settle_s:.0f} s after "
                f"{after:.0f} MB ({result['rss_after_vs_baseline']}x baseline)"
            )
        else:
            result["server_gone"] = True
            log("  the server is gone (killed at the RSS limit, or it died): no RSS after")
    result["load_average"] = load_average()
    return result
