"""Where the speech is, and how it is cut into pieces the decoder handles well.

Silero VAD scores every 32 ms frame once per recording (``SpeechMap``); speech regions come from those
probabilities (also the weaker ones Silero gives speech on a telephone line or under noise, where they lie
apart from the clear ones), and the same map later tells the coverage check whether the decoder left speech
without text.
Regions closer than ``CHUNK_GAP_S`` merge into chunks of up to ``TARGET_CHUNK_S``: the encoder costs more per
second on longer inputs, and Whisper is likelier to stop after the first sentence of a long chunk. A region
longer than ``MAX_CHUNK_S`` (no pause found by the VAD) is split at its least speech-like frame.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from tingyin.speech.vad import FRAME_SAMPLES, SileroVad, regions_from_probabilities

SAMPLE_RATE = 16000
MAX_CHUNK_S = 12.0
TARGET_CHUNK_S = 4.0  # short chunks: Whisper skips less inside them (docs/speech.md, speech map and chunks)
CHUNK_GAP_S = 1.0  # regions this close merge up to TARGET_CHUNK_S ...
TINY_GAP_S = 0.3  # ... and regions this close always merge (up to MAX_CHUNK_S): no real pause
MIN_AUDIO_S = 0.1
# Silero settings for recognition: generous padding keeps word onsets and endings inside the region.
VAD_THRESHOLD = 0.5
# Speech Silero is unsure of (a short word on a telephone line, speech under noise peaks at 0.35-0.5):
# decoded too where it lies apart from the regions found at VAD_THRESHOLD, which keep their extent.
WEAK_VAD_THRESHOLD = 0.35
VAD_MIN_SPEECH_MS = 200
VAD_MIN_SILENCE_MS = 400
VAD_PAD_MS = 250
ONSET_PAUSE_S = 0.5  # below the VAD threshold this long is a pause between phrases, not a slow syllable
SPLIT_MARGIN_S = 2.0  # a forced split keeps at least this much on either side


class Chunk(NamedTuple):
    """A stretch of audio decoded as one unit; ``speech`` lists the VAD regions inside it (samples)."""

    start: int
    end: int
    speech: list[tuple[int, int]]

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE

    @property
    def speech_seconds(self) -> float:
        return sum(end - start for start, end in self.speech) / SAMPLE_RATE


class SpeechMap:
    """Silero's speech probability for each 32 ms frame of a recording."""

    frame_s = FRAME_SAMPLES / SAMPLE_RATE

    def __init__(self, probabilities: np.ndarray, samples: int) -> None:
        self.probabilities = np.asarray(probabilities, dtype=np.float32)
        self.samples = samples

    @classmethod
    def of(cls, vad: SileroVad, audio: np.ndarray) -> SpeechMap:
        if len(audio) < SAMPLE_RATE * MIN_AUDIO_S:
            return cls(np.zeros(0, dtype=np.float32), len(audio))
        return cls(vad.probabilities(audio), len(audio))

    def regions(self) -> list[tuple[int, int]]:
        """Speech regions in samples, none longer than ``MAX_CHUNK_S``: those found at ``VAD_THRESHOLD``,
        and those found at ``WEAK_VAD_THRESHOLD`` that overlap none of them."""
        strong = self._regions_ms(VAD_THRESHOLD)
        strong_ends = [end for _, end in strong]  # sorted: the regions are in order and do not overlap

        def apart(start: float, end: float) -> bool:
            # Only the first clear region ending after ``start`` can overlap (a bisection, not a scan of
            # every region for each weak one: hours of audio hold thousands of each).
            k = bisect_right(strong_ends, start)
            return k == len(strong) or strong[k][0] >= end

        weak = [(start, end) for start, end in self._regions_ms(WEAK_VAD_THRESHOLD) if apart(start, end)]
        regions = []
        for start_ms, end_ms in sorted(strong + weak):
            start = min(self.samples, round(start_ms * SAMPLE_RATE / 1000))
            end = min(self.samples, round(end_ms * SAMPLE_RATE / 1000))
            if end > start:
                regions.extend(self._split(start, end))
        return regions

    def _regions_ms(self, threshold: float) -> list[tuple[float, float]]:
        return regions_from_probabilities(
            self.probabilities,
            threshold=threshold,
            min_silence_ms=VAD_MIN_SILENCE_MS,
            min_speech_ms=VAD_MIN_SPEECH_MS,
            pad_ms=VAD_PAD_MS,
            frame_ms=self.frame_s * 1000,
        )

    def speech_seconds(self, start_s: float, end_s: float) -> float:
        """Seconds of frames at or above the VAD threshold between ``start_s`` and ``end_s``."""
        _, heard = self._speech_frames(start_s, end_s)
        return float(np.count_nonzero(heard)) * self.frame_s

    def last_onset(self, start_s: float, end_s: float) -> float | None:
        """The start (seconds) of the last stretch of speech that begins in the span after a real pause
        (at least ``ONSET_PAUSE_S`` below the VAD threshold: shorter dips happen inside phrases), or of
        its first frame at or above the threshold. None if the span has no speech."""
        first, heard = self._speech_frames(start_s, end_s)
        hits = np.flatnonzero(heard)
        if not hits.size:
            return None
        after_pause = hits[1:][np.diff(hits) > round(ONSET_PAUSE_S / self.frame_s)]
        onset = after_pause[-1] if after_pause.size else hits[0]
        return (first + int(onset)) * self.frame_s

    def islands(self, start_s: float, end_s: float) -> list[tuple[float, float]]:
        """Stretches of speech (seconds) between ``start_s`` and ``end_s`` set apart by real pauses (at least
        ``ONSET_PAUSE_S`` below the VAD threshold): a phrase, or a word said on its own."""
        first, heard = self._speech_frames(start_s, end_s)
        hits = np.flatnonzero(heard)
        if not hits.size:
            return []
        breaks = np.flatnonzero(np.diff(hits) > round(ONSET_PAUSE_S / self.frame_s))
        starts = [hits[0], *hits[breaks + 1]]
        ends = [*hits[breaks], hits[-1]]
        return [
            ((first + int(a)) * self.frame_s, (first + int(b) + 1) * self.frame_s)
            for a, b in zip(starts, ends, strict=True)
        ]

    def _speech_frames(self, start_s: float, end_s: float) -> tuple[int, np.ndarray]:
        """The index of the span's first frame, and which of its frames are at or above the threshold."""
        first = max(0, int(start_s / self.frame_s))
        last = max(first, min(len(self.probabilities), int(np.ceil(end_s / self.frame_s))))
        return first, self.probabilities[first:last] >= VAD_THRESHOLD

    def _split(self, start: int, end: int) -> list[tuple[int, int]]:
        limit = int(MAX_CHUNK_S * SAMPLE_RATE)
        if end - start <= limit:
            return [(start, end)]
        margin = min(int(SPLIT_MARGIN_S * SAMPLE_RATE), (end - start) // 4)
        first = (start + margin) // FRAME_SAMPLES
        last = max(first + 1, (min(end - margin, start + limit)) // FRAME_SAMPLES)
        window = self.probabilities[first:last]
        if window.size == 0:
            cut = start + limit
        else:
            # The least speech-like stretch (smoothed over ~100 ms) is the likeliest pause between words.
            smooth = np.convolve(window, np.ones(3) / 3, mode="same")
            cut = (first + int(np.argmin(smooth))) * FRAME_SAMPLES
            cut = min(max(cut, start + 1), end - 1)
        return [*self._split(start, cut), *self._split(cut, end)]


def make_chunks(regions: Sequence[tuple[int, int]]) -> list[Chunk]:
    """Group speech regions into chunks: neighbours closer than CHUNK_GAP_S merge up to TARGET_CHUNK_S,
    and neighbours closer than TINY_GAP_S (the VAD's padding nearly touches) up to MAX_CHUNK_S."""
    chunks: list[Chunk] = []
    limit = int(MAX_CHUNK_S * SAMPLE_RATE)
    target = int(TARGET_CHUNK_S * SAMPLE_RATE)
    gap = int(CHUNK_GAP_S * SAMPLE_RATE)
    tiny = int(TINY_GAP_S * SAMPLE_RATE)
    for start, end in regions:
        while end - start > limit:  # callers pass split regions; this only guards the contract
            chunks.append(Chunk(start, start + limit, [(start, start + limit)]))
            start += limit
        if chunks:
            last = chunks[-1]
            pause = start - last.end
            fits = end - last.start <= target
            joined = pause <= tiny and end - last.start <= limit
            if (pause <= gap and fits) or joined:
                chunks[-1] = Chunk(last.start, end, [*last.speech, (start, end)])
                continue
        chunks.append(Chunk(start, end, [(start, end)]))
    return chunks


__all__ = ["MAX_CHUNK_S", "SAMPLE_RATE", "Chunk", "SpeechMap", "make_chunks"]
