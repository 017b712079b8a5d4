"""One loaded Whisper model (CTranslate2) and every call the speech core makes on it.

``WhisperModelRunner`` owns the model, the slots that keep its calls from oversubscribing the cores, and the
caches that depend on the model (tokenizers, the Traditional-only token list). Nothing here is global: the
``Recognizer`` that owns a runner owns all of it, and two models never share a cache by accident.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np

from tingyin.speech import textnorm
from tingyin.speech.chunking import SAMPLE_RATE, Chunk

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

T = TypeVar("T")
FRAMES_PER_SECOND = 100
SAMPLES_PER_FRAME = SAMPLE_RATE // FRAMES_PER_SECOND
FULL_WINDOW_FRAMES = 3000
ENCODER_FRAME_S = 0.02  # one encoder output frame (two mel frames)
TEXT_POSITIONS = 448  # Whisper's decoder context: prompt and generated tokens together
# Model calls that run at once, each on its own CTranslate2 worker with its share of the threads. On 2 cores,
# two single-threaded workers decoding two batches at once transcribed the 601 s benchmark recording in
# 15.6-16.0 s against 18.2-18.5 s for one worker on two threads (the same text): CTranslate2's threads wait
# for each other at every small step of the decoder, and one batch's Python work (the second pass) leaves
# a core to the other batch's model calls. A request whose chunks make one batch cannot use two workers: its
# calls run one after another. They go to a copy of the model on every thread when no other call runs
# (``WhisperModelRunner.lone_request``): a 5 s clip's p50 through the Baidu API was 0.29 s on one thread
# against 0.22 s on two (Intel, AMX); on the AMD box of 2026-11-29 0.48 s on one thread, 0.34 s with the
# copy, and the 601 s recording as fast as before (docs/speech.md).
CONCURRENT_CALLS = 2


class Hypothesis(NamedTuple):
    """One of the beam's n-best hypotheses: text tokens (no special tokens), text, total log-probability."""

    tokens: list[int]
    text: str
    logprob: float
    complete: bool = True  # False: the decoder ran into the chunk's token cap (a runaway, mostly a loop)


class Generated(NamedTuple):
    """The beam's result for one chunk."""

    hypotheses: list[Hypothesis]  # best first
    no_speech_prob: float
    average_logprob: float  # of the best hypothesis, per token
    temperature: float = 0.0  # 0: beam search; otherwise the sampling temperature
    capped: bool = False  # the beam's best hypothesis ran into the token cap instead of ending


