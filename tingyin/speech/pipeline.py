"""The recording pipeline every speech API and the CLI call: channels → recognition → speakers → roles.

``transcribe_recording(audio, options, recognizer)`` turns decoded audio into a ``RecordingResult``: each
channel
(call-centre stereo) or the mix is recognised; a single-channel recording can be diarized, and utterances are
split where the speaker changes (an utterance never spans two speakers); roles (agent/customer) are found from
what each speaker says. Text is joined in one way for every caller. The result is vendor-neutral; adapters
render it in their wire format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import Field, model_validator

from tingyin.audio import DecodedAudio
from tingyin.errors import InvalidRequest
from tingyin.metrics import process_metrics
from tingyin.speech.chunking import SpeechMap
from tingyin.speech.errors import NoSpeech
from tingyin.speech.options import DecodeOptions
from tingyin.speech.postprocess import join_texts
from tingyin.speech.recognizer import Recognizer
from tingyin.speech.types import Utterance, UtteranceRecord
from tingyin.validation import FrozenModel

if TYPE_CHECKING:
    from tingyin.speech.diarization import SpeakerTurn

ProgressCallback = Callable[[float, str | None], None]
MAX_SPEAKERS = 32
DIARIZATION_MODEL = "speaker-dvector"  # the speaker encoder's model name, for the audio-seconds metric


class RecordingOptions(FrozenModel):
    """What to make of a recording beyond the words: channels, speakers, roles."""

    decode: DecodeOptions = DecodeOptions()
    split_channels: bool = Field(
        default=False, description="transcribe each channel apart (call-centre stereo)"
    )
    diarize: bool = Field(default=False, description="find who speaks when in a single-channel recording")
    num_speakers: Annotated[int, Field(ge=1, le=MAX_SPEAKERS)] | None = None
    min_speakers: Annotated[int, Field(ge=1, le=MAX_SPEAKERS)] = 1
    max_speakers: Annotated[int, Field(ge=1, le=MAX_SPEAKERS)] = 8
    roles: bool = Field(default=False, description="agent (S) / customer (C) per speaker; implies diarize")
    require_speech: bool = Field(default=True, description="no speech at all is an error (NoSpeech)")

    @model_validator(mode="after")
    def _speakers(self) -> RecordingOptions:
        if self.num_speakers is not None and self.num_speakers > self.max_speakers:
            raise ValueError("num_speakers is larger than max_speakers")
        if self.min_speakers > self.max_speakers:
            raise ValueError("min_speakers is larger than max_speakers")
        if self.num_speakers is not None and self.num_speakers < self.min_speakers:
            raise ValueError("num_speakers is smaller than min_speakers")
        return self

    @property
    def wants_speakers(self) -> bool:
        """Diarization asked for, directly or by asking for roles or a speaker count."""
        return self.diarize or self.roles or self.num_speakers is not None


class RecordingResult(FrozenModel):
    """A recognised recording: utterances of every channel in time order, with speakers and roles."""

    duration_ms: int
    language: str
    channels: int
    speakers: list[int]
    roles: dict[int, str]
    utterances: list[UtteranceRecord]
    text: str
    options: RecordingOptions

    def utterance_list(self) -> list[Utterance]:
        return [u.utterance() for u in self.utterances]

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["roles"] = {str(k): v for k, v in self.roles.items()}
        return data


def transcribe_recording(
    audio: DecodedAudio,
    options: RecordingOptions,
    recognizer: Recognizer,
    *,
    progress: ProgressCallback | None = None,
    deadline: float | None = None,
) -> RecordingResult:
    """Recognise ``audio`` as ``options`` ask. Raises ``NoSpeech`` when nothing was heard and
    ``options.require_speech``; ``RecognitionTimeout`` past ``deadline`` (``time.monotonic()``)."""
    channels = _channels(audio, options.split_channels)
    diarize = options.wants_speakers and len(channels) == 1
    share = 1.0 / len(channels)
    utterances: list[Utterance] = []
    languages: list[str] = []
    for index, samples in enumerate(channels):
        base = index * share
        speech_share = share * (0.75 if diarize else 1.0)

        def report(fraction: float, start: float = base, width: float = speech_share) -> None:
            if progress:
                progress(start + width * fraction, None)

        speech = recognizer.speech_map(samples)
        transcript = recognizer.transcribe(
            samples, options.decode, progress=report, deadline=deadline, speech=speech
        )
        if transcript.language:
            languages.append(transcript.language)
        found = [u._replace(channel=index) for u in transcript.utterances]
        if diarize and found:
            if progress:
                progress(base + speech_share, "diarization")
            found = _with_speakers(samples, found, options, speech)
        elif len(channels) > 1:
            found = [u._replace(speaker=index + 1) for u in found]
        utterances.extend(found)
    if options.require_speech and not any(u.text.strip() for u in utterances):
        raise NoSpeech("no speech was recognised in the audio")
    utterances.sort(key=lambda u: (u.start_ms, u.channel))
    roles: dict[int, str] = {}
    if options.roles:
        from tingyin.speech.roles import assign_roles

        roles = assign_roles(utterances)
        utterances = [
            u._replace(role=roles.get(u.speaker)) if u.speaker is not None else u for u in utterances
        ]
    language = languages[0] if languages else ""
    process_metrics().audio_processed(recognizer.name, audio.duration_s)
    return RecordingResult(
        duration_ms=round(audio.duration_s * 1000),
        language=language,
        channels=len(channels),
        speakers=sorted({u.speaker for u in utterances if u.speaker is not None}),
        roles=roles,
        utterances=[UtteranceRecord.of(u) for u in utterances],
        text=join_texts([u.text for u in utterances]),
        options=options,
    )


def _channels(audio: DecodedAudio, split: bool) -> list[np.ndarray]:
    if not split or audio.channels == 1:
        return [audio.mono()]
    channels = [audio.channel(i) for i in range(audio.channels)]
    if len(channels) == 2 and np.allclose(channels[0], channels[1], atol=1e-4):
        return channels[:1]  # "stereo" with the same signal twice is mono
    return channels


def _with_speakers(
    samples: np.ndarray, utterances: list[Utterance], options: RecordingOptions, speech: SpeechMap
) -> list[Utterance]:
    from tingyin.speech.diarization import assign_speakers

    # The recogniser's speech map, unless it skipped the VAD on audio too short to chunk.
    probabilities = speech.probabilities if len(speech.probabilities) else None
    turns = speaker_turns(samples, options, probabilities)
    if not turns:
        # Too little speech for the diarizer to find turns in: whoever spoke is the one speaker. A caller
        # that asked for speakers gets one on every utterance (Volcano clients index additions.speaker).
        return [u._replace(speaker=1) for u in utterances]
    return assign_speakers(utterances, turns)


def speaker_turns(
    samples: np.ndarray, options: RecordingOptions, speech_probabilities: np.ndarray | None = None
) -> list[SpeakerTurn]:
    """Who speaks when in mono 16 kHz ``samples``, with the speaker counts ``options`` give."""
    from tingyin.speech.diarization import diarize

    return diarize(
        samples,
        num_speakers=options.num_speakers,
        min_speakers=options.min_speakers,
        max_speakers=options.max_speakers,
        speech_probabilities=speech_probabilities,
    )


def diarize_recording(audio: DecodedAudio, options: RecordingOptions) -> list[SpeakerTurn]:
    """Speaker turns of a recording without recognising its words (the channels are mixed)."""
    turns = speaker_turns(audio.mono(), options)
    process_metrics().audio_processed(DIARIZATION_MODEL, audio.duration_s)
    return turns


def stream_utterances(
    audio: DecodedAudio,
    options: RecordingOptions,
    recognizer: Recognizer,
    *,
    progress: Callable[[float], None] | None = None,
    deadline: float | None = None,
) -> Iterator[Utterance]:
    """The utterances of a recording's mix as they are decoded, for callers that show text as it comes.
    Speakers and channels need the whole recording first, so they are refused here."""
    if options.wants_speakers or options.split_channels:
        raise InvalidRequest("speakers and channels need the whole recording and cannot be streamed")
    samples = audio.mono()
    yield from recognizer.iter_utterances(samples, options.decode, progress=progress, deadline=deadline)
    process_metrics().audio_processed(recognizer.name, audio.duration_s)


__all__ = [
    "RecordingOptions",
    "RecordingResult",
    "diarize_recording",
    "speaker_turns",
    "stream_utterances",
    "transcribe_recording",
]
