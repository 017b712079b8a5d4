"""The speech recognition engine every ASR API calls: VAD → batched Whisper decoding → text post-processing.

How it works, and why:

* Silero VAD finds the speech; regions closer than ``CHUNK_GAP_S`` merge into chunks of up to
  ``TARGET_CHUNK_S`` (a few seconds: CTranslate2's encoder costs more per second on longer inputs).
  Only speech is decoded, so silence and non-speech stretches yield no text.
* Each chunk is encoded at its own length (rounded up to whole seconds plus 3 s of silence) rather than
  Whisper's fixed 30 s window: CTranslate2 accepts shorter inputs, and a 5 s clip then costs about a tenth
  of the encoder time. Chunks of similar length are decoded in batches (beam search over several at once).
* Language is detected per chunk from the same encoder output (``auto`` among all languages, ``zh-en``
  between Mandarin and English), so a mixed recording gets per-utterance languages.
* Guards: a chunk whose text compresses too well (a repetition loop) is decoded again with sampling, and
  what still repeats is cut; a chunk the model itself thinks is no speech, with a low score, is dropped;
  well-known subtitle hallucinations are dropped. Output length is capped by the chunk's duration.
* Chinese second pass (when the optional trigram model is installed, see ``zh_lm``): the beam's best
  hypotheses and their sound-alike rewrites are scored by Whisper itself (teacher-forced log-probability,
  one batched ``align`` call) plus a word-trigram language model, and the best sum wins. This is what
  turns 攻击金手套房 back into 公积金首套房: the audio supports both, the language model only one.
* Text: Traditional → Simplified, numbers as digits (ITN on) or words (ITN off), hot-word correction,
  pause-based punctuation for Chinese, or none. Character/word timestamps come from Whisper's cross-attention
  alignment and are carried through the text rewrites, then clamped monotonic and inside the audio.
"""

from __future__ import annotations

import math
import re
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from tingyin.errors import EngineError, InvalidRequest
from tingyin.speech import hotwords, textnorm
from tingyin.speech.types import LANGUAGES, HotWord, TranscribeOptions, Transcript, Utterance, Word
from tingyin.speech.whisper import load_whisper

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

    from tingyin.speech.zh_lm import ZhLanguageModel

SAMPLE_RATE = 16000
FRAMES_PER_SECOND = 100
MAX_CHUNK_S = 12.0  # the VAD splits longer speech at its quietest short pause
TARGET_CHUNK_S = 8.0  # regions are merged up to this length (the encoder costs more per second beyond)
CHUNK_GAP_S = 1.0  # ... when the pause between them is at most this long
TINY_GAP_S = 0.3  # regions this close always merge (up to MAX_CHUNK_S)
MIN_UNITS_PER_S = {"zh": 1.5, "yue": 1.5}  # less text than this for a chunk's speech: Whisper stopped early
MIN_WORDS_PER_S = 0.8
PAUSE_COMMA_S = 0.35  # a pause this long inside a Chinese sentence without punctuation gets a comma
PAUSE_SPLIT_S = 0.8  # a pause this long ends an utterance
MIN_AUDIO_S = 0.1
COMPRESSION_RATIO_LIMIT = 2.4
NO_SPEECH_LIMIT = 0.6
LOW_SCORE_LIMIT = -1.0
MAX_WEIGHT = 10.0
BATCHES_PER_STRETCH = 4
LM_WEIGHT = 0.2  # language-model weight in the n-best rescoring of Chinese (tuned on 40 zh_dev clips)
LENGTH_REWARD = 0.5  # nats per character in the n-best rescoring (neutral on zh_dev, stops empty picks)
HOT_WORD_BONUS = 0.5  # nats per unit of hot-word weight for an n-best hypothesis containing the phrase
# Chinese second pass (trigram model). Weights were set on half of zh_dev (speaker S0150: flat between 0.6
# and 1.0) and checked on the other half (S0252); see docs/speech.md.
TRIGRAM_WEIGHT = 0.7  # trigram log-probability weight against Whisper's teacher-forced log-probability
SECOND_PASS_LENGTH_REWARD = 1.0  # nats per character: offsets both models' preference for short text
ALIGN_BATCH = 16  # candidates per teacher-forced scoring call
SCORING_MARGIN_FRAMES = 50  # encoder frames (1 s) after the speech kept for teacher-forced scoring

# Style prompts: they set the script and punctuation Whisper writes in.
STYLE_PROMPTS = {
    "zh": "以下是普通话的句子，使用简体中文。",
    "yue": "以下係廣東話嘅句子。",
    # Mixed Mandarin-English (Qiniu cn_en): English words stay in Latin letters.
    "zh-en": "以下是中英文混合的句子，English单词保持英文原文。",
    "en": "Hello, welcome. This is a sentence with punctuation.",
}

# Whisper's well-known hallucinations on non-speech (subtitle credits learned from its training data).
HALLUCINATIONS = (
    "字幕由amara.org社区提供",
    "请不吝点赞订阅转发打赏支持明镜与点点栏目",
    "优优独播剧场",
    "thank you for watching",
    "thanks for watching",
    "subtitles by the amara.org community",
    "字幕志愿者",
    "中文字幕",
    "本字幕由",
)

ProgressCallback = Callable[[float], None]


