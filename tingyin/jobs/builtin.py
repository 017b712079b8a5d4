"""Job kinds of the core: transcription of a stored audio blob (native ``/v1/transcriptions``)."""

from __future__ import annotations

from typing import Any

from tingyin.jobs.service import JobContext, job_handler


def options_from_params(raw: dict[str, Any]) -> Any:
    from tingyin.speech.types import HotWord, TranscribeOptions

    return TranscribeOptions(
        language=raw.get("language", "auto"),
        itn=bool(raw.get("itn", True)),
        punctuation=bool(raw.get("punctuation", True)),
        hot_words=tuple(HotWord(h["text"], float(h.get("weight", 5.0))) for h in raw.get("hot_words", [])),
        vocabulary=tuple(raw.get("vocabulary", [])),
        word_timestamps=bool(raw.get("word_timestamps", True)),
        model=raw.get("model"),
    )


@job_handler("transcribe")
def transcribe_job(ctx: JobContext) -> dict[str, Any]:
    """Params: ``blob`` (blob key), ``format`` (optional), ``options`` (TranscribeOptions fields)."""
    from tingyin import audio
    from tingyin.speech import transcribe
    from tingyin.speech.types import transcript_to_dict
    from tingyin.store.blobs import blob_store

    with blob_store().open(ctx.params["blob"]) as stored:
        decoded = audio.decode(stored, format=ctx.params.get("format"))
    ctx.progress(0.02, "decoded")
    transcript = transcribe(
        decoded.mono(),
        options_from_params(ctx.params.get("options", {})),
        progress=lambda f: ctx.progress(0.02 + 0.97 * f),
    )
    return transcript_to_dict(transcript)
