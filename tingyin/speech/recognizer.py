"""The speech recognizer every ASR path calls: VAD → chunks → batched Whisper decoding → utterances.

A ``Recognizer`` is built by a factory per model family (``Recognizer.from_whisper``) and owns everything that
belongs to its model: the model runner and its lock, the VAD session, the Mandarin language model or the
unigram lexicon, and the decoder that combines them. Its methods only orchestrate (see ``chunking``,
``decoding``, ``rescoring``, ``timing`` and ``postprocess`` for the parts); results echo the options used.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tingyin.errors import EngineError, InvalidRequest
from tingyin.speech import hotwords
from tingyin.speech.chunking import SAMPLE_RATE, Chunk, SpeechMap, make_chunks
from tingyin.speech.decoding import ChunkDecoder
from tingyin.speech.errors import RecognitionTimeout
from tingyin.speech.options import Accuracy, DecodeOptions
from tingyin.speech.postprocess import DecodedChunk, join_texts, utterances_of
from tingyin.speech.rescoring import RewriteProposer, SecondPass, TextScorer, UnigramChooser
from tingyin.speech.timing import monotonic, snap_to_speech
from tingyin.speech.types import Transcript, Utterance
from tingyin.speech.vad import SileroVad
from tingyin.speech.whisper import FULL_WINDOW_FRAMES, ComputeSlots, WhisperModelRunner

if TYPE_CHECKING:
    from tingyin.speech.lexicon import Lexicon
    from tingyin.speech.neural_lm import NeuralLanguageModel
    from tingyin.speech.zh_lm import ZhLanguageModel

ProgressCallback = Callable[[float], None]
BATCHES_PER_STRETCH = 4  # batches decoded before the utterances of a stretch are yielded
TRIGRAM_WEIGHT = 0.7  # set on half of zh_dev (speaker S0150: flat between 0.6 and 1.0), checked on S0252
# The accurate mode: the neural language model joins the trigram as a text scorer, over larger pools. Chosen
# on zh_dev speaker S0150 (of 3 × 2 … 5 × 6 pools, trigram 0 / 0.35, neural 0.8 / 1.2, reward 0.5-2 nats)
# and checked on S0252; beside the neural model the trigram counts for less and length for more.
ACCURATE_TRIGRAM_WEIGHT = 0.35
NEURAL_LM_WEIGHT = 0.8
ACCURATE_LENGTH_REWARD = 2.0  # nats per character: offsets both models' preference for short text
ACCURATE_POOLS = {"second_pass_nbest": 5, "second_pass_rewrites": 6}  # unless the request sets them
# The accurate mode's doubtful chunks (the beam averaged under this log-probability per token: about half of
# zh_dev's) also get the full-window decode's n-best in their pools (``ChunkDecoder._widen``). On zh_dev:
# 445 -> 428 errors for RTF 0.205 -> 0.273; every chunk: 428 at RTF 0.375 (docs/speech.md).
ACCURATE_WIDE_WINDOW_BELOW = -0.3


class _TrigramScorer:
    """The word trigram as a ``TextScorer``."""

    def __init__(self, model: ZhLanguageModel) -> None:
        self.model = model

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        return [self.model.score(text) for text in texts]


class _OnEveryComputeSlot:
    """The neural language model as a ``TextScorer`` that scores holding every one of the Whisper runner's
    compute slots: llama.cpp then never runs beside Whisper in this process, so it can take every core (its
    threads wait for each other at every layer, and on oversubscribed cores two threads scored 3x slower
    than one). Loading holds none: joining the weights on the first request must not stall other requests'
    Whisper calls."""

    def __init__(self, model: NeuralLanguageModel, slots: ComputeSlots) -> None:
        self.model = model
        self.slots = slots

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        scorer = self.model.require()
        with self.slots.every_slot():
            return list(scorer.score_texts(texts))


class _NoRewrites:
    """The accurate mode without the trigram: the n-best only, no sound-alike rewrites."""

    def rewrites(self, text: str, limit: int = 4, keep: tuple[str, ...] = ()) -> list[str]:
        return []


class Recognizer:
    """Speech to text for one model. Thread-safe: model calls take one of the runner's compute slots."""

    def __init__(
        self,
        runner: WhisperModelRunner,
        vad: SileroVad,
        *,
        language_model: ZhLanguageModel | None = None,
        extra_scorers: Sequence[tuple[TextScorer, float]] = (),
        neural_lm: NeuralLanguageModel | None = None,
        default_accuracy: Accuracy = "default",
    ) -> None:
        self.runner = runner
        self.vad = vad
        self.language_model = language_model
        self.neural_lm = neural_lm
        self.default_accuracy: Accuracy = default_accuracy
        second_pass = None
        if language_model is not None:
            scorers = [(_TrigramScorer(language_model), TRIGRAM_WEIGHT), *extra_scorers]
            second_pass = SecondPass(runner, language_model, scorers)
        # The accurate mode: a second pass whose text scorers include the neural language model (loaded on
        # its first request). Without the trigram it ranks the n-best alone (no sound-alike rewrites).
        accurate_pass = None
        if neural_lm is not None:
            proposer: RewriteProposer = language_model if language_model is not None else _NoRewrites()
            accurate_scorers: list[tuple[TextScorer, float]] = [
                (_OnEveryComputeSlot(neural_lm, runner.slots), NEURAL_LM_WEIGHT),
                *extra_scorers,
            ]
            if language_model is not None:
                accurate_scorers.append((_TrigramScorer(language_model), ACCURATE_TRIGRAM_WEIGHT))
            # Every candidate of the accurate mode's larger pools is scored: 4 a chunk cost it 5 errors on
            # zh_dev (450 against 445) for RTF 0.207 against 0.230.
            accurate_pass = SecondPass(
                runner,
                proposer,
                accurate_scorers,
                length_reward=ACCURATE_LENGTH_REWARD,
                scored_candidates=None,
                wide_window_below=ACCURATE_WIDE_WINDOW_BELOW,
            )
        self._lexicon: Lexicon | None = None
        self._lexicon_lock = threading.Lock()
        unigram = None if second_pass is not None else UnigramChooser(lambda run: self.lexicon().score(run))
        self.decoder = ChunkDecoder(runner, second_pass, unigram, accurate_pass)
        # A Baidu app sends its vocabulary (up to 10,000 phrases) with every request: its plan, and what the
        # plan lays out for looking phrases up on first use (``BiasPlan``), is kept for the next request.
        self._bias_plan = lru_cache(maxsize=8)(hotwords.plan)

    @classmethod
    def from_whisper(
        cls,
        model_dir: Path,
        *,
        name: str,
        vad_model: Path,
        compute_type: str = "int8",
        cpu_threads: int = 2,
        lone_request_copy: bool = True,
        language_model: ZhLanguageModel | None = None,
        neural_lm: NeuralLanguageModel | None = None,
        default_accuracy: Accuracy = "default",
    ) -> Recognizer:
        """A recognizer on a CTranslate2 Whisper directory, with Silero VAD, an optional Mandarin
        language model (without one, Mandarin n-best lists are re-ranked by a unigram lexicon) and the
        accurate mode's neural language model (``neural_lm``, loaded on first use). ``lone_request_copy``:
        also a copy of the model on all ``cpu_threads`` for short requests (``WhisperModelRunner.load``)."""
        if cpu_threads < 1:
            raise InvalidRequest("cpu_threads must be at least 1")
        runner = WhisperModelRunner.load(
            model_dir,
            name=name,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            lone_request_copy=lone_request_copy,
        )
        return cls(
            runner,
            SileroVad(str(vad_model)),
            language_model=language_model,
            neural_lm=neural_lm,
            default_accuracy=default_accuracy,
        )

    @property
    def name(self) -> str:
        return self.runner.name

    def lexicon(self) -> Lexicon:
        """The word-frequency lexicon (loaded on first use: only the unigram fallback needs it)."""
        from tingyin.speech.lexicon import Lexicon

        with self._lexicon_lock:
            if self._lexicon is None:
                self._lexicon = Lexicon()
            return self._lexicon

    def warm_up(self) -> None:
        """Load what the first request would otherwise wait for."""
        self.runner.traditional_tokens()
        if self.language_model is None:
            self.lexicon()
        if self.default_accuracy == "accurate" and self.neural_lm is not None:
            self.neural_lm.available()

    # ------------------------------------------------------------------------------------------ public

    def transcribe(
        self,
        audio: np.ndarray,
        options: DecodeOptions = DecodeOptions(),
        *,
        progress: ProgressCallback | None = None,
        deadline: float | None = None,
        speech: SpeechMap | None = None,
    ) -> Transcript:
        """Recognise speech in 16 kHz float32 mono ``audio``. Silence gives a transcript with empty text.

        ``deadline`` (``time.monotonic()`` seconds) stops the work between batches with
        ``RecognitionTimeout``; ``speech`` is the audio's ``speech_map`` where the caller has it already."""
        samples = as_mono(audio)
        options = self.resolve_options(options)
        if speech is None:
            speech = self.speech_map(samples)
        utterances = list(self._stream(samples, options, progress, deadline, speech))
        return Transcript(
            text=join_texts([u.text for u in utterances]),
            utterances=utterances,
            language=dominant_language(utterances, options.language),
            duration_ms=round(len(samples) * 1000 / SAMPLE_RATE),
            options=options,
        )

    def iter_utterances(
        self,
        audio: np.ndarray,
        options: DecodeOptions = DecodeOptions(),
        *,
        progress: ProgressCallback | None = None,
        deadline: float | None = None,
    ) -> Iterator[Utterance]:
        """Utterances in time order as their stretch finishes decoding (for long audio and streaming callers).

        The audio and the accuracy mode are checked at the call, before the first utterance is asked for."""
        samples = as_mono(audio)
        options = self.resolve_options(options)
        return self._stream(samples, options, progress, deadline, self.speech_map(samples))

    def speech_map(self, audio: np.ndarray) -> SpeechMap:
        """The VAD's speech probability of every frame of 16 kHz mono ``audio`` (what the recogniser chunks
        by; diarization can take it rather than run the VAD again)."""
        return SpeechMap.of(self.vad, as_mono(audio))

    def resolve_options(self, options: DecodeOptions) -> DecodeOptions:
        """``options`` with the accuracy mode this recognizer will use (the request's, or the server's
        default). A request asking for the accurate mode where its language model is not installed gets
        ``AccurateModeUnavailable`` (a 4xx); the server's default falls back to the default mode
        (logged once)."""
        from tingyin.speech.neural_lm import UNAVAILABLE, AccurateModeUnavailable

        accuracy = options.accuracy or self.default_accuracy
        if accuracy == "accurate":
            if options.accuracy is None:
                if self.neural_lm is None or not self.neural_lm.available():
                    accuracy = "default"
            elif self.neural_lm is None:
                raise AccurateModeUnavailable(UNAVAILABLE)
            else:
                self.neural_lm.require()
        if accuracy == "default":
            return options if options.accuracy == accuracy else options.with_changes(accuracy=accuracy)
        pools = {k: v for k, v in ACCURATE_POOLS.items() if k not in options.model_fields_set}
        return options.with_changes(accuracy=accuracy, **pools)

    def text_tokens(self, text: str, language: str, task: str = "transcribe") -> list[int]:
        """The model's token ids of ``text`` (words are preceded by a space, as Whisper writes them)."""
        from tingyin.speech import textnorm

        tokenizer = self.runner.tokenizer(language or "en", task)
        text = text.strip()
        return list(tokenizer.encode(text if textnorm.has_cjk(text[:1]) else f" {text}")) if text else []

    def detect_language(self, audio: np.ndarray) -> tuple[str, float, list[tuple[str, float]]]:
        """The language spoken (or sung) in up to 30 s of ``audio``: code, probability, and every language
        with its probability. Speech found by the VAD is preferred; without any (music, noise) the middle
        30 s are used. ("", 0.0, []) for empty audio."""
        samples = as_mono(audio)
        if len(samples) < SAMPLE_RATE * 0.1:
            return "", 0.0, []
        if not self.runner.multilingual:
            return "en", 1.0, [("en", 1.0)]
        regions = SpeechMap.of(self.vad, samples).regions()
        window = 30 * SAMPLE_RATE
        if regions:
            clip = np.concatenate([samples[s:e] for s, e in regions])[:window]
        else:
            middle = max(0, (len(samples) - window) // 2)
            clip = samples[middle : middle + window]
        features = self.runner.features(clip, [Chunk(0, len(clip), [(0, len(clip))])], FULL_WINDOW_FRAMES)
        with self.runner.lone_request():
            ranking = self.runner.language_rankings(self.runner.encode(features))[0]
        language, probability = ranking[0]
        return language, probability, ranking

    # ---------------------------------------------------------------------------------------- internals

    def _stream(
        self,
        samples: np.ndarray,
        options: DecodeOptions,
        progress: ProgressCallback | None,
        deadline: float | None,
        speech: SpeechMap,
    ) -> Iterator[Utterance]:
        duration_s = len(samples) / SAMPLE_RATE
        bias = self._bias_plan(options.hot_words, options.vocabulary)
        chunks = make_chunks(speech.regions())
        if not chunks:
            if progress:
                progress(1.0)
            return
        language = options.language
        if not self.runner.multilingual:
            language = "en"
        corrector = None if self.decoder.second_pass is not None else self._correct_homophones
        total = sum(c.end - c.start for c in chunks)
        done = 0
        previous_end = 0
        # A stretch of chunks is decoded in batches of similar length (little padding), then yielded in order.
        # Batches are decoded as many at once as the model runs calls at once (CONCURRENT_CALLS), in order,
        # while the stretches already decoded are turned into utterances here.
        stretch = options.batch_size * BATCHES_PER_STRETCH
        lone = len(chunks) <= options.batch_size  # one batch: its calls cannot run side by side
        pool = ThreadPoolExecutor(self.runner.workers, thread_name_prefix="decode")
        try:
            planned = []
            for first in range(0, len(chunks), stretch):
                window = chunks[first : first + stretch]
                by_length = sorted(window, key=lambda c: c.end - c.start)
                batches = [
                    by_length[b : b + options.batch_size]
                    for b in range(0, len(by_length), options.batch_size)
                ]
                decoding = [
                    pool.submit(
                        self._decode_batch, samples, batch, language, bias, options, speech, deadline, lone
                    )
                    for batch in batches
                ]
                planned.append((window, batches, decoding))
            for window, batches, decoding in planned:
                decoded = {}
                for batch, batch_decoding in zip(batches, decoding, strict=True):
                    for item in batch_decoding.result():
                        decoded[item.chunk.start] = item
                    done += sum(c.end - c.start for c in batch)
                    if progress:
                        progress(min(1.0, done / total))
                for chunk in window:
                    item = decoded[chunk.start]
                    item = item._replace(chars=snap_to_speech(item.chars, speech))
                    found = utterances_of(item, options, bias, duration_s, corrector)
                    utterances = monotonic(found, previous_end)
                    if utterances:
                        previous_end = utterances[-1].end_ms
                    yield from utterances
        finally:  # a failure, or a caller that stops reading: the batches not started are dropped
            pool.shutdown(wait=True, cancel_futures=True)

    def _decode_batch(
        self,
        samples: np.ndarray,
        batch: Sequence[Chunk],
        language: str,
        bias: hotwords.BiasPlan,
        options: DecodeOptions,
        speech: SpeechMap,
        deadline: float | None,
        lone: bool,
    ) -> list[DecodedChunk]:
        if deadline is not None and time.monotonic() > deadline:
            raise RecognitionTimeout("recognition ran past its deadline", stage="recognize")
        try:
            with self.runner.lone_request() if lone else nullcontext():
                return self.decoder.decode(samples, batch, language, bias, options, speech)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"speech decoding failed: {exc}") from exc

    def _correct_homophones(self, text: str, keep: tuple[str, ...]) -> str:
        from tingyin.speech.lexicon import correct_homophones

        return correct_homophones(self.lexicon(), text, keep)


