"""Decoding a batch of chunks with Whisper, and the checks that keep speech from being lost.

* Each chunk is encoded at its own length (rounded up to whole seconds plus ``pad_seconds`` of silence)
  rather than Whisper's fixed 30 s window: a 5 s clip then costs about a tenth of the encoder time. Chunks
  of similar length are decoded together (beam search over several at once).
* Language is detected per chunk from the same encoder output (``auto`` among all languages, ``zh-en`` between
  Mandarin and English), so a mixed recording gets per-utterance languages.
* A chunk whose first result looks wrong (a loop, a phrase read twice, much less text than speech, nothing at
  all, or the model's own doubt that it is speech) is decoded again with the full 30 s window; the better of
  the two results stays. A loop that survives is decoded once more by a beam search that may not repeat
  itself (``LOOP_FREE_NGRAM``).
* Coverage: after alignment, speech (by the VAD's frame probabilities) that no character covers for longer
  than ``MIN_UNCOVERED_S`` — Whisper skipping a sentence of a chunk — is decoded as a chunk of its own and
  merged; so is a word said on its own before or after the text (speech set apart by pauses) that the
  alignment stretched a neighbour over. A patch that only repeats the chunk's words is decoded again from the
  speech regions alone.
* Only a known subtitle credit on its own, or text both decodes doubt is speech, is dropped.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from tingyin.speech import guards, hotwords, textnorm
from tingyin.speech.chunking import SAMPLE_RATE, Chunk, SpeechMap
from tingyin.speech.options import DecodeOptions
from tingyin.speech.postprocess import DecodedChunk
from tingyin.speech.rescoring import (
    CORRECTED_CANDIDATES,
    SecondPass,
    UnigramChooser,
    biased_choice,
    hot_word_bonus,
    teacher_forced,
)
from tingyin.speech.timing import TimedChar, spoken, timed_chars
from tingyin.speech.types import DecodingStats
from tingyin.speech.whisper import (
    FULL_WINDOW_FRAMES,
    SAMPLES_PER_FRAME,
    Generated,
    Hypothesis,
    WhisperModelRunner,
    speech_frames,
    window_frames,
)

if TYPE_CHECKING:
    from faster_whisper.tokenizer import Tokenizer

PAD_S = 3.0  # silence after the speech in a short encoder window (less makes Whisper loop)
# A Mandarin request's windows get less: on zh_dev 2 s scored better than 3 s (13.21 -> 13.08% CER alone) and
# encodes less, while English lost words with it (en_dev 3.03 -> 3.26% WER: phrase tails and function words).
# 1.5 s was worse on Mandarin too (13.37%).
MANDARIN_PAD_S = 2.0
NO_SPEECH_LIMIT = 0.6
LOW_SCORE_LIMIT = -1.0
TOKENS_PER_S = 12  # output length cap: 10 + 12 tokens per second of audio
# Coverage is checked on the chunks and once more on the patches that fill their gaps: a patch can skip
# speech as its chunk did (zh-en3-1's "are a watch-house and a sentry-box, where" inside a patched tail).
COVER_DEPTH = 2
MIN_UNCOVERED_S = 1.0  # speech without any aligned character for this long is decoded again on its own
UNCOVERED_MARGIN_S = 0.25  # context kept on either side of an uncovered stretch
MIN_ISLAND_S = 0.25  # speech this long or longer, set apart by pauses, that characters barely cover
ISLAND_COVERED = 0.3  # ... ("barely": less than this share of it) is decoded again
LONGEST_CHAR_S = 1.0  # an aligned character (or English word) longer than this has swallowed other speech
STRETCHED_UNIT_TAIL_S = 0.5  # where a stretched unit's own sound lies: the end of its span
# A VAD region this long with fewer aligned characters or words a second than this had a sentence skipped
# (the alignment stretched the next sentence's first characters over it).
SPARSE_REGION_S = 2.0
SPARSE_UNITS_PER_S = 0.75
LOOP_FREE_NGRAM = 3  # the loop fallback's beam may not write any 3 tokens twice
ENGLISH_IN_MANDARIN = 0.9  # a chunk of a Mandarin request is decoded as English above this probability

# Style prompts: the previous-text context that sets the script and punctuation Whisper writes in. Mandarin
# gets the mixed-language one: it keeps English words in Latin letters, as the vendors' Mandarin models write
# them, and on zh_dev it scored better than a Simplified-Chinese-only prompt both on the clips with English
# (25.8% against 28.1% CER) and on the others (11.8% against 11.9%).
MANDARIN_PROMPT = "以下是中英文混合的句子，English单词保持英文原文。"
STYLE_PROMPTS = {
    "zh": MANDARIN_PROMPT,
    "zh-en": MANDARIN_PROMPT,
    "yue": "以下係廣東話嘅句子。",
    "en": "Hello, welcome. This is a sentence with punctuation.",
}


class Pass(NamedTuple):
    """One encoder + decoder pass over a batch of chunks."""

    chunks: list[Chunk]
    encoded: np.ndarray  # [batch, frames // 2, d_model]
    frames: int
    languages: list[str]
    tokenizers: list[Tokenizer]
    chosen: list[Hypothesis]
    generated: list[Generated]
    rescored: dict[int, object]  # chunk index -> alignment of the second pass's winner


def max_tokens(chunk: Chunk) -> int:
    return int(10 + TOKENS_PER_S * (chunk.end - chunk.start) / SAMPLE_RATE)


def pad_seconds(language: str) -> float:
    """Silence after the speech in a short encoder window for a request in ``language`` (before detection:
    the window is encoded first)."""
    return MANDARIN_PAD_S if language == "zh" else PAD_S


def prompt_tokens(
    tokenizer: Tokenizer, style: str, bias_text: str, caller_prompt: str | None = None
) -> list[int]:
    """Previous-text context (hot words, the style prompt, then the caller's own prompt, which Whisper
    follows most as it comes last) and the start sequence."""
    style_text = STYLE_PROMPTS.get(style, "")
    chinese = style in ("zh", "yue", "zh-en")
    previous = f"{bias_text}。{style_text}" if bias_text and chinese else f"{bias_text} {style_text}"
    previous = f"{previous.strip()} {caller_prompt or ''}".strip()
    tokens: list[int] = []
    if previous:
        tokens = [tokenizer.sot_prev, *tokenizer.encode(" " + previous)[-200:]]
    return [*tokens, *tokenizer.sot_sequence, tokenizer.no_timestamps]


def scoring_start(tokenizer: Tokenizer, hot_words: str) -> list[int]:
    """What the second pass scores a chunk's candidates after: the bare start sequence (without the style
    prompt it is about twice as fast, and it ranked candidates slightly better on zh_dev), behind the
    chunk's hot words where it was decoded with them in its prompt (``ChunkDecoder._prompt_hot_words``):
    the phrase's candidates, its corrections among them, are then judged by how the audio sounds to a
    model that expects the phrase, as the beam search that heard it. Scored without them, a correction
    the plain decode missed lost again (回暖 for 回乱 on zh_dev: of 132 words said and missed, 89 came out
    at weight 1 against 104 corrected blindly after decoding)."""
    start = list(tokenizer.sot_sequence)
    if not hot_words:
        return start
    return [tokenizer.sot_prev, *tokenizer.encode(" " + hot_words)[-200:], *start]


class ChunkDecoder:
    """Runs the passes of one batch of chunks on a ``WhisperModelRunner``."""

    def __init__(
        self,
        runner: WhisperModelRunner,
        second_pass: SecondPass | None,
        unigram: UnigramChooser | None,
        accurate_pass: SecondPass | None = None,
    ) -> None:
        self.runner = runner
        self.second_pass = second_pass
        self.unigram = unigram
        self.accurate_pass = accurate_pass  # the second pass of DecodeOptions.accuracy == "accurate"

    def _second_pass(self, options: DecodeOptions) -> SecondPass | None:
        if options.accuracy == "accurate" and self.accurate_pass is not None:
            return self.accurate_pass
        return self.second_pass

    # ------------------------------------------------------------------------------------------ passes

    def run_pass(
        self,
        audio: np.ndarray,
        chunks: Sequence[Chunk],
        language: str,
        bias: hotwords.BiasPlan,
        options: DecodeOptions,
        *,
        full_window: bool = False,
        languages: Sequence[str | None] | None = None,
        styled: bool = True,
        hot_word_prompts: Sequence[str] | None = None,
    ) -> Pass:
        """Decode ``chunks`` in one batch. ``languages``: each chunk's language, None (for all, or for one
        chunk) to detect it. ``styled``: with the style prompt of the chunk's language.
        ``hot_word_prompts``: each chunk's hot words for the prompt (``_prompt_hot_words``); None: none."""
        runner = self.runner
        frames = window_frames(chunks, full_window=full_window, pad_s=pad_seconds(language))
        encoded = runner.encode(runner.features(audio, chunks, frames))
        languages = self._fill_languages(encoded, language, languages)
        hot = hot_word_prompts if hot_word_prompts is not None else [""] * len(chunks)
        tokenizers = [runner.tokenizer(lang, options.task) for lang in languages]
        styles = [output_style(language, lang, options) if styled else "" for lang in languages]
        prompts = [
            prompt_tokens(tok, style, words, options.prompt)
            for tok, style, words in zip(tokenizers, styles, hot, strict=True)
        ]
        limits = [max_tokens(c) for c in chunks]
        done = self._generate(encoded, prompts, tokenizers, limits, languages, options, options.temperature)
        chosen, rescored = self._choose(
            audio, encoded, frames, chunks, languages, tokenizers, prompts, hot, done, bias, options
        )
        return Pass(list(chunks), encoded, frames, languages, tokenizers, chosen, done, rescored)

    def _generate(
        self,
        encoded: np.ndarray,
        prompts: list[list[int]],
        tokenizers: list[Tokenizer],
        limits: list[int],
        languages: list[str],
        options: DecodeOptions,
        temperature: float,
    ) -> list[Generated]:
        """Beam search (or sampling, at ``temperature`` > 0) for each row of ``encoded``: one generate call
        per prompt length (the start token must sit at one position in a batch); Traditional characters
        suppressed where every chunk of a call is Mandarin written as such."""
        groups: dict[int, list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(len(prompt), []).append(i)
        generated: list[Generated | None] = [None] * len(prompts)
        for indices in groups.values():
            suppress = [-1]
            if not options.translating and all(languages[i] == "zh" for i in indices):
                suppress += self.runner.traditional_tokens()
            results = self.runner.generate(
                encoded[indices],
                [prompts[i] for i in indices],
                beam_size=options.beam_size,
                max_tokens=[limits[i] for i in indices],
                suppress=suppress,
                tokenizers=[tokenizers[i] for i in indices],
                temperature=temperature,
            )
            for i, result in zip(indices, results, strict=True):
                generated[i] = result
        return [g for g in generated if g is not None]

    def _fill_languages(
        self, encoded: np.ndarray, language: str, known: Sequence[str | None] | None
    ) -> list[str]:
        if known is None:
            return self._languages(encoded, language)
        unknown = [i for i, lang in enumerate(known) if lang is None]
        detected = iter(self._languages(encoded[unknown], language) if unknown else [])
        return [lang if lang is not None else next(detected) for lang in known]

    def _languages(self, encoded: np.ndarray, language: str) -> list[str]:
        """Per chunk: the detected language (auto: any; zh-en: Mandarin or English), or the requested one.
        A Mandarin request still hears an English turn as English when the model is sure of it, as the
        vendors' Mandarin models write English in Latin letters rather than dropping it."""
        if language in ("auto", "zh-en"):
            allowed = ("zh", "en") if language == "zh-en" else None
            return [lang for lang, _ in self.runner.detect_languages(encoded, allowed)]
        if language == "zh":
            detected = self.runner.detect_languages(encoded, ("zh", "en"))
            return ["en" if lang == "en" and p >= ENGLISH_IN_MANDARIN else "zh" for lang, p in detected]
        return [language] * encoded.shape[0]

    def _choose(
        self,
        audio: np.ndarray,
        encoded: np.ndarray,
        frames: int,
        chunks: Sequence[Chunk],
        languages: list[str],
        tokenizers: list[Tokenizer],
        prompts: list[list[int]],
        hot_word_prompts: Sequence[str],
        generated: list[Generated],
        bias: hotwords.BiasPlan,
        options: DecodeOptions,
    ) -> tuple[list[Hypothesis], dict[int, object]]:
        rescored: dict[int, object] = {}
        second_pass = self._second_pass(options)
        rescore = options.second_pass and not options.translating  # it ranks Mandarin text
        if second_pass is not None and rescore and "zh" in languages:
            pools = {
                i: second_pass.pool(
                    result.hypotheses,
                    tokenizers[i],
                    bias,
                    options.second_pass_nbest,
                    options.second_pass_rewrites,
                )
                for i, result in enumerate(generated)
                if languages[i] == "zh" and any(textnorm.has_cjk(h.text) for h in result.hypotheses)
            }
            pools = {i: pool for i, pool in pools.items() if pool}
            if pools and second_pass.wide_window_below is not None and frames < FULL_WINDOW_FRAMES:
                self._widen(audio, chunks, tokenizers, prompts, generated, pools, second_pass, options)
            if pools:
                starts = {i: scoring_start(tokenizers[i], hot_word_prompts[i]) for i in pools}
                for i, choice in second_pass.choose(encoded, frames, chunks, pools, starts, bias).items():
                    rescored[i] = choice.alignment
                    generated[i] = generated[i]._replace(
                        hypotheses=[choice.hypothesis, *generated[i].hypotheses]
                    )
        chosen = []
        for i, result in enumerate(generated):
            if i in rescored:
                chosen.append(result.hypotheses[0])
            elif self.unigram is not None:
                written = "en" if options.translating else languages[i]
                chosen.append(self.unigram.choose(result.hypotheses, written, bias))
            else:
                chosen.append(biased_choice(result.hypotheses, bias))
        if bias.favoured:
            judged = (encoded, frames, chunks, tokenizers, hot_word_prompts)
            self._judge_corrections(*judged, chosen, rescored, bias)
        return chosen, rescored

    def _judge_corrections(
        self,
        encoded: np.ndarray,
        frames: int,
        chunks: Sequence[Chunk],
        tokenizers: list[Tokenizer],
        hot_word_prompts: Sequence[str],
        chosen: list[Hypothesis],
        rescored: dict[int, object],
        bias: hotwords.BiasPlan,
    ) -> None:
        """Where no second pass chose a chunk's text (English, other languages, Mandarin without the
        trigram), its text with a favoured phrase corrected in (``hotwords.corrections``) is scored
        against it by Whisper teacher-forced, each with its hot-word bonus, and the best taken (in place,
        into ``chosen`` and ``rescored``): replaced blindly after decoding, 358 hot words drawn from the
        words of 50 en_dev clips took the other 50 from 31 to 331 word errors (the paper → there paper,
        of our → performed)."""
        for i, hypothesis in enumerate(chosen):
            if i in rescored:
                continue
            corrections = hotwords.corrections(hypothesis.text, bias)
            variants = list(itertools.islice(corrections, CORRECTED_CANDIDATES))
            if not variants:
                continue
            candidates = [
                hypothesis,
                *(Hypothesis(tokenizers[i].encode(text), text, hypothesis.logprob) for text in variants),
            ]
            start = scoring_start(tokenizers[i], hot_word_prompts[i])
            scored = teacher_forced(
                self.runner,
                encoded,
                i,
                chunks[i],
                frames,
                start,
                [(c, hot_word_bonus(c.text, bias)) for c in candidates],
            )
            best = max(scored, key=lambda pair: pair[0])[1]
            chosen[i] = best.hypothesis
            rescored[i] = best.alignment

    def _widen(
        self,
        audio: np.ndarray,
        chunks: Sequence[Chunk],
        tokenizers: list[Tokenizer],
        prompts: list[list[int]],
        generated: list[Generated],
        pools: dict[int, list[Hypothesis]],
        second_pass: SecondPass,
        options: DecodeOptions,
    ) -> None:
        """Add to the pool of each doubtful chunk (the beam's average log-probability per token below the
        second pass's ``wide_window_below``) the n-best of the chunk decoded on Whisper's full 30 s window.
        The two windows err differently: on zh_dev the union's best candidates hold 22% fewer errors than
        the short window's alone (262 against 336 characters), the padding Whisper was trained with
        often hearing a syllable right that the short window does not. The candidates are scored like the
        others, against the short window's encoding."""
        assert second_pass.wide_window_below is not None
        doubtful = [i for i in pools if generated[i].average_logprob < second_pass.wide_window_below]
        if not doubtful:
            return
        runner = self.runner
        encoded = runner.encode(runner.features(audio, [chunks[i] for i in doubtful], FULL_WINDOW_FRAMES))
        # Beam search even where the request samples: sampled candidates cost the accurate mode accuracy.
        results = self._generate(
            encoded,
            [prompts[i] for i in doubtful],
            [tokenizers[i] for i in doubtful],
            [max_tokens(chunks[i]) for i in doubtful],
            ["zh"] * len(doubtful),  # every pooled chunk is Mandarin
            options,
            temperature=0.0,
        )
        for i, result in zip(doubtful, results, strict=True):
            pools[i] = second_pass.widened(pools[i], result.hypotheses)

    # --------------------------------------------------------------------------------------- the batch

    def decode(
        self,
        audio: np.ndarray,
        chunks: Sequence[Chunk],
        language: str,
        bias: hotwords.BiasPlan,
        options: DecodeOptions,
        speech: SpeechMap,
        *,
        depth: int = 0,
    ) -> list[DecodedChunk]:
        first = self.run_pass(audio, chunks, language, bias, options)
        where: list[tuple[Pass, int]] = [(first, i) for i in range(len(chunks))]
        redo = [i for i in range(len(chunks)) if self._doubtful(first, i)]
        doubted: set[int] = set()  # chunks that both decodes doubt are speech at all
        # A chunk whose text the guards threw away (mostly the style prompt written back: speech Whisper
        # could not make out, in noise or on a telephone line) is decoded again without that prompt, and
        # its language detected again (English misread as Mandarin comes out as the Mandarin prompt). The
        # others keep the prompt and the first pass's language.
        thrown = {i for i in redo if discarded(first.chosen[i].text, first.languages[i])}
        for group, styled in (([i for i in redo if i not in thrown], True), (sorted(thrown), False)):
            if not group:
                continue
            second = self.run_pass(
                audio,
                [chunks[i] for i in group],
                language,
                bias,
                options,
                full_window=True,
                languages=[first.languages[i] if styled else None for i in group],
                styled=styled,
            )
            for k, i in enumerate(group):
                if self._better(second, k, first, i):
                    where[i] = (second, k)
                if self._no_speech(first.generated[i]) and self._no_speech(second.generated[k]):
                    doubted.add(i)
        if bias.favoured:
            self._prompt_hot_words(audio, chunks, language, bias, options, where)
        decoded: list[DecodedChunk] = []
        token_lists: list[list[int]] = []
        for i, (chunk, (run, k)) in enumerate(zip(chunks, where, strict=True)):
            hypothesis = run.chosen[k]
            temperature = run.generated[k].temperature
            if self._runaway(run, k):
                unlooped = self._break_loop(run, k, options)
                if unlooped is not None:  # a beam search's text, whatever the request sampled at
                    hypothesis, temperature = unlooped, 0.0
            tokens, text = hypothesis.tokens, hypothesis.text
            if discarded(text, run.languages[k]) or i in doubted:
                tokens, text = [], ""
            token_lists.append(tokens)
            rescored = k in run.rescored and tokens == run.chosen[k].tokens
            stats = decoding_stats(chunk, hypothesis, text, temperature, run.generated[k].no_speech_prob)
            decoded.append(DecodedChunk(chunk, run.languages[k], text, [], rescored, stats))
        decoded = self._align(decoded, token_lists, where)
        if depth < COVER_DEPTH:
            decoded = self._cover(audio, decoded, language, bias, options, speech, depth)
        return decoded

    def _prompt_hot_words(
        self,
        audio: np.ndarray,
        chunks: Sequence[Chunk],
        language: str,
        bias: hotwords.BiasPlan,
        options: DecodeOptions,
        where: list[tuple[Pass, int]],
    ) -> None:
        """Decode again, with the hot words it missed in the prompt, each chunk whose plain decode missed a
        favoured phrase but heard something like it (``hotwords.missed``); take that text where it holds
        one of them. The prompt is there to find a phrase the plain decode missed: it changes other
        words as well, so a chunk that says none of the phrases, or already holds them, keeps the text
        decoded without them, and a chunk's prompt holds only the phrases it may have missed. On zh_dev,
        five phrases said nowhere in it (weight 1) changed 101 of 300 transcripts, 483 → 496 errors,
        when every chunk was decoded with them all in the prompt. Where a phrase is said, the prompt had
        also changed the other words of its chunk, for the better on balance (docs/speech.md, "Hot-word
        weights")."""
        hinted: list[int] = []
        phrases: list[tuple[hotwords.Phrase, ...]] = []
        for i, (run, k) in enumerate(where):
            readings = [run.chosen[k].text, *(h.text for h in run.generated[k].hypotheses)]
            # A chunk the second pass chose for had each phrase's correction among its candidates: what
            # it did not take is missed, however like the phrase a stretch of its text sounds.
            found = hotwords.missed(run.chosen[k].text, readings, bias, corrected_after=k not in run.rescored)
            if found:
                hinted.append(i)
                phrases.append(found)
        if not hinted:
            return
        prompted = self.run_pass(
            audio,
            [chunks[i] for i in hinted],
            language,
            bias,
            options,
            languages=[where[i][0].languages[where[i][1]] for i in hinted],
            hot_word_prompts=[hotwords.prompt_text(hotwords.BiasPlan(found, ())) for found in phrases],
        )
        for k, (i, found) in enumerate(zip(hinted, phrases, strict=True)):
            if hotwords.holds(prompted.chosen[k].text, found, corrected_after=k not in prompted.rescored):
                where[i] = (prompted, k)

    @staticmethod
    def _no_speech(result: Generated) -> bool:
        """The model itself thinks this is no speech, and its best reading scores low."""
        return result.no_speech_prob > NO_SPEECH_LIMIT and result.average_logprob < LOW_SCORE_LIMIT

    def _doubtful(self, run: Pass, k: int) -> bool:
        text = run.chosen[k].text
        return (
            self._no_speech(run.generated[k])
            or run.generated[k].capped
            or guards.needs_redecode(text, run.chunks[k], run.languages[k])
            # A text the guards would throw away is re-decoded first: on a short window Whisper writes its
            # style prompt back for speech it cannot place (a telephone-band "打开Let It Go" came out as
            # 英文是中英文), and the full window hears it.
            or discarded(text, run.languages[k])
        )

    @staticmethod
    def _runaway(run: Pass, k: int) -> bool:
        """The chunk's result loops, or ran into the token cap (12 tokens a second of audio is more than
        any speaker says: the decoder was repeating itself in a way the loop check does not see, such as
        spelled letters with a variation)."""
        return run.generated[k].capped or guards.is_loop(run.chosen[k].text)

    @staticmethod
    def _better(new: Pass, k: int, old: Pass, i: int) -> bool:
        """Whether the full-window result should replace the first one: text the guards keep over text they
        throw away, loop-free over looping, otherwise the one that says more (the usual failure is Whisper
        stopping early), unless it is a loop."""
        new_text, old_text = new.chosen[k].text, old.chosen[i].text
        new_discarded = discarded(new_text, new.languages[k])
        old_discarded = discarded(old_text, old.languages[i])
        if new_discarded or old_discarded:  # text the guards throw away never replaces text they keep
            return old_discarded and not new_discarded
        new_runaway, old_runaway = ChunkDecoder._runaway(new, k), ChunkDecoder._runaway(old, i)
        if new_runaway or guards.repeats_itself(new_text):
            return old_runaway and not new_runaway
        if old_runaway or guards.repeats_itself(old_text):
            return True
        return len(textnorm.strip_punctuation(new_text)) >= len(textnorm.strip_punctuation(old_text))

    def _break_loop(self, run: Pass, k: int, options: DecodeOptions) -> Hypothesis | None:
        """Decode one looping chunk again by a beam search that may not repeat any ``LOOP_FREE_NGRAM``
        tokens; its result when it is complete and loop-free. Not sampling at a temperature: that gives
        a different text on each request for the same audio, now and then a piece of the style prompt."""
        prompt = prompt_tokens(
            run.tokenizers[k], output_style(run.languages[k], run.languages[k], options), ""
        )
        [result] = self.runner.generate(
            run.encoded[k : k + 1],
            [prompt],
            beam_size=options.beam_size,
            max_tokens=[max_tokens(run.chunks[k])],
            suppress=[-1],
            tokenizers=[run.tokenizers[k]],
            no_repeat_ngram=LOOP_FREE_NGRAM,
        )
        found = result.hypotheses[0] if result.hypotheses else None
        if found is not None and found.complete and not guards.is_loop(found.text):
            return found
        return None

    def _align(
        self, decoded: list[DecodedChunk], token_lists: list[list[int]], where: list[tuple[Pass, int]]
    ) -> list[DecodedChunk]:
        """Character times (and token probabilities) from cross-attention, one call per (pass, language)."""
        out = list(decoded)
        groups: dict[tuple[int, str], list[int]] = {}
        for i, item in enumerate(decoded):
            if not token_lists[i]:
                continue
            run, k = where[i]
            if item.rescored:
                out[i] = item._replace(
                    chars=timed_chars(run.tokenizers[k], token_lists[i], run.rescored[k], item.chunk)
                )
                continue
            groups.setdefault((id(run), item.language), []).append(i)
        for indices in groups.values():
            run = where[indices[0]][0]
            tokenizer = run.tokenizers[where[indices[0]][1]]
            rows = [where[i][1] for i in indices]
            results = self.runner.align(
                run.encoded[rows],
                list(tokenizer.sot_sequence),
                [token_lists[i] for i in indices],
                [speech_frames(decoded[i].chunk, run.frames) for i in indices],
            )
            for i, result in zip(indices, results, strict=True):
                out[i] = decoded[i]._replace(
                    chars=timed_chars(tokenizer, token_lists[i], result, decoded[i].chunk)
                )
        return out

    # ---------------------------------------------------------------------------------------- coverage

    def _cover(
        self,
        audio: np.ndarray,
        decoded: list[DecodedChunk],
        language: str,
        bias: hotwords.BiasPlan,
        options: DecodeOptions,
        speech: SpeechMap,
        depth: int = 0,
    ) -> list[DecodedChunk]:
        """Decode the speech no character covers (a sentence Whisper skipped) and merge it in. A patch
        (``depth`` 1) is only searched for speech swallowed inside it: its edges are the margins around its
        gap, where the chunk's own neighbouring words lie (checking them too put 司法, a misreading of the
        end of 嘴巴, inside 嘴巴)."""
        gaps: list[tuple[int, Chunk, Chunk | None]] = []
        sparse: set[int] = set()  # gaps that are a whole sparse speech region (see ``sparse_regions``)
        whole = depth == 0
        for index, item in enumerate(decoded):
            stretches = uncovered(item, speech) if whole else []
            for start_s, end_s in stretches:
                gap = with_margins(item.chunk, start_s, end_s)
                if gap.end > gap.start:
                    gaps.append((index, gap, speech_inside(item.chunk, start_s, end_s, gap)))
            for start_s, end_s in sparse_regions(item) if whole else []:
                if not overlaps(start_s, end_s, stretches):
                    sparse.add(len(gaps))
                    gaps.append((index, stretch_of(item.chunk, start_s, end_s), None))
                    stretches.append((start_s, end_s))
            for start_s, end_s in swallowed(item, speech):
                if not overlaps(start_s, end_s, stretches):
                    sparse.add(len(gaps))  # merged like a sparse region: the stretched word moves after it
                    second_try = without_stretched_end(item.chunk, start_s, end_s)
                    gaps.append((index, with_margins(item.chunk, start_s, end_s), second_try))
                    stretches.append((start_s, end_s))
            for start_s, end_s in skipped_islands(item, speech) if whole else []:
                if not overlaps(start_s, end_s, stretches):
                    gaps.append((index, with_margins(item.chunk, start_s, end_s), None))
        if not gaps:
            return decoded
        patches = self.decode(
            audio, [gap for _, gap, _ in gaps], language, bias, options, speech, depth=depth + 1
        )
        # A patch that only repeats the chunk's own words had a sentence with text in its window, and Whisper
        # wrote that one again and skipped the rest (a phone number followed by "打开去大连" came back as
        # "打开" twice, no digits). Those are decoded once more without it: the speech regions lying mostly
        # inside the uncovered stretch alone (a swallowed stretch: ``without_stretched_end``). Doing that for
        # every patch lost an English clause elsewhere.
        retry = [
            k
            for k, ((index, _, narrow), patch) in enumerate(zip(gaps, patches, strict=True))
            if narrow is not None and echoes(patch, decoded[index])
        ]
        if retry:
            narrowed = [gaps[k][2] for k in retry]
            again = self.decode(
                audio,
                [c for c in narrowed if c is not None],
                language,
                bias,
                options,
                speech,
                depth=depth + 1,
            )
            for k, patch in zip(retry, again, strict=True):
                patches[k] = patch
        out = list(decoded)
        for k, ((index, _, _), patch) in enumerate(zip(gaps, patches, strict=True)):
            if not textnorm.strip_punctuation(patch.text) or echoes(patch, out[index]):
                continue
            out[index] = merge_patch(out[index], patch, reseat=k in retry or k in sparse)
        return out


def discarded(text: str, language: str) -> bool:
    """Text the guards throw away: a subtitle credit, or Whisper writing back the style prompt of
    ``language`` (the decoded language) instead of what was said."""
    return guards.is_hallucination(text) or guards.echoes_prompt(text, STYLE_PROMPTS.get(language, ""))


def output_style(requested: str, language: str, options: DecodeOptions) -> str:
    """The style prompt of a chunk in ``language``; none for a translation (Whisper base repeats an English
    style prompt instead of translating). A Mandarin chunk of a mixed (zh-en) request keeps English words
    in Latin letters."""
    if options.translating:
        return ""
    return "zh-en" if requested == "zh-en" and language == "zh" else language


def decoding_stats(
    chunk: Chunk, hypothesis: Hypothesis, text: str, temperature: float, no_speech_prob: float
) -> DecodingStats:
    """Whisper's per-window figures of the decode a chunk's text came from (the seek in mel frames; the
    average log-probability per token counting the end token, as Whisper does)."""
    return DecodingStats(
        seek=chunk.start // SAMPLES_PER_FRAME,
        temperature=temperature,
        avg_logprob=hypothesis.logprob / (len(hypothesis.tokens) + 1),
        compression_ratio=guards.compression_ratio(text),
        no_speech_prob=no_speech_prob,
    )


def spoken_units(chars: Sequence[TimedChar]) -> list[TimedChar]:
    """What was said, one unit per Chinese character, digit or Latin word: a word's letters are timed one by
    one, so only the word as a whole can show that the alignment stretched it over skipped speech."""
    units: list[TimedChar] = []
    for group in _word_groups(chars):
        said = [
            c
            for c in group
            if _is_letter(c.char) or not (c.char.isspace() or textnorm.is_punctuation(c.char))
        ]
        if said:
            units.append(TimedChar("".join(c.char for c in said), said[0].start, max(c.end for c in said)))
    return units


def uncovered(item: DecodedChunk, speech: SpeechMap) -> list[tuple[float, float]]:
    """Stretches (seconds) of the chunk holding at least ``MIN_UNCOVERED_S`` of VAD speech that no character
    accounts for: before the first character, after the last, or inside a character or word stretched far
    beyond any real one's length (the alignment puts skipped audio on a neighbouring token)."""
    chunk_lo, chunk_hi = item.chunk.start / SAMPLE_RATE, item.chunk.end / SAMPLE_RATE
    timed = spoken_units(item.chars)
    if not timed:
        if textnorm.strip_punctuation(item.text):
            return []  # text without alignment: nothing to judge coverage by
        candidates = [(chunk_lo, chunk_hi)]
    else:
        candidates = [(chunk_lo, timed[0].start)]
        candidates += [(c.start + LONGEST_CHAR_S, c.end) for c in timed if c.end - c.start > LONGEST_CHAR_S]
        candidates.append((timed[-1].end, chunk_hi))
    return [
        (lo, hi)
        for lo, hi in candidates
        if hi - lo >= MIN_UNCOVERED_S and speech.speech_seconds(lo, hi) >= MIN_UNCOVERED_S
    ]


def swallowed(item: DecodedChunk, speech: SpeechMap) -> list[tuple[float, float]]:
    """Stretches (seconds) from the end of a unit (or the chunk's start) to the end of the next one where
    that one is stretched (longer than ``LONGEST_CHAR_S``) and the speech in the pause before it and the
    speech beyond a unit's length in it hold ``MIN_UNCOVERED_S`` together: the alignment parked skipped
    speech in the pause, on the next word, or both (a patch of zh-en3-1 came back as "We are two or more
    guards" for "are a watch-house and a sentry-box, where two or more guards", "We" aligned over 1.9 s
    after a 0.7 s pause). The stretch holds the stretched unit itself, since whose sound lies where in it
    is unknown: its patch is merged like a sparse region's (``merge_patch`` with ``reseat``). In a whole
    chunk ``uncovered`` finds a unit whose own excess holds that much speech, and its stretch is kept; in
    a patch this is the only search, so it must find that case too (the same recording, its samples one
    16-bit step apart, lost the clause again: "We're" over 2.4 s, 1.1 s of speech beyond a unit's length,
    0.8 s in the pause before it)."""
    found = []
    previous_end = item.chunk.start / SAMPLE_RATE
    for unit in spoken_units(item.chars):
        if unit.end - unit.start > LONGEST_CHAR_S and unit.start > previous_end:
            pause = speech.speech_seconds(previous_end, unit.start)
            beyond = speech.speech_seconds(unit.start + LONGEST_CHAR_S, unit.end)
            if pause + beyond >= MIN_UNCOVERED_S:
                found.append((previous_end, unit.end))
        previous_end = unit.end
    return found


def without_stretched_end(chunk: Chunk, start_s: float, end_s: float) -> Chunk | None:
    """A swallowed stretch (``swallowed``) for a second try, when its patch only repeated the chunk's words:
    no margins, and without the last ``STRETCHED_UNIT_TAIL_S`` of the stretched unit, where its own sound
    lies, so that Whisper cannot start from that word again (zh-en3-1: the stretch 50.88-54.20 s with its
    margins came back as "We're two", the said "where two"; 50.88-53.70 s as "An old are a watch house and a
    century box"). None when too little is left."""
    stretch = stretch_of(chunk, start_s, end_s - STRETCHED_UNIT_TAIL_S)
    return None if stretch.end - stretch.start < MIN_UNCOVERED_S * SAMPLE_RATE else stretch


def with_margins(chunk: Chunk, start_s: float, end_s: float) -> Chunk:
    """The stretch ``start_s``-``end_s`` with ``UNCOVERED_MARGIN_S`` of context on either side, inside the
    chunk, as a chunk of its own (empty when the stretch lies outside the chunk)."""
    return stretch_of(chunk, start_s - UNCOVERED_MARGIN_S, end_s + UNCOVERED_MARGIN_S)


def stretch_of(chunk: Chunk, start_s: float, end_s: float) -> Chunk:
    """The part of ``chunk`` from ``start_s`` to ``end_s`` as a chunk of its own, all of it speech."""
    lo = max(chunk.start, int(start_s * SAMPLE_RATE))
    hi = min(chunk.end, int(end_s * SAMPLE_RATE))
    return Chunk(lo, hi, [(lo, hi)])


def overlaps(start_s: float, end_s: float, spans: Sequence[tuple[float, float]]) -> bool:
    return any(lo < end_s and start_s < hi for lo, hi in spans)


def speech_inside(chunk: Chunk, start_s: float, end_s: float, gap: Chunk) -> Chunk | None:
    """The chunk's speech regions lying mostly inside the uncovered stretch ``start_s``-``end_s``, as a chunk,
    when that is narrower than ``gap`` (the stretch with its margins); else None."""
    lo_s, hi_s = start_s * SAMPLE_RATE, end_s * SAMPLE_RATE
    inside = [(s, e) for s, e in chunk.speech if min(e, hi_s) - max(s, lo_s) >= 0.5 * (e - s)]
    if not inside:
        return None
    lo, hi = max(chunk.start, inside[0][0]), min(chunk.end, inside[-1][1])
    if hi - lo < MIN_UNCOVERED_S * SAMPLE_RATE or (lo <= gap.start and hi >= gap.end):
        return None
    return Chunk(lo, hi, [r for r in inside if r[0] < hi and r[1] > lo])


def echoes(patch: DecodedChunk, item: DecodedChunk) -> bool:
    """Whether a patch's text (two units or more: Chinese characters, other words) only repeats a run of
    the chunk's own text."""
    said, own = textnorm.units(patch.text), textnorm.units(item.text)
    return len(said) >= 2 and any(own[i : i + len(said)] == said for i in range(len(own) - len(said) + 1))


def skipped_islands(item: DecodedChunk, speech: SpeechMap) -> list[tuple[float, float]]:
    """Stretches of speech (seconds) before the chunk's text or after it, set apart by real pauses
    (``SpeechMap.islands``), at least ``MIN_ISLAND_S`` long, that aligned characters cover less than
    ``ISLAND_COVERED`` of: a word said on its own that Whisper skipped, its neighbour's alignment stretched
    over it (a leading "Quote," before a pause came back as "On the top of ...", "On" aligned from inside
    "Quote")."""
    timed = spoken(item.chars)
    if not timed:
        return []  # ``uncovered`` takes a chunk without characters whole
    chunk_lo, chunk_hi = item.chunk.start / SAMPLE_RATE, item.chunk.end / SAMPLE_RATE
    skipped = []
    for lo, hi in speech.islands(chunk_lo, chunk_hi):
        # Only before the first character's end or after the last one's start: inside the text, a patch's
        # characters would interleave with the chunk's by time (spelled letters did), and ``uncovered``
        # and ``sparse_regions`` look there.
        outside = hi <= timed[0].end or lo >= timed[-1].start
        if hi - lo < MIN_ISLAND_S or not outside:
            continue
        covered = sum(max(0.0, min(hi, c.end) - max(lo, c.start)) for c in timed)
        if covered < ISLAND_COVERED * (hi - lo):
            skipped.append((lo, hi))
    return skipped


def own_time(char: TimedChar) -> float:
    """Where an aligned character is counted: the middle of its first ``LONGEST_CHAR_S`` (a longer one
    holds skipped speech after that, see ``uncovered``)."""
    return (char.start + min(char.end, char.start + LONGEST_CHAR_S)) / 2


def sparse_regions(item: DecodedChunk) -> list[tuple[float, float]]:
    """The chunk's speech regions (seconds) of at least ``SPARSE_REGION_S`` holding fewer than
    ``SPARSE_UNITS_PER_S`` aligned characters or words a second, each counted where its first
    ``LONGEST_CHAR_S`` lies: Whisper skipped the sentence spoken there, and its neighbours' characters were
    stretched over it in pieces too short for ``uncovered`` to see."""
    timed = spoken_units(item.chars)
    if not timed:
        return []  # ``uncovered`` takes a chunk without characters whole
    marks = [own_time(c) for c in timed]
    regions = []
    for start, end in item.chunk.speech:
        lo, hi = start / SAMPLE_RATE, end / SAMPLE_RATE
        if hi - lo >= SPARSE_REGION_S and sum(lo <= m < hi for m in marks) < (hi - lo) * SPARSE_UNITS_PER_S:
            regions.append((lo, hi))
    return regions


def merge_patch(item: DecodedChunk, patch: DecodedChunk, *, reseat: bool = False) -> DecodedChunk:
    """The chunk's text and characters with a re-decoded stretch inserted in time order, a Latin word's
    letters always together (sorting letter by letter wove a patch's words into the chunk's: "knee An
    loled d"). With ``reseat`` (a patch of skipped speech regions: see ``speech_inside`` and
    ``sparse_regions``), the chunk's characters or words stretched over the patch (the alignment parked
    the skipped speech on them: their first ``LONGEST_CHAR_S`` lies inside it) move to the chunk's next
    speech after it, where their own sound is; moved ones that the patch says again are dropped."""
    added = patch_chars(patch)
    spoken = [c for c in added if not c.char.isspace()]
    own = _word_groups(item.chars)
    if reseat and spoken:
        first, last = spoken[0].start, spoken[-1].end

        def stretched_over(group: list[TimedChar]) -> bool:
            unit = _as_unit(group)
            return unit.end - unit.start > LONGEST_CHAR_S and first <= own_time(unit) <= last

        moved = [g for g in own if stretched_over(g)]
        said = "".join(c.char for c in spoken)
        repeated = len(moved) >= 1 and "".join(c.char for g in moved for c in g) in said
        # Their sound starts with the chunk's next speech region after the patch.
        after = min((s / SAMPLE_RATE for s, _ in item.chunk.speech if s / SAMPLE_RATE >= last), default=last)
        own = [
            [c._replace(start=after, end=max(c.end, after)) for c in g] if stretched_over(g) else g
            for g in own
            if not (repeated and stretched_over(g))
        ]
    groups = sorted([*own, *_word_groups(added)], key=_group_time)
    chars = [c for g in groups for c in g]
    if item.chars and patch.chars:
        text = "".join(c.char for c in chars)
    else:
        text = (
            textnorm.join_tokens([item.text, patch.text])
            if item.chunk.start <= patch.chunk.start
            else textnorm.join_tokens([patch.text, item.text])
        )
        chars = []
    stats = (
        item.decoding._replace(compression_ratio=guards.compression_ratio(text)) if item.decoding else None
    )
    return item._replace(text=text, chars=chars, rescored=item.rescored and patch.rescored, decoding=stats)


def _word_groups(chars: Sequence[TimedChar]) -> list[list[TimedChar]]:
    """``chars`` in groups that move together: a Latin word's letters with the spaces before them, a
    Chinese character with any space before it, punctuation with what it follows (an apostrophe is a
    letter: it opens a word)."""
    groups: list[list[TimedChar]] = []
    in_word = False
    for char in chars:
        mark = char.char
        letter = _is_letter(mark)
        joins = (
            bool(groups)
            and not mark.isspace()
            and (
                (letter and in_word)
                or (textnorm.is_punctuation(mark) and not letter)
                or all(c.char.isspace() for c in groups[-1])
            )
        )
        if joins:
            groups[-1].append(char)
        else:
            groups.append([char])
        in_word = letter
    return groups


def _is_letter(mark: str) -> bool:
    """A letter of a Latin word (an apostrophe too: "don't" is one word)."""
    return mark.isascii() and (mark.isalpha() or mark == "'")


def _group_time(group: list[TimedChar]) -> float:
    """When a group is said: its first character that is not a space (Whisper times a word's leading space
    apart from the word, at the chunk's start for its first word)."""
    return next((c.start for c in group if not c.char.isspace()), group[0].start)


def _as_unit(group: list[TimedChar]) -> TimedChar:
    """A group as one timed unit: its characters joined, timed from its first one that is not a space to
    its last end (a leading space is timed apart from its word, see ``_group_time``)."""
    said = [c for c in group if not c.char.isspace()] or group
    return TimedChar("".join(c.char for c in group), said[0].start, max(c.end for c in said))


def patch_chars(patch: DecodedChunk) -> list[TimedChar]:
    """A patch's characters, with a separating space where two non-Chinese words would otherwise touch.
    Its own leading spaces go: Whisper's " In" is timed at the patch's start, which can lie inside the
    chunk's last word (嘴 "  " 巴); the separating space takes the first spoken character's time."""
    chars = list(itertools.dropwhile(lambda c: c.char.isspace(), patch.chars))
    if not chars or textnorm.has_cjk(chars[0].char):
        return chars
    first = chars[0]
    return [TimedChar(" ", first.start, first.start), *chars]


__all__ = [
    "STYLE_PROMPTS",
    "ChunkDecoder",
    "DecodedChunk",
    "decoding_stats",
    "merge_patch",
    "output_style",
    "uncovered",
]