class ComputeSlots:
    """At most ``size`` model calls at once (as many as the model has CTranslate2 workers, so the cores are
    never oversubscribed); ``every_slot()`` waits until no call runs and keeps them all, for work that must
    have every core to itself; ``every_slot_if_free()`` takes them all only if none is taken now."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = threading.Semaphore(size)
        self._claiming_all = threading.Lock()  # one claimant of every slot at a time: no two hold half each
        self._held_by_one = False

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._free:
            yield

    @contextmanager
    def every_slot(self) -> Iterator[None]:
        with self._claiming_all:
            for _ in range(self.size):
                self._free.acquire()
            self._held_by_one = True
            try:
                yield
            finally:
                self._held_by_one = False
                for _ in range(self.size):
                    self._free.release()

    @contextmanager
    def every_slot_if_free(self) -> Iterator[bool]:
        """Every slot kept for the block (True) if no call runs and nobody claims them all now; otherwise
        none (False), without waiting."""
        taken = 0
        claimed = self._claiming_all.acquire(blocking=False)
        try:
            if claimed:
                while taken < self.size and self._free.acquire(blocking=False):
                    taken += 1
                if taken < self.size:  # a call runs: give back what was taken, use no slot
                    for _ in range(taken):
                        self._free.release()
                    taken = 0
            if taken:
                self._held_by_one = True
            yield taken > 0
        finally:
            if taken:
                self._held_by_one = False
                for _ in range(taken):
                    self._free.release()
            if claimed:
                self._claiming_all.release()

    def held_by_one(self) -> bool:
        """Whether some work holds every slot now."""
        return self._held_by_one


class WhisperModelRunner:
    """A faster-whisper ``WhisperModel`` whose calls take a compute slot, and per-model caches.

    ``whole_machine`` is an optional second copy of the CTranslate2 model on every thread, for the calls of a
    lone request (``lone_request``) while no other call runs."""

    def __init__(
        self, model: WhisperModel, name: str, *, workers: int = 1, whole_machine: Any | None = None
    ) -> None:
        self.model = model
        self.name = name
        self.slots = ComputeSlots(workers)
        self._whole_machine = whole_machine
        self._requests = threading.local()  # per decoding thread: whether its request is a lone one
        self._tokenizers: dict[tuple[str, str], Tokenizer] = {}
        self._traditional: list[int] | None = None
        self._cache_lock = threading.Lock()

    @property
    def workers(self) -> int:
        """Model calls that can run at once."""
        return self.slots.size

    @classmethod
    def load(
        cls, path: Path, *, name: str, compute_type: str, cpu_threads: int, lone_request_copy: bool = True
    ) -> WhisperModelRunner:
        """The model on ``cpu_threads`` threads: ``CONCURRENT_CALLS`` workers sharing them (one worker when
        there is one thread), and with ``lone_request_copy`` a copy on all of them for lone requests."""
        import ctranslate2
        from faster_whisper import WhisperModel

        workers = CONCURRENT_CALLS if cpu_threads >= CONCURRENT_CALLS else 1
        model = built_in_passing_thread(
            lambda: WhisperModel(
                str(path),
                device="cpu",
                compute_type=compute_type,
                cpu_threads=cpu_threads // workers,
                num_workers=workers,
            )
        )
        whole_machine = None
        if workers > 1 and lone_request_copy:
            whole_machine = built_in_passing_thread(
                lambda: ctranslate2.models.Whisper(
                    str(path), device="cpu", compute_type=compute_type, intra_threads=cpu_threads
                )
            )
        return cls(model, name, workers=workers, whole_machine=whole_machine)

    # ------------------------------------------------------------------------------------ vocabulary

    @property
    def multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)

    def languages(self) -> list[str]:
        """The language codes this model can answer (whisper-base: 99; large-v3 adds yue)."""
        codes = list(self.model.supported_languages)
        return codes[: int(getattr(self.model.model, "num_languages", len(codes)))]

    def whisper_language(self, language: str) -> str:
        """Whisper's language token for our code (``yue`` falls back to ``zh`` on models without it)."""
        if language == "yue" and self.model.hf_tokenizer.token_to_id("<|yue|>") is None:
            return "zh"
        return language

    def tokenizer(self, language: str, task: str = "transcribe") -> Tokenizer:
        """Whisper's tokenizer for speech in ``language``; its start sequence names the task (transcribe, or
        translate to English)."""
        from faster_whisper.tokenizer import Tokenizer

        key = (self.whisper_language(language), task)
        with self._cache_lock:
            if key not in self._tokenizers:
                self._tokenizers[key] = Tokenizer(
                    self.model.hf_tokenizer, self.multilingual, task=task, language=key[0]
                )
            return self._tokenizers[key]

    def traditional_tokens(self) -> list[int]:
        """Tokens that are whole Traditional-only characters or words. Suppressing them for Mandarin keeps
        the beam from spending hypotheses on the same words in the other script."""
        with self._cache_lock:
            if self._traditional is None:
                tokenizer = self.model.hf_tokenizer
                found = []
                for token in range(tokenizer.get_vocab_size()):
                    piece = tokenizer.decode([token])
                    if (
                        piece
                        and "\ufffd" not in piece
                        and textnorm.has_cjk(piece)
                        and textnorm.to_simplified(piece) != piece
                    ):
                        found.append(token)
                self._traditional = found
            return self._traditional

    # ---------------------------------------------------------------------------------- model calls

    @contextmanager
    def lone_request(self) -> Iterator[None]:
        """The model calls this thread makes in the block are those of a request that cannot use the
        workers side by side (its chunks are one batch): each runs on the copy on every thread when no
        other call runs at that moment, on one worker otherwise."""
        outer = getattr(self._requests, "lone", False)  # a block inside another leaves it as it found it
        self._requests.lone = True
        try:
            yield
        finally:
            self._requests.lone = outer

    @contextmanager
    def _call(self) -> Iterator[Any]:
        """The CTranslate2 model for one call, its slots held for the block."""
        if self._whole_machine is not None and getattr(self._requests, "lone", False):
            with self.slots.every_slot_if_free() as alone:
                if alone:
                    yield self._whole_machine
                    return
        with self.slots.slot():
            yield self.model.model

    @property
    def mel_bins(self) -> int:
        return int(self.model.feature_extractor.mel_filters.shape[0])

    def features(self, audio: np.ndarray, chunks: Sequence[Chunk], frames: int) -> np.ndarray:
        """Log-mel features of a batch of chunks, each padded with silence to ``frames`` frames."""
        samples = frames * SAMPLES_PER_FRAME
        batch = np.zeros((len(chunks), self.mel_bins, frames), dtype=np.float32)
        for i, chunk in enumerate(chunks):
            piece = np.zeros(samples, dtype=np.float32)
            clip = audio[chunk.start : chunk.end][:samples]
            piece[: len(clip)] = clip
            mel = self.model.feature_extractor(piece, padding=0)
            batch[i, :, : min(frames, mel.shape[-1])] = mel[:, :frames]
        return batch

    def encode(self, features: np.ndarray) -> np.ndarray:
        """Encoder output ``[batch, frames // 2, d_model]`` on the host. One item at a time: on CPU,
        CTranslate2's encoder costs more per item in a batch."""
        import ctranslate2

        with self._call() as model:
            parts = [
                np.asarray(model.encode(ctranslate2.StorageView.from_array(features[i : i + 1]), to_cpu=True))
                for i in range(features.shape[0])
            ]
        return np.ascontiguousarray(np.concatenate(parts))

    def detect_languages(self, encoded: np.ndarray, allowed: Sequence[str] | None) -> list[tuple[str, float]]:
        """Per batch item: the most likely language (restricted to ``allowed``) and its probability."""
        return [ranking[0] for ranking in self.language_rankings(encoded, allowed)]

    def language_rankings(
        self, encoded: np.ndarray, allowed: Sequence[str] | None = None
    ) -> list[list[tuple[str, float]]]:
        """Per batch item: every language with its probability, best first (renormalised over ``allowed``)."""
        import ctranslate2

        with self._call() as model:
            results = model.detect_language(ctranslate2.StorageView.from_array(encoded))
        rankings = []
        for ranking in results:
            options = [(token[2:-2], float(prob)) for token, prob in ranking]
            if allowed:
                options = [(lang, p) for lang, p in options if lang in allowed] or [(allowed[0], 0.0)]
                total = sum(p for _, p in options)
                options = [(lang, p / total if total else 0.0) for lang, p in options]
            rankings.append(options)
        return rankings

    def generate(
        self,
        encoded: np.ndarray,
        prompts: list[list[int]],
        *,
        beam_size: int,
        max_tokens: list[int],
        suppress: list[int],
        tokenizers: list[Tokenizer],
        temperature: float = 0.0,
        no_repeat_ngram: int = 0,
    ) -> list[Generated]:
        """Beam search with ``num_hypotheses = beam_size`` (at ``temperature`` > 0: that many samples, best
        first); prompts of one batch share one length. ``no_repeat_ngram`` > 0: no hypothesis writes any
        that many tokens twice (the loop fallback)."""
        import ctranslate2

        total, generated = _lengths(max(max_tokens), len(prompts[0]))
        search: dict[str, Any] = {"beam_size": beam_size}
        if temperature > 0:
            search = {"beam_size": 1, "sampling_topk": 0, "sampling_temperature": temperature}
        with self._call() as model:
            results = model.generate(
                ctranslate2.StorageView.from_array(encoded),
                prompts,
                num_hypotheses=beam_size,
                max_length=total,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=suppress,
                no_repeat_ngram_size=no_repeat_ngram,
                **search,
            )
        out = []
        for result, wanted, tokenizer in zip(results, max_tokens, tokenizers, strict=True):
            limit = min(wanted, generated)
            ranked = list(zip(result.sequences_ids, result.scores, strict=True))
            if temperature > 0:  # beam results come best first; samples in no order
                ranked.sort(key=lambda pair: -pair[1])
            hypotheses = [_hypothesis(sequence, score, limit, tokenizer) for sequence, score in ranked]
            average = float(ranked[0][1]) if ranked else 0.0
            capped = bool(hypotheses) and not hypotheses[0].complete
            out.append(Generated(hypotheses, float(result.no_speech_prob), average, temperature, capped))
        return out

    def align(
        self,
        encoded: np.ndarray,
        start_sequence: list[int],
        token_lists: list[list[int]],
        num_frames: list[int],
    ) -> list[Any]:
        """Cross-attention alignments (and per-token probabilities) of ``token_lists`` against the audio."""
        import ctranslate2

        with self._call() as model:
            return list(
                model.align(
                    ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded)),
                    start_sequence,
                    token_lists,
                    num_frames,
                    median_filter_width=7,
                )
            )