class DecoderSettings(NamedTuple):
    """Decoding knobs; callers may override some through ``TranscribeOptions.extra`` (strings)."""

    beam_size: int = 5
    batch_size: int = 8
    pad_s: float = 3.0  # silence after the speech in the encoder window (less makes Whisper loop)
    min_window_s: float = 0.0
    full_window: bool = False  # encode the full 30 s window, as plain Whisper does
    second_pass: bool = True  # Chinese: rescore n-best and sound-alike rewrites (needs the trigram model)
    second_pass_nbest: int = 3  # distinct n-best hypotheses rescored and rewritten
    second_pass_rewrites: int = 2  # sound-alike rewrites proposed per n-best hypothesis

    @classmethod
    def from_extra(cls, extra: dict[str, str]) -> DecoderSettings:
        settings = cls()
        try:
            if "beam_size" in extra:
                settings = settings._replace(beam_size=int(extra["beam_size"]))
            if "batch_size" in extra:
                settings = settings._replace(batch_size=int(extra["batch_size"]))
            if "pad_s" in extra:
                settings = settings._replace(pad_s=float(extra["pad_s"]))
            if "min_window_s" in extra:
                settings = settings._replace(min_window_s=float(extra["min_window_s"]))
            if "full_window" in extra:
                settings = settings._replace(full_window=extra["full_window"].lower() in ("1", "true", "yes"))
            if "second_pass" in extra:
                settings = settings._replace(second_pass=extra["second_pass"].lower() in ("1", "true", "yes"))
            if "second_pass_nbest" in extra:
                settings = settings._replace(second_pass_nbest=int(extra["second_pass_nbest"]))
            if "second_pass_rewrites" in extra:
                settings = settings._replace(second_pass_rewrites=int(extra["second_pass_rewrites"]))
        except ValueError as exc:
            raise InvalidRequest(f"invalid decoder option: {exc}") from exc
        if not 1 <= settings.beam_size <= 10:
            raise InvalidRequest("beam_size must be between 1 and 10")
        if not 1 <= settings.batch_size <= 64:
            raise InvalidRequest("batch_size must be between 1 and 64")
        if not 1 <= settings.second_pass_nbest <= 10 or not 0 <= settings.second_pass_rewrites <= 20:
            raise InvalidRequest("second_pass_nbest must be 1-10 and second_pass_rewrites 0-20")
        return settings


class Chunk(NamedTuple):
    """A stretch of audio decoded as one unit; ``speech`` lists the VAD regions inside it (samples)."""

    start: int
    end: int
    speech: list[tuple[int, int]]


class _TimedChar(NamedTuple):
    char: str
    start: float  # seconds, absolute
    end: float


class _Decoded(NamedTuple):
    chunk: Chunk
    language: str
    text: str
    chars: list[_TimedChar]


_model_lock = threading.Lock()


# ----------------------------------------------------------------------------------------------- options


def validate_options(options: TranscribeOptions) -> None:
    """Fail early on combinations the engine cannot honour."""
    if options.language not in LANGUAGES:
        raise InvalidRequest(f"unknown language {options.language!r}; use one of {', '.join(LANGUAGES)}")
    for word in options.hot_words:
        if not isinstance(word, HotWord | tuple) or not isinstance(word[0], str):
            raise InvalidRequest("hot words must be (text, weight) pairs")
        text, weight = word[0], word[1]
        if not text.strip():
            raise InvalidRequest("a hot word is empty")
        if len(text) > 50:
            raise InvalidRequest(f"hot word {text[:20]!r}... is longer than 50 characters")
        if (
            not isinstance(weight, int | float)
            or math.isnan(weight)
            or not -MAX_WEIGHT <= weight <= MAX_WEIGHT
        ):
            raise InvalidRequest(f"hot word {text!r}: weight {weight!r} is outside -10..10")
    for phrase in options.vocabulary:
        if not isinstance(phrase, str) or not phrase.strip():
            raise InvalidRequest("a vocabulary phrase is empty")
        if len(phrase) > 50:
            raise InvalidRequest(f"vocabulary phrase {phrase[:20]!r}... is longer than 50 characters")
    DecoderSettings.from_extra(options.extra)


def _as_mono(audio: np.ndarray) -> np.ndarray:
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


# ------------------------------------------------------------------------------------------------- VAD


def speech_regions(audio: np.ndarray) -> list[tuple[int, int]]:
    """Speech stretches (sample offsets) found by Silero VAD."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if len(audio) < SAMPLE_RATE * MIN_AUDIO_S:
        return []
    vad = VadOptions(
        threshold=0.5,
        min_speech_duration_ms=200,
        min_silence_duration_ms=400,
        speech_pad_ms=250,
        max_speech_duration_s=MAX_CHUNK_S,
    )
    regions = get_speech_timestamps(audio, vad)
    return [(int(r["start"]), min(len(audio), int(r["end"]))) for r in regions if r["end"] > r["start"]]


def make_chunks(regions: Sequence[tuple[int, int]]) -> list[Chunk]:
    """Group speech regions into chunks: neighbours closer than CHUNK_GAP_S merge up to TARGET_CHUNK_S;
    nothing exceeds MAX_CHUNK_S. Short chunks are cheap: the encoder's cost per second grows with length."""
    chunks: list[Chunk] = []
    limit = int(MAX_CHUNK_S * SAMPLE_RATE)
    target = int(TARGET_CHUNK_S * SAMPLE_RATE)
    gap = int(CHUNK_GAP_S * SAMPLE_RATE)
    tiny = int(TINY_GAP_S * SAMPLE_RATE)
    for start, end in regions:
        while end - start > limit:  # the VAD found no pause: cut hard
            chunks.append(Chunk(start, start + limit, [(start, start + limit)]))
            start += limit
        pause = start - chunks[-1].end if chunks else None
        fits = chunks and end - chunks[-1].start <= target
        # A tiny gap is no pause at all (the VAD's padding nearly touches): splitting there cuts a sentence.
        joined = chunks and pause is not None and pause <= tiny and end - chunks[-1].start <= limit
        if chunks and pause is not None and ((pause <= gap and fits) or joined):
            last = chunks[-1]
            chunks[-1] = Chunk(last.start, end, [*last.speech, (start, end)])
        else:
            chunks.append(Chunk(start, end, [(start, end)]))
    return chunks


# --------------------------------------------------------------------------------------------- decoding