def as_mono(audio: np.ndarray) -> np.ndarray:
    """Float32 mono samples: channels are averaged, non-finite values zeroed; other shapes are refused."""
    samples = np.asarray(audio)
    if samples.ndim == 2:
        samples = samples.mean(axis=0) if samples.shape[0] <= 8 else samples.mean(axis=1)
    if samples.ndim != 1:
        raise InvalidRequest(f"audio must be mono samples, got shape {samples.shape}")
    if not np.issubdtype(samples.dtype, np.floating):
        raise InvalidRequest(f"audio must be float samples, got {samples.dtype}")
    samples = samples.astype(np.float32, copy=False)
    if not np.all(np.isfinite(samples)):
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    return samples


def dominant_language(utterances: Sequence[Utterance], requested: str) -> str:
    """The requested language, or the one spoken longest (for auto and zh-en)."""
    if requested in ("zh", "en", "yue"):
        return requested
    spoken: dict[str, int] = {}
    for u in utterances:
        spoken[u.language] = spoken.get(u.language, 0) + (u.end_ms - u.start_ms) + 1
    if not spoken:
        return "zh" if requested == "zh-en" else ""
    return max(spoken, key=lambda lang: spoken[lang])


__all__ = ["Recognizer", "as_mono", "dominant_language"]