def built_in_passing_thread(build: Callable[[], T]) -> T:
    """``build()`` (a CTranslate2 model) run in a thread of its own that ends at once, its exception
    re-raised here. A CTranslate2 Whisper model built in a thread that lives on (the CLI's main thread, a
    job's or a request's worker thread) ran every later beam search about twice as slowly: a 5 s clip's took
    440 ms instead of 236 ms on 2 cores (docs/speech.md). Measured, not explained: the OpenMP runtime's
    state in the building thread is the likely cause."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-build") as builder:
        built = builder.submit(build)
    return built.result()  # the pool's thread has ended: leaving the block joined it


def _lengths(new_tokens: int, prompt_tokens: int) -> tuple[int, int]:
    """The ``max_length`` that lets CTranslate2's Whisper generate ``new_tokens`` after a prompt, and how many
    it then generates at most. It stops at min(max_length / 2, max_length - prompt) (the 224-token sampling
    limit of OpenAI's Whisper, applied to whatever max_length is given), so passing prompt + new tokens, as
    faster-whisper does, allowed only about half of them. At most Whisper's 448 positions."""
    total = min(TEXT_POSITIONS, max(2 * new_tokens, new_tokens + prompt_tokens))
    return total, min(total // 2, total - prompt_tokens)


def _hypothesis(sequence: list[int], score: float, limit: int, tokenizer: Tokenizer) -> Hypothesis:
    """A generated ``sequence`` as a hypothesis: its text tokens within ``limit``, its total log-probability
    (CTranslate2's ``score`` is the average over tokens, length penalty 1), and whether it ended before the
    limit."""
    tokens = [t for t in sequence[:limit] if t < tokenizer.eot]
    return Hypothesis(tokens, tokenizer.decode(tokens), score * max(1, len(sequence)), len(sequence) < limit)


def window_frames(chunks: Sequence[Chunk], *, full_window: bool, pad_s: float) -> int:
    """Mel frames of the encoder window for a batch: the longest chunk plus ``pad_s`` of silence, rounded up
    to whole seconds (less padding makes Whisper loop), or Whisper's full 30 s window."""
    if full_window:
        return FULL_WINDOW_FRAMES
    longest = max(c.end - c.start for c in chunks)
    seconds = math.ceil(longest / SAMPLE_RATE + pad_s)
    return min(FULL_WINDOW_FRAMES, max(2, seconds) * FRAMES_PER_SECOND)


def speech_frames(chunk: Chunk, frames: int) -> int:
    """Mel frames of a chunk's audio inside a window of ``frames``."""
    return min(frames, math.ceil((chunk.end - chunk.start) / SAMPLES_PER_FRAME))


__all__ = [
    "ENCODER_FRAME_S",
    "Generated",
    "Hypothesis",
    "WhisperModelRunner",
    "built_in_passing_thread",
    "speech_frames",
    "window_frames",
]