def _tokenizer(model: WhisperModel, language: str) -> Tokenizer:
    from faster_whisper.tokenizer import Tokenizer

    return Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)


def _whisper_language(model: WhisperModel, language: str) -> str:
    """Whisper's language token for our language code (``yue`` falls back to ``zh`` on older models)."""
    if language == "yue" and model.hf_tokenizer.token_to_id("<|yue|>") is None:
        return "zh"
    return language


def _features(
    model: WhisperModel, audio: np.ndarray, chunks: Sequence[Chunk], settings: DecoderSettings
) -> np.ndarray:
    """Log-mel features of a batch of chunks, padded with silence to one common length."""
    longest = max(c.end - c.start for c in chunks)
    if settings.full_window:
        frames = 3000
    else:
        seconds = math.ceil(max(settings.min_window_s, longest / SAMPLE_RATE + settings.pad_s))
        frames = min(3000, max(2, seconds) * FRAMES_PER_SECOND)
    samples = frames * 160
    # 80 mel bins for most Whisper models, 128 for large-v3: take the model's own feature size.
    batch = np.zeros((len(chunks), model.feature_extractor.mel_filters.shape[0], frames), dtype=np.float32)
    for i, chunk in enumerate(chunks):
        piece = np.zeros(samples, dtype=np.float32)
        clip = audio[chunk.start : chunk.end][:samples]
        piece[: len(clip)] = clip
        mel = model.feature_extractor(piece, padding=0)
        batch[i, :, : min(frames, mel.shape[-1])] = mel[:, :frames]
    return batch


def _prompt(tokenizer: Tokenizer, language: str, bias_text: str) -> list[int]:
    style = STYLE_PROMPTS.get(language, "")
    chinese = language in ("zh", "yue", "zh-en")
    previous = f"{bias_text}。{style}" if bias_text and chinese else f"{bias_text} {style}"
    previous = previous.strip()
    tokens: list[int] = []
    if previous:
        tokens = [tokenizer.sot_prev, *tokenizer.encode(" " + previous)[-200:]]
    return [*tokens, *tokenizer.sot_sequence, tokenizer.no_timestamps]


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def _is_loop(text: str) -> bool:
    return len(text) > 20 and compression_ratio(text) > COMPRESSION_RATIO_LIMIT


_REPEAT_CJK = re.compile(r"([\u3400-\u9fff]{4,}?)\1")
_REPEAT_OTHER = re.compile(r"(\S.{11,}?)\1")


def _repeats_itself(text: str) -> bool:
    """A phrase said twice in a row: with a short encoder window this is nearly always Whisper re-reading
    the audio, so the chunk is decoded again with the full window."""
    flat = textnorm.strip_punctuation(text)
    return bool(_REPEAT_CJK.search(flat.replace(" ", "")) or _REPEAT_OTHER.search(flat + " "))


