"""The long-file transcription job behind /v1/transcriptions, Volcano AUC and Qiniu.

Params (JSON):
  source: {"blob": key} or {"url": "https://..."}
  format: container hint, or "pcm" with pcm_rate / pcm_channels
  options: TranscribeOptions fields (language, itn, punctuation, hot_words, vocabulary)
  diarize: bool       speaker diarization of a single-channel recording
  num_speakers: int   when the caller knows it
  roles: bool         agent ("S") / customer ("C") from what each speaker says
  split_channels: bool  transcribe each channel apart (call-centre stereo)
  max_seconds: float  refuse longer audio
  callback: str       URL to POST the vendor's answer to when done (see ``vendor``)
  vendor: str         "native", "volcano" or "qiniu": who renders the callback body

The result is vendor-neutral; adapters render it in their wire format.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from tingyin.jobs.builtin import options_from_params
from tingyin.jobs.service import JobContext, job_handler, on_job_finished

DEFAULT_MAX_SECONDS = 5 * 3600.0


@contextmanager
def _audio_source(ctx: JobContext) -> Iterator[Any]:
    """The job's audio: its stored upload as a seekable stream, or its URL downloaded to scratch."""
    from tingyin.audio.fetch import fetch_to_file
    from tingyin.store.blobs import blob_store

    source = ctx.params["source"]
    if "blob" in source:
        with blob_store().open(source["blob"]) as stored:
            yield stored
        return
    # Fetched again on a retry: the file of a crashed attempt may be partial.
    target = ctx.work_dir / "download"
    fetch_to_file(source["url"], target)
    yield target


@job_handler("transcription")
def transcription_job(ctx: JobContext) -> dict[str, Any]:
    from tingyin import audio
    from tingyin.speech import transcribe
    from tingyin.speech.recognize import NoSpeech
    from tingyin.speech.types import utterance_to_dict

    params = ctx.params
    with _audio_source(ctx) as source:
        ctx.progress(0.02, "audio ready")
        decoded = audio.decode(
            source,
            format=params.get("format"),
            pcm_rate=int(params.get("pcm_rate") or 16000),
            pcm_channels=int(params.get("pcm_channels") or 1),
            mono=not params.get("split_channels", False),
            max_seconds=float(params.get("max_seconds") or DEFAULT_MAX_SECONDS),
        )
    options = options_from_params(params.get("options", {}))
    channels = [decoded.channel(i) for i in range(decoded.channels)]
    if len(channels) == 2 and np.allclose(channels[0], channels[1], atol=1e-4):
        channels = channels[:1]  # "stereo" with the same signal twice is mono
    diarize = bool(params.get("diarize") or params.get("roles")) and len(channels) == 1
    share = 0.9 / len(channels)
    utterances: list[Any] = []
    language = ""
    for index, samples in enumerate(channels):
        base = 0.05 + index * share
        speech_share = share * (0.75 if diarize else 1.0)

        def report(fraction: float, start: float = base, width: float = speech_share) -> None:
            ctx.progress(start + width * fraction)

        transcript = transcribe(samples, options, progress=report)
        language = language or transcript.language
        found = [u._replace(channel=index) for u in transcript.utterances]
        if diarize and found:
            from tingyin.speech.diarization import assign_speakers
            from tingyin.speech.diarization import diarize as find_turns

            ctx.progress(base + speech_share, "diarization")
            turns = find_turns(samples, num_speakers=params.get("num_speakers"))
            found = assign_speakers(found, turns)
        elif len(channels) > 1:
            found = [u._replace(speaker=index + 1) for u in found]
        utterances.extend(found)
    if not any(u.text.strip() for u in utterances):
        raise NoSpeech("no speech was recognised in the audio")
    utterances.sort(key=lambda u: (u.start_ms, u.channel))
    roles: dict[int, str] = {}
    if params.get("roles"):
        from tingyin.speech.roles import assign_roles

        roles = assign_roles(utterances)
    ctx.progress(0.98, "rendering")
    return {
        "duration_ms": round(decoded.duration_s * 1000),
        "language": language,
        "channels": len(channels),
        "speakers": sorted({u.speaker for u in utterances if u.speaker is not None}),
        "roles": {str(k): v for k, v in roles.items()},
        "utterances": [
            {**utterance_to_dict(u), "role": roles.get(u.speaker) if u.speaker is not None else None}
            for u in utterances
        ],
        "text": "".join(u.text for u in utterances)
        if language.startswith(("zh", "yue"))
        else " ".join(u.text for u in utterances),
    }


@on_job_finished("transcription")
def deliver_callback(job_id: str) -> None:
    """POST the vendor's answer to the job's callback URL (retried with backoff by the hook task)."""
    import httpx

    from tingyin.audio.fetch import UrlPolicy
    from tingyin.jobs.service import get_job

    job = get_job(job_id)
    url = job.params.get("callback")
    if not url:
        return
    UrlPolicy.from_settings().check(url)
    vendor = job.params.get("vendor", "native")
    if vendor == "volcano":
        from tingyin.api.compat.volcano import query_answer

        body: dict[str, Any] = query_answer(job)
    else:
        body = job.as_dict()
    response = httpx.post(url, json=body, timeout=30)
    if response.status_code >= 300:
        raise RuntimeError(f"callback answered HTTP {response.status_code}")