def cut_repetitions(text: str, max_repeats: int = 2) -> str:
    """Cut a stretch repeated more than ``max_repeats`` times in a row (a decoding loop) to one copy."""
    for size in range(1, min(30, len(text) // 3) + 1):
        i = 0
        while i + size * (max_repeats + 1) <= len(text):
            unit = text[i : i + size]
            j = i + size
            while text[j : j + size] == unit:
                j += size
            # Short units repeat in real speech (谢谢谢谢, 哈哈哈): they need more copies to count as a loop.
            if (j - i) // size > max(max_repeats, 8 // size) and unit.strip():
                text = text[: i + size] + text[j:]
            i += 1
    return text


def _stopped_early(text: str, chunk: Chunk, language: str) -> bool:
    """Much less text than the chunk's speech holds: with a short window Whisper sometimes ends after the
    first sentence. Judged only on chunks with a few seconds of speech and some text."""
    speech_s = sum(end - start for start, end in chunk.speech) / SAMPLE_RATE
    flat = textnorm.strip_punctuation(text)
    if speech_s < 3.0 or not flat:
        return False
    if textnorm.has_cjk(flat):
        units = len(flat.replace(" ", ""))
        return units / speech_s < MIN_UNITS_PER_S.get(language, MIN_UNITS_PER_S["zh"])
    return len(flat.split()) / speech_s < MIN_WORDS_PER_S


def _is_hallucination(text: str) -> bool:
    flat = textnorm.strip_punctuation(textnorm.to_simplified(text)).replace(" ", "").lower()
    return any(phrase.replace(" ", "") in flat for phrase in HALLUCINATIONS) and len(flat) < 40


def _detect(model: WhisperModel, encoded: object, allowed: Sequence[str] | None) -> list[tuple[str, float]]:
    """Per batch item: the most likely language (restricted to ``allowed``) and its probability."""
    results = model.model.detect_language(encoded)
    picked = []
    for ranking in results:
        options = [(token[2:-2], prob) for token, prob in ranking]
        if allowed:
            options = [(lang, p) for lang, p in options if lang in allowed] or [(allowed[0], 0.0)]
        total = sum(p for _, p in options) if allowed else 1.0
        lang, prob = options[0]
        picked.append((lang, prob / total if total else 0.0))
    return picked


class _Candidate(NamedTuple):
    tokens: list[int]
    text: str
    logprob: float  # total over the tokens


_traditional_cache: dict[int, list[int]] = {}


def _traditional_tokens(model: WhisperModel) -> list[int]:
    """Tokens that are whole Traditional-only characters or words. Suppressing them for Mandarin keeps
    the beam from spending hypotheses on the same words in the other script."""
    key = id(model)
    if key not in _traditional_cache:
        tokenizer = model.hf_tokenizer
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
        _traditional_cache[key] = found
    return _traditional_cache[key]


def _language_model_score(text: str) -> float:
    """Log-probability of the Chinese in ``text`` under the word-frequency model; a Latin word costs a
    fixed amount so that hypotheses cannot win by avoiding Chinese characters."""
    from tingyin.speech.lexicon import get_lexicon, sentence_logprob

    return sentence_logprob(text, get_lexicon().score)


def choose_hypothesis(candidates: list[_Candidate], language: str, bias: hotwords.BiasPlan) -> _Candidate:
    """The best of the beam's n-best list: without suppressed phrases; for Chinese, acoustic score plus a
    word-frequency language model; a favoured phrase adds a bonus proportional to its weight."""
    if not candidates:
        return _Candidate([], "", 0.0)
    if bias.suppressed:
        candidates = [c for c in candidates if not hotwords.contains_suppressed(c.text, bias)] or candidates
    chinese = language in ("zh", "yue") and any(textnorm.has_cjk(c.text) for c in candidates)
    if not chinese and not bias.favoured:
        return candidates[0]
    best: tuple[float, _Candidate] | None = None
    seen: set[str] = set()
    for rank, candidate in enumerate(candidates):
        flat = _flat(candidate.text)
        if flat in seen:
            continue
        seen.add(flat)
        if not flat and rank > 0:  # an empty hypothesis is taken only when the beam itself prefers it
            continue
        # Chinese: total acoustic log-probability plus the language model, and a per-character reward that
        # offsets the model's preference for short text; other languages keep beam order.
        if chinese:
            value = (
                candidate.logprob
                + LM_WEIGHT * _language_model_score(candidate.text)
                + LENGTH_REWARD * len(flat)
            )
        else:
            value = -rank
        value += sum(HOT_WORD_BONUS * w.weight for w in bias.favoured if w.text.lower() in flat)
        if best is None or value > best[0]:
            best = (value, candidate)
    return best[1] if best else candidates[0]


class _Pass(NamedTuple):
    """One encoder + decoder pass over a batch of chunks."""

    encoded: Any  # ctranslate2.StorageView, [batch, frames // 2, d_model]
    frames: int
    languages: list[str]
    tokenizers: list[Tokenizer]
    prompts: list[list[int]]
    tokens: list[list[int]]
    texts: list[str]
    # Cross-attention alignments the second pass already computed for the chosen tokens (reused for times).
    alignments: dict[int, Any]


def _decode_pass(
    model: WhisperModel,
    audio: np.ndarray,
    chunks: Sequence[Chunk],
    language: str,
    bias: hotwords.BiasPlan,
    settings: DecoderSettings,
    languages: list[str] | None = None,
) -> _Pass:
    import ctranslate2

    features = _features(model, audio, chunks, settings)
    with _model_lock:
        # One chunk at a time: on CPU, CTranslate2's encoder costs more per item in a batch.
        parts = [
            np.asarray(
                model.model.encode(ctranslate2.StorageView.from_array(features[i : i + 1]), to_cpu=True)
            )
            for i in range(len(chunks))
        ]
        encoded = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate(parts)))
        if languages is None:
            if language in ("auto", "zh-en"):
                allowed = ("zh", "en") if language == "zh-en" else None
                languages = [lang for lang, _ in _detect(model, encoded, allowed)]
            else:
                languages = [language] * len(chunks)
    bias_text = hotwords.prompt_text(bias)
    tokenizers = [_tokenizer(model, _whisper_language(model, lang)) for lang in languages]
    styles = ["zh-en" if language == "zh-en" and lang == "zh" else lang for lang in languages]
    prompts = [_prompt(tok, style, bias_text) for tok, style in zip(tokenizers, styles, strict=True)]
    max_tokens = [int(10 + 12 * (c.end - c.start) / SAMPLE_RATE) for c in chunks]
    # One generate call per prompt length (the model needs the start token at one position in a batch);
    # in practice one per language.
    groups: dict[int, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(len(prompt), []).append(i)
    results: list[Any] = [None] * len(chunks)
    host = np.asarray(encoded) if len(groups) > 1 else None
    for indices in groups.values():
        suppress = [-1]
        if all(languages[i] == "zh" for i in indices):
            suppress += _traditional_tokens(model)
        view = encoded
        if host is not None:
            view = ctranslate2.StorageView.from_array(np.ascontiguousarray(host[indices]))
        with _model_lock:
            group_results = model.model.generate(
                view,
                [prompts[i] for i in indices],
                beam_size=settings.beam_size,
                num_hypotheses=settings.beam_size,
                max_length=min(448, max(max_tokens[i] for i in indices) + len(prompts[indices[0]])),
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=suppress,
            )
        for i, result in zip(indices, group_results, strict=True):
            results[i] = result
    all_tokens: list[list[int]] = []
    texts: list[str] = []
    candidate_lists = [
        [
            _Candidate(tokens, tokenizers[i].decode(tokens), score * max(1, len(seq)))
            for seq, score in zip(result.sequences_ids, result.scores, strict=True)
            for tokens in [[t for t in seq[: max_tokens[i]] if t < tokenizers[i].eot]]
        ]
        for i, result in enumerate(results)
    ]
    rescored: dict[int, tuple[_Candidate, Any]] = {}
    if settings.second_pass and "zh" in languages:
        rescored = _second_pass(
            model, encoded, features.shape[-1], chunks, tokenizers, languages, candidate_lists, bias, settings
        )
    for i, result in enumerate(results):
        if i in rescored:
            chosen = rescored[i][0]
        else:
            chosen = choose_hypothesis(candidate_lists[i], languages[i], bias)
        # Scores are log-probabilities averaged over tokens (length penalty 1).
        average = result.scores[0] if result.scores else 0.0
        if result.no_speech_prob > NO_SPEECH_LIMIT and average < LOW_SCORE_LIMIT:
            chosen = _Candidate([], "", 0.0)
        all_tokens.append(chosen.tokens)
        texts.append(chosen.text)
    alignments = {i: alignment for i, (_, alignment) in rescored.items()}
    return _Pass(encoded, features.shape[-1], languages, tokenizers, prompts, all_tokens, texts, alignments)


def _second_pass(
    model: WhisperModel,
    encoded: Any,
    frames: int,
    chunks: Sequence[Chunk],
    tokenizers: list[Tokenizer],
    languages: list[str],
    candidate_lists: list[list[_Candidate]],
    bias: hotwords.BiasPlan,
    settings: DecoderSettings,
) -> dict[int, tuple[_Candidate, Any]]:
    """Chinese chunks: the best of the n-best hypotheses and their sound-alike rewrites by Whisper's
    teacher-forced log-probability plus the trigram, with the winner's alignment; empty when the trigram
    model is not installed."""
    import ctranslate2

    from tingyin.speech.zh_lm import get_language_model

    lm = get_language_model()
    if lm is None:
        return {}
    keep = tuple(w.text for w in bias.favoured)
    # (chunk index, candidate) rows to score
    rows: list[tuple[int, _Candidate]] = []
    for i, candidates in enumerate(candidate_lists):
        if languages[i] == "zh" and any(textnorm.has_cjk(c.text) for c in candidates):
            pool = _candidate_pool(candidates, tokenizers[i], lm, bias, keep, settings)
            rows.extend((i, c) for c in pool)
    if not rows:
        return {}
    host = np.asarray(encoded)
    start_sequence = list(tokenizers[rows[0][0]].sot_sequence)  # every row is a Mandarin chunk
    acoustic: list[float] = []
    alignments: list[Any] = []
    for begin in range(0, len(rows), ALIGN_BATCH):
        batch = rows[begin : begin + ALIGN_BATCH]
        num_frames = [min(frames, math.ceil((chunks[i].end - chunks[i].start) / 160)) for i, _ in batch]
        # Only the speech and 1 s after it: the cross-attention over the padding costs time, not accuracy.
        keep_frames = min(host.shape[1], max(num_frames) // 2 + SCORING_MARGIN_FRAMES)
        rows_host = host[[i for i, _ in batch], :keep_frames]
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(rows_host))
        # Teacher-forced scoring after the bare start sequence: without the style prompt it is about twice
        # as fast, and it ranked candidates slightly better on zh_dev.
        with _model_lock:
            results = model.model.align(
                view, start_sequence, [c.tokens for _, c in batch], num_frames, median_filter_width=7
            )
        alignments.extend(results)
        for result in results:
            probs = np.maximum(np.asarray(result.text_token_probs, dtype=np.float64), 1e-10)
            acoustic.append(float(np.log(probs).sum()))
    best: dict[int, tuple[float, _Candidate, Any]] = {}
    for (i, candidate), sound, alignment in zip(rows, acoustic, alignments, strict=True):
        flat = _flat(candidate.text)
        value = sound + TRIGRAM_WEIGHT * lm.score(candidate.text) + SECOND_PASS_LENGTH_REWARD * len(flat)
        value += sum(HOT_WORD_BONUS * w.weight for w in bias.favoured if w.text.lower() in flat)
        if i not in best or value > best[i][0]:
            best[i] = (value, candidate._replace(logprob=sound), alignment)
    return {i: (candidate, alignment) for i, (_, candidate, alignment) in best.items()}


def _candidate_pool(
    candidates: list[_Candidate], tokenizer: Tokenizer, lm: ZhLanguageModel, bias: hotwords.BiasPlan,
    keep: tuple[str, ...], settings: DecoderSettings,
) -> list[_Candidate]:  # fmt: skip
    """The distinct top n-best hypotheses (no loops, no suppressed phrase) and their sound-alike rewrites."""
    if bias.suppressed:
        allowed = [c for c in candidates if not hotwords.contains_suppressed(c.text, bias)]
        candidates = allowed or candidates
    seen: set[str] = set()
    pool: list[_Candidate] = []

    def add(candidate: _Candidate) -> None:
        flat = _flat(candidate.text)
        if flat and flat not in seen and not _is_loop(candidate.text):
            seen.add(flat)
            pool.append(candidate)

    for candidate in candidates:
        if len(pool) >= settings.second_pass_nbest:
            break
        add(candidate)
    for candidate in list(pool):
        text = textnorm.to_simplified(textnorm.clean(candidate.text))
        for rewrite in lm.rewrites(text, limit=settings.second_pass_rewrites, keep=keep):
            if not (bias.suppressed and hotwords.contains_suppressed(rewrite, bias)):
                add(_Candidate(tokenizer.encode(rewrite), rewrite, 0.0))
    return pool


def _flat(text: str) -> str:
    """A hypothesis as compared for sameness: Simplified, no punctuation or spaces, lower case."""
    return textnorm.strip_punctuation(textnorm.to_simplified(text)).replace(" ", "").lower()


def _decode_batch(
    model: WhisperModel,
    audio: np.ndarray,
    chunks: Sequence[Chunk],
    language: str,
    bias: hotwords.BiasPlan,
    settings: DecoderSettings,
    *,
    align: bool = True,
) -> list[_Decoded]:
    first = _decode_pass(model, audio, chunks, language, bias, settings)
    # (pass, index in pass) per chunk
    where: list[tuple[_Pass, int]] = [(first, i) for i in range(len(chunks))]
    if not settings.full_window:
        redo = [
            i
            for i, text in enumerate(first.texts)
            if _repeats_itself(text) or _is_loop(text) or _stopped_early(text, chunks[i], first.languages[i])
        ]
        if redo:
            second = _decode_pass(
                model,
                audio,
                [chunks[i] for i in redo],
                language,
                bias,
                settings._replace(full_window=True),
                [first.languages[i] for i in redo],
            )
            for k, i in enumerate(redo):
                where[i] = (second, k)
    decoded: list[_Decoded] = []
    token_lists: list[list[int]] = []
    for chunk, (run, k) in zip(chunks, where, strict=True):
        tokens = run.tokens[k]
        text = run.texts[k]
        tokenizer = run.tokenizers[k]
        if _is_loop(text):
            max_tokens = int(10 + 12 * (chunk.end - chunk.start) / SAMPLE_RATE)
            tokens = _resample_loop(model, run.encoded, k, run.prompts[k], max_tokens, tokenizer) or tokens
            text = tokenizer.decode(tokens)
        if _is_hallucination(text):
            tokens, text = [], ""
        token_lists.append(tokens)
        decoded.append(_Decoded(chunk, run.languages[k], text, []))
    if not align:  # no word times wanted: utterances span their chunk's speech
        return decoded
    return _align(model, decoded, token_lists, where)


def _resample_loop(
    model: WhisperModel, encoded: object, index: int, prompt: list[int], max_tokens: int, tokenizer: Tokenizer
) -> list[int] | None:
    """Decode one looping chunk again with rising temperature; the first loop-free result wins."""
    import ctranslate2

    single = ctranslate2.StorageView.from_array(np.asarray(encoded)[index : index + 1])
    for temperature in (0.4, 0.8):
        with _model_lock:
            result = model.model.generate(
                single,
                [prompt],
                beam_size=1,
                num_hypotheses=3,
                sampling_topk=0,
                sampling_temperature=temperature,
                max_length=min(448, max_tokens + len(prompt)),
                return_scores=True,
            )[0]
        # Scores are already averaged over tokens.
        best = max(zip(result.sequences_ids, result.scores, strict=True), key=lambda pair: pair[1])
        tokens = [t for t in best[0][:max_tokens] if t < tokenizer.eot]
        if not _is_loop(tokenizer.decode(tokens)):
            return tokens
    return None


def _align(
    model: WhisperModel,
    decoded: list[_Decoded],
    token_lists: list[list[int]],
    where: list[tuple[_Pass, int]],
) -> list[_Decoded]:
    """Character times from cross-attention alignment, one call per (pass, language)."""
    import ctranslate2

    out = list(decoded)
    groups: dict[tuple[int, str], list[int]] = {}
    for i, item in enumerate(decoded):
        if not token_lists[i]:
            continue
        run, k = where[i]
        known = run.alignments.get(k)
        if known is not None and token_lists[i] == run.tokens[k]:
            out[i] = item._replace(chars=_timed_chars(run.tokenizers[k], token_lists[i], known, item.chunk))
            continue
        groups.setdefault((id(run), item.language), []).append(i)
    for indices in groups.values():
        run = where[indices[0]][0]
        tokenizer = run.tokenizers[where[indices[0]][1]]
        encoded_host = np.asarray(run.encoded)
        rows = [where[i][1] for i in indices]
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded_host[rows]))
        num_frames = [
            min(run.frames, math.ceil((decoded[i].chunk.end - decoded[i].chunk.start) / 160)) for i in indices
        ]
        with _model_lock:
            results = model.model.align(
                view,
                tokenizer.sot_sequence,
                [token_lists[i] for i in indices],
                num_frames,
                median_filter_width=7,
            )
        for i, result in zip(indices, results, strict=True):
            out[i] = decoded[i]._replace(
                chars=_timed_chars(tokenizer, token_lists[i], result, decoded[i].chunk)
            )
    return out


def _timed_chars(
    tokenizer: Tokenizer, tokens: list[int], alignment: object, chunk: Chunk
) -> list[_TimedChar]:
    """Spread each token's aligned time span over the characters it decodes to."""
    pairs = alignment.alignments  # type: ignore[attr-defined]
    text_indices = np.array([p[0] for p in pairs])
    time_indices = np.array([p[1] for p in pairs])
    offset = chunk.start / SAMPLE_RATE
    if len(text_indices) == 0:
        return []
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] * 0.02  # token k spans jump_times[k] .. jump_times[k + 1]

    def token_time(k: int) -> float:
        return float(jump_times[min(k, len(jump_times) - 1)])

    # Multi-byte characters span several tokens: decode cumulatively and emit once the bytes complete.
    chars: list[_TimedChar] = []
    emitted = ""
    pending = 0
    for k in range(len(tokens)):
        text = tokenizer.decode(tokens[: k + 1])
        if text.endswith("\ufffd") or not text.startswith(emitted):
            continue
        new = text[len(emitted) :]
        emitted = text
        if not new:
            continue
        start, end = token_time(pending), token_time(k + 1)
        end = max(end, start)
        pending = k + 1
        step = (end - start) / len(new)
        for n, ch in enumerate(new):
            chars.append(_TimedChar(ch, offset + start + n * step, offset + start + (n + 1) * step))
    return chars


# ------------------------------------------------------------------------------------------ text rewrite


def _retime(chars: list[_TimedChar], new_text: str) -> list[_TimedChar]:
    """Times for ``new_text`` from the timed characters of the text it was rewritten from."""
    old_text = "".join(c.char for c in chars)
    if old_text == new_text:
        return chars
    if not chars:
        return []
    out: list[_TimedChar] = []
    matcher = SequenceMatcher(None, old_text, new_text, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for k in range(i2 - i1):
                old = chars[i1 + k]
                out.append(_TimedChar(new_text[j1 + k], old.start, old.end))
            continue
        if j2 == j1:
            continue
        if i2 > i1:
            start, end = chars[i1].start, chars[i2 - 1].end
        else:
            anchor = chars[i1 - 1].end if i1 > 0 else chars[0].start
            start = end = anchor
        step = (end - start) / (j2 - j1)
        for k in range(j2 - j1):
            out.append(_TimedChar(new_text[j1 + k], start + k * step, start + (k + 1) * step))
    return out


def _rewrite(text: str, language: str, options: TranscribeOptions, bias: hotwords.BiasPlan) -> str:
    """Script, numbers and hot words: the text the caller asked for (punctuation is handled later)."""
    text = textnorm.to_simplified(textnorm.clean(text)).strip()
    if not text:
        return ""
    text = cut_repetitions(text)
    zh_like = language in ("zh", "yue") or textnorm.has_cjk(text)
    if zh_like:
        text = textnorm.to_chinese_punctuation(text)
    if language == "zh" and textnorm.has_cjk(text) and not _second_pass_active(options):
        from tingyin.speech.lexicon import correct_homophones

        text = correct_homophones(text, keep=tuple(w.text for w in bias.favoured))
    text = (
        textnorm.numbers_to_digits(text, language)
        if options.itn
        else textnorm.numbers_to_words(text, language)
    )
    text = hotwords.correct(text, bias)
    if bias.suppressed and hotwords.contains_suppressed(text, bias):
        text = hotwords.remove_suppressed(text, bias)
    return text.strip()


def _second_pass_active(options: TranscribeOptions) -> bool:
    """Whether Chinese text came through the trigram second pass (then the unigram corrector stays out)."""
    from tingyin.speech.zh_lm import get_language_model

    return DecoderSettings.from_extra(options.extra).second_pass and get_language_model() is not None


def _punctuate_and_split(chars: list[_TimedChar], zh_like: bool, punctuation: bool) -> list[list[_TimedChar]]:
    """Insert pause-based punctuation (Chinese), then split into utterances at sentence ends and pauses."""
    if not chars:
        return []
    out: list[_TimedChar] = []
    for k, tc in enumerate(chars):
        out.append(tc)
        nxt = chars[k + 1] if k + 1 < len(chars) else None
        if nxt is None or not zh_like or not punctuation:
            continue
        gap = nxt.start - tc.end
        if textnorm.is_punctuation(tc.char) or textnorm.is_punctuation(nxt.char) or tc.char == " ":
            continue
        if gap >= PAUSE_SPLIT_S:
            out.append(_TimedChar("。", tc.end, tc.end))
        elif gap >= PAUSE_COMMA_S:
            out.append(_TimedChar("，", tc.end, tc.end))
    pieces: list[list[_TimedChar]] = [[]]
    for k, tc in enumerate(out):
        if tc.char == " " and not pieces[-1]:
            continue
        pieces[-1].append(tc)
        nxt = out[k + 1] if k + 1 < len(out) else None
        if nxt is None:
            break
        sentence_end = tc.char in textnorm.SENTENCE_END and not textnorm.is_punctuation(nxt.char)
        if (
            sentence_end and not (tc.char == "." and nxt.char.isdigit())
        ) or nxt.start - tc.end >= PAUSE_SPLIT_S:
            pieces.append([])
    return [p for p in pieces if "".join(c.char for c in p).strip()]


def _words(chars: list[_TimedChar], lo: float, hi: float) -> list[Word]:
    """Characters (CJK) or words (other scripts) with monotonic times inside [lo, hi] seconds."""
    words: list[Word] = []
    current: list[_TimedChar] = []

    def flush() -> None:
        if current:
            text = "".join(c.char for c in current)
            words.append(Word(text, round(current[0].start * 1000), round(current[-1].end * 1000)))
            current.clear()

    for tc in chars:
        if textnorm.has_cjk(tc.char):
            flush()
            words.append(Word(tc.char, round(tc.start * 1000), round(tc.end * 1000)))
        elif tc.char.isspace() or (textnorm.is_punctuation(tc.char) and tc.char not in "'’.-%"):
            flush()
        elif textnorm.is_punctuation(tc.char) and not current:
            continue
        else:
            current.append(tc)
    flush()
    # Trailing '.'/'-' picked up inside a word at a sentence end is punctuation, not part of the word.
    words = [w._replace(text=w.text.rstrip(".-")) for w in words if w.text.rstrip(".-")]
    clamped: list[Word] = []
    floor = round(lo * 1000)
    ceiling = round(hi * 1000)
    for w in words:
        start = min(max(w.start_ms, floor), ceiling)
        end = min(max(w.end_ms, start), ceiling)
        clamped.append(w._replace(start_ms=start, end_ms=end))
        floor = start
    return clamped


def _spread(text: str, regions: Sequence[tuple[int, int]]) -> list[_TimedChar]:
    """Times for ``text`` spread evenly over the speech regions, in proportion to their length."""
    seconds = [((end - start) / SAMPLE_RATE, start / SAMPLE_RATE) for start, end in regions]
    total = sum(length for length, _ in seconds) or 1.0
    step = total / len(text)
    chars = []
    for k, ch in enumerate(text):
        position = k * step  # seconds of speech before this character
        for length, offset in seconds:
            if position < length or (length, offset) == seconds[-1]:
                start = offset + min(position, length)
                chars.append(_TimedChar(ch, start, min(start + step, offset + length)))
                break
            position -= length
    return chars


def _utterances(
    item: _Decoded, options: TranscribeOptions, bias: hotwords.BiasPlan, duration_s: float
) -> list[Utterance]:
    text = _rewrite(item.text, item.language, options, bias)
    if not text:
        return []
    chunk_lo, chunk_hi = item.chunk.start / SAMPLE_RATE, min(duration_s, item.chunk.end / SAMPLE_RATE)
    chars = _retime(item.chars, text) if item.chars else []
    if not chars:  # no alignment: spread the text over the chunk's speech regions (pauses stay pauses)
        chars = _spread(text, item.chunk.speech)
    zh_like = item.language in ("zh", "yue") or textnorm.has_cjk(text)
    utterances: list[Utterance] = []
    for piece in _punctuate_and_split(chars, zh_like, options.punctuation):
        utterance_text = "".join(c.char for c in piece).strip()
        if options.punctuation:
            if zh_like:
                utterance_text = textnorm.end_with(utterance_text, "。")
        else:
            utterance_text = textnorm.strip_punctuation(utterance_text)
        if not utterance_text:
            continue
        words = _words(piece, chunk_lo, chunk_hi) if options.word_timestamps else []
        timed = [c for c in piece if not c.char.isspace() and not textnorm.is_punctuation(c.char)] or piece
        start = max(chunk_lo, timed[0].start)
        end = min(chunk_hi, max(timed[-1].end, start))
        if words:
            start, end = min(start, words[0].start_ms / 1000), max(end, words[-1].end_ms / 1000)
        utterances.append(
            Utterance(utterance_text, round(start * 1000), round(end * 1000), words, _public_language(item))
        )
    return utterances


def _public_language(item: _Decoded) -> str:
    return item.language if item.language else "zh"


def _monotonic(utterances: list[Utterance], previous_end: int) -> list[Utterance]:
    """Utterances in time order, none starting before the previous one ended, words inside their utterance."""
    fixed: list[Utterance] = []
    for u in utterances:
        start = max(u.start_ms, previous_end)
        end = max(u.end_ms, start)
        words = [
            w._replace(start_ms=min(max(w.start_ms, start), end), end_ms=min(max(w.end_ms, start), end))
            for w in u.words
        ]
        fixed.append(u._replace(start_ms=start, end_ms=end, words=words))
        previous_end = end
    return fixed


# ------------------------------------------------------------------------------------------- public API


def iter_utterances(
    audio: np.ndarray,
    options: TranscribeOptions = TranscribeOptions(),
    progress: ProgressCallback | None = None,
) -> Iterator[Utterance]:
    """Utterances in time order as their batch finishes decoding (for long audio and streaming callers).

    Options and audio are checked at the call, before the first utterance is asked for."""
    validate_options(options)
    return _utterance_stream(_as_mono(audio), options, progress)


def _utterance_stream(
    samples: np.ndarray, options: TranscribeOptions, progress: ProgressCallback | None
) -> Iterator[Utterance]:
    duration_s = len(samples) / SAMPLE_RATE
    settings = DecoderSettings.from_extra(options.extra)
    bias = hotwords.plan(options.hot_words, options.vocabulary)
    chunks = make_chunks(speech_regions(samples))
    if not chunks:
        if progress:
            progress(1.0)
        return
    model = load_whisper(options.model)
    language = options.language
    if language in ("zh", "en", "yue") or not model.model.is_multilingual:
        language = language if model.model.is_multilingual else "en"
    total = sum(c.end - c.start for c in chunks)
    done = 0
    previous_end = 0
    # A stretch of chunks is decoded in batches of similar length (little padding), then yielded in order.
    stretch = settings.batch_size * BATCHES_PER_STRETCH
    for first in range(0, len(chunks), stretch):
        window = chunks[first : first + stretch]
        by_length = sorted(window, key=lambda c: c.end - c.start)
        results: dict[int, _Decoded] = {}
        for b in range(0, len(by_length), settings.batch_size):
            batch = by_length[b : b + settings.batch_size]
            try:
                decoded = _decode_batch(
                    model, samples, batch, language, bias, settings, align=options.word_timestamps
                )
            except (RuntimeError, ValueError) as exc:
                raise EngineError(f"speech decoding failed: {exc}") from exc
            for item in decoded:
                results[item.chunk.start] = item
            done += sum(c.end - c.start for c in batch)
            if progress:
                progress(min(1.0, done / total))
        for chunk in window:
            utterances = _monotonic(
                _utterances(results[chunk.start], options, bias, duration_s), previous_end
            )
            if utterances:
                previous_end = utterances[-1].end_ms
            yield from utterances


def transcribe(
    audio: np.ndarray,
    options: TranscribeOptions = TranscribeOptions(),
    progress: ProgressCallback | None = None,
) -> Transcript:
    """Recognise speech in 16 kHz float32 mono ``audio``. Silence gives a transcript with empty text."""
    validate_options(options)
    samples = _as_mono(audio)
    duration_ms = round(len(samples) * 1000 / SAMPLE_RATE)
    utterances = list(iter_utterances(samples, options, progress))
    return Transcript(
        text=join_utterances(utterances),
        utterances=utterances,
        language=_dominant_language(utterances, options.language),
        duration_ms=duration_ms,
    )


def join_utterances(utterances: Sequence[Utterance]) -> str:
    return textnorm.join_tokens([u.text for u in utterances])


def _dominant_language(utterances: Sequence[Utterance], requested: str) -> str:
    if requested in ("zh", "en", "yue"):
        return requested
    spoken: dict[str, int] = {}
    for u in utterances:
        spoken[u.language] = spoken.get(u.language, 0) + (u.end_ms - u.start_ms) + 1
    if not spoken:
        return "zh" if requested == "zh-en" else ""
    return max(spoken, key=lambda lang: spoken[lang])


def detect_language(audio: np.ndarray, model: str | None = None) -> tuple[str, float]:
    """The language spoken (or sung) in ``audio`` and its probability, from up to 30 s of it.

    Speech found by VAD is preferred; without any (music, noise) the middle 30 s are used.
    Returns ("", 0.0) for empty audio."""
    import ctranslate2

    samples = _as_mono(audio)
    if len(samples) < SAMPLE_RATE * MIN_AUDIO_S:
        return "", 0.0
    regions = speech_regions(samples)
    window = 30 * SAMPLE_RATE
    if regions:
        clip = np.concatenate([samples[s:e] for s, e in regions])[:window]
    else:
        middle = max(0, (len(samples) - window) // 2)
        clip = samples[middle : middle + window]
    whisper = load_whisper(model)
    if not whisper.model.is_multilingual:
        return "en", 1.0
    chunk = Chunk(0, len(clip), [(0, len(clip))])
    features = _features(whisper, clip, [chunk], DecoderSettings(full_window=True))
    with _model_lock:
        encoded = whisper.model.encode(ctranslate2.StorageView.from_array(features), to_cpu=False)
        language, probability = _detect(whisper, encoded, None)[0]
    return language, float(probability)
