"""Choosing among the beam's hypotheses: what the audio supports and what makes sense.

Whisper base hears Mandarin syllables better than it picks their characters (公积金首套房 → 攻击金手套房).
For a Mandarin chunk the ``SecondPass`` takes the beam's best distinct hypotheses, asks a ``RewriteProposer``
(the word trigram) for sound-alike rewrites of each, rates every candidate with each ``TextScorer`` (with
its weight), scores the likeliest few by Whisper itself (teacher-forced log-probability over the encoder
output already computed, one ``align`` call per chunk) and keeps the best sum. The winner's alignment is
reused for its timestamps.

Another language model joins by implementing ``TextScorer`` and being passed to ``SecondPass`` with a weight
(the accurate mode's neural model does: ``speech/neural_lm.py``).
Without any scorer (``TINGYIN_ZH_LM=off``) the ``UnigramChooser`` re-ranks the n-best with a word-frequency
model instead.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from tingyin.speech import hotwords, textnorm
from tingyin.speech.chunking import Chunk
from tingyin.speech.guards import is_loop
from tingyin.speech.whisper import Hypothesis, WhisperModelRunner, speech_frames

if TYPE_CHECKING:
    from faster_whisper.tokenizer import Tokenizer

LENGTH_REWARD = 1.0  # nats per character: offsets every model's preference for short text
HOT_WORD_BONUS = 0.5  # nats per unit of hot-word weight for a candidate containing the phrase
# Candidates with a favoured phrase corrected in (``hotwords.corrections``) a pool may gain, the beam
# choice's first: each is scored teacher-forced.
CORRECTED_CANDIDATES = 4
# Candidates of a chunk that get a teacher-forced score (the beam's choice and the best others by the cheap
# estimate, see ``SecondPass.choose``): on zh_dev 4 scored 488 errors against 491 when all (about 8 a
# chunk) were, with under half the scoring calls; 3 scored 498, 2 scored 521, 5 scored 487.
SCORED_CANDIDATES = 4
# The estimate of a rewrite's acoustic score before it is computed: its source hypothesis's beam
# log-probability less these nats per changed character (the trigram's rewrite costs, zh_lm.py).
ESTIMATED_EXACT_COST = 2.0  # same toneless reading
ESTIMATED_FUZZY_COST = 4.0  # fuzzy initials or finals only
# Encoder frames after the speech that teacher-forced scoring attends to (50 a second). The end of the
# window tells a candidate that stops early from one that ends where the speech does: zh_dev errors with a
# margin of 0.5 s: 520, 1 s: 499, 1.5 s: 496, 2 s: 495, 3 s: 496, the whole window: 495. Each second costs
# about 4% more scoring time on the benchmark recording's chunks.
SCORING_MARGIN_FRAMES = 100
PRUNE_MARGIN = 0.0  # nats of text score below the beam's choice that still earn a teacher-forced score
# The unigram fallback (no trigram): beam log-probability + weight × unigram log-probability.
UNIGRAM_WEIGHT = 0.2  # tuned on 40 zh_dev clips
UNIGRAM_LENGTH_REWARD = 0.5


class TextScorer(Protocol):
    """A language model over transcripts: log-probability (nats) of each text."""

    def score_texts(self, texts: Sequence[str]) -> list[float]: ...


class RewriteProposer(Protocol):
    """Proposes sound-alike rewrites of a text, best first; ``keep`` phrases are never changed."""

    def rewrites(self, text: str, limit: int = 4, keep: tuple[str, ...] = ()) -> list[str]: ...


def estimated_logprob(source_logprob: float, text: str, rewrite: str) -> float:
    """A cheap stand-in for the teacher-forced log-probability of ``rewrite``, a sound-alike rewrite of
    ``text`` (a hypothesis as the proposer read it: cleaned, Simplified) whose beam log-probability is
    ``source_logprob``: that less the cost of each changed character. Only used to choose which candidates
    get the real score."""
    from tingyin.speech.lexicon import rewrite_cost

    if len(text) != len(rewrite):  # not a character-for-character rewrite: as unlikely as a fuzzy change each
        return source_logprob - ESTIMATED_FUZZY_COST * max(len(text), len(rewrite))
    return source_logprob - rewrite_cost(text, rewrite, ESTIMATED_EXACT_COST, ESTIMATED_FUZZY_COST)


class Choice(NamedTuple):
    hypothesis: Hypothesis  # logprob: Whisper's teacher-forced log-probability of the text
    alignment: Any  # ctranslate2 WhisperAlignmentResult, reused for the timestamps


def flat(text: str) -> str:
    """A hypothesis as compared for sameness: Simplified, no punctuation or spaces, lower case."""
    return textnorm.strip_punctuation(textnorm.to_simplified(text)).replace(" ", "").lower()


def hot_word_bonus(text: str, bias: hotwords.BiasPlan) -> float:
    """Nats a candidate gains (favoured phrases) or loses (suppressed ones) by the hot words it contains."""
    return HOT_WORD_BONUS * hotwords.weight_in(flat(text), bias)


def biased_choice(candidates: list[Hypothesis], bias: hotwords.BiasPlan) -> Hypothesis:
    """The beam's best, unless the hot words lift another of its hypotheses (one with a larger bonus)
    above it by beam log-probability plus bonus. Without hot words in play this is the beam's choice."""
    if not candidates:
        return Hypothesis([], "", 0.0)
    first = candidates[0]
    if not (bias.favoured or bias.suppressed):
        return first
    base = hot_word_bonus(first.text, bias)
    contenders = [first, *(c for c in candidates[1:] if hot_word_bonus(c.text, bias) > base)]
    return max(contenders, key=lambda c: c.logprob + hot_word_bonus(c.text, bias))


class UnigramChooser:
    """Re-ranks the n-best of a Chinese chunk by beam log-probability plus a word-frequency model
    (``score_run``: log-probability of a run of Chinese characters)."""

    def __init__(self, score_run: Callable[[str], float]) -> None:
        self.score_run = score_run

    def choose(self, candidates: list[Hypothesis], language: str, bias: hotwords.BiasPlan) -> Hypothesis:
        from tingyin.speech.lexicon import sentence_logprob

        if not candidates:
            return Hypothesis([], "", 0.0)
        chinese = language in ("zh", "yue") and any(textnorm.has_cjk(c.text) for c in candidates)
        if not chinese:
            return biased_choice(candidates, bias)
        best: tuple[float, Hypothesis] | None = None
        seen: set[str] = set()
        for rank, candidate in enumerate(candidates):
            key = flat(candidate.text)
            if key in seen or (not key and rank > 0):  # empty only when the beam itself prefers it
                continue
            seen.add(key)
            if chinese:
                value = (
                    candidate.logprob
                    + UNIGRAM_WEIGHT * sentence_logprob(candidate.text, self.score_run)
                    + UNIGRAM_LENGTH_REWARD * len(key)
                )
            else:
                value = -rank
            value += hot_word_bonus(candidate.text, bias)
            if best is None or value > best[0]:
                best = (value, candidate)
        return best[1] if best else candidates[0]


def _distinct_adder(pool: list[Hypothesis]) -> Callable[[Hypothesis], bool]:
    """A function that appends a candidate to ``pool`` unless its text (letters and characters only) is
    already there, empty, or a loop, and says whether it did."""
    seen = {flat(c.text) for c in pool}

    def add(candidate: Hypothesis) -> bool:
        key = flat(candidate.text)
        if not key or key in seen or is_loop(candidate.text):
            return False
        seen.add(key)
        pool.append(candidate)
        return True

    return add


# Each digit character, Arabic or Chinese (幺 is 一 as phone numbers are read), and its Arabic digit.
_DIGIT_VALUE = dict(zip("0123456789〇零一二三四五六七八九幺", "0123456789001234567891", strict=True))
DIGIT_CHARS = frozenset(_DIGIT_VALUE)
DIGIT_STRING = 3  # digits in a row (Arabic or Chinese, spaces ignored) that make a digit string
READ_OUT_DIGITS = 5  # Chinese digits in a row that read out a number (二三四线 is a word)
REPEAT_SWAPS = 0.25  # share of digits a runner-up without a repeated piece may read otherwise


def string_digits(text: str) -> list[str]:
    """The digits of ``text``'s digit strings (runs of at least ``DIGIT_STRING``), as Arabic digits."""
    digits: list[str] = []
    run: list[str] = []
    for ch in [*text.replace(" ", ""), ""]:
        if ch in DIGIT_CHARS:
            run.append(_DIGIT_VALUE[ch])
            continue
        if len(run) >= DIGIT_STRING:
            digits += run
        run = []
    return digits


def digit_string_length(text: str) -> int:
    """How many digits ``text``'s digit strings (runs of at least ``DIGIT_STRING``) hold in all."""
    return len(string_digits(text))


_SPELLED_DIGITS = re.compile(f"[〇零一二三四五六七八九幺]{{{READ_OUT_DIGITS},}}")


def digits_as_arabic(text: str) -> str:
    """``text`` with each number read out digit by digit (``READ_OUT_DIGITS`` or more Chinese digits in a
    row) written in Arabic digits, as the text scorers should see it: which digits were said is the
    audio's call (the trigram charges an Arabic digit run a fixed cost), where the trigram would rank
    九六八七七八五四 above 九六八七七八五七 for its 五四 (May Fourth), and a spelled number above or below
    the same number in Arabic digits."""
    return _SPELLED_DIGITS.sub(lambda m: "".join(_DIGIT_VALUE[ch] for ch in m.group()), text)


def drops_only_repeated_digits(reference: str, text: str) -> bool:
    """Whether ``text``'s digit strings are ``reference``'s without a piece that ``reference`` says twice in
    a row, and otherwise differ in at most a quarter of their digits (``REPEAT_SWAPS``): 1919102029 →
    19102099. Whisper on a digit string said alone sometimes says a piece of it twice; a runner-up without
    the copy lost no digit that was said."""
    said, kept = string_digits(reference), string_digits(text)
    cut = len(said) - len(kept)
    if cut <= 0 or not kept:
        return False
    swaps = max(1, int(len(kept) * REPEAT_SWAPS))
    for start in range(len(said) - cut + 1):
        if not _repeats(said, start, start + cut):
            continue
        rest = said[:start] + said[start + cut :]
        if sum(a != b for a, b in zip(rest, kept, strict=True)) <= swaps:
            return True
    return False


def keeping_digits(reference: str, candidates: Iterable[Hypothesis]) -> Iterator[Hypothesis]:
    """The ``candidates`` whose digit strings hold at least as many digits as ``reference``'s, or leave out
    only pieces it repeats (``drops_only_repeated_digits``): a runner-up that dropped digits from a number
    read one digit at a time (a phone number) is never better, and no text scorer can tell how many digits
    were said."""
    digits = digit_string_length(reference)
    for candidate in candidates:
        text = candidate.text
        if digit_string_length(text) >= digits or drops_only_repeated_digits(reference, text):
            yield candidate


def leaves_out_speech(reference: str, text: str) -> bool:
    """Whether ``text`` is shorter than ``reference`` by characters left out, with none added (others may
    be changed), punctuation and spaces aside, and what it leaves out is not a repeat (打开maps打开maps →
    打开maps cuts a loop, not speech). On zh_dev the second pass chose such a runner-up of the beam's
    choice in 6 clips: once it cut a loop, five times it dropped a said character the beam had
    (房地产的投资 → 房地产投资, 就看到 → 看到, 设定31度 → 设定31, 地方呢 → 地方, 发现到 → 发现): the text
    scorers prefer shorter text, and so does the teacher-forced score, which the length reward offsets only
    on average. Without such runners-up: 490 errors instead of 495, no clip worse."""
    said, kept = _spoken_chars(reference), _spoken_chars(text)
    if len(kept) >= len(said):
        return False
    blocks = difflib.SequenceMatcher(a=said, b=kept, autojunk=False).get_opcodes()
    if any(op == "insert" for op, *_ in blocks):
        return False
    return any(op == "delete" and not _repeats(said, start, end) for op, start, end, _, _ in blocks)


def _spoken_chars(text: str) -> list[str]:
    return [ch for ch in text if not (ch.isspace() or textnorm.is_punctuation(ch))]


def _repeats(chars: list[str], start: int, end: int) -> bool:
    """Whether ``chars[start:end]`` is copies of a piece that stands right before or after it."""
    block = chars[start:end]
    for period in range(1, len(block) + 1):
        piece = block[:period]
        if len(block) % period or block != piece * (len(block) // period):
            continue
        if (start >= period and chars[start - period : start] == piece) or chars[end : end + period] == piece:
            return True
    return False


def keeping_speech(reference: str, candidates: Iterable[Hypothesis]) -> Iterator[Hypothesis]:
    """The ``candidates`` that do not only leave out characters ``reference`` (the beam's choice) holds
    (``leaves_out_speech``): a runner-up that drops a said word is never more right, and no text scorer
    can tell it was said."""
    return (candidate for candidate in candidates if not leaves_out_speech(reference, candidate.text))


def keeping_what_was_said(reference: str, candidates: Iterable[Hypothesis]) -> Iterator[Hypothesis]:
    """The ``candidates`` a pool admits beside ``reference`` (its first): none with fewer digits in its
    digit strings (``keeping_digits``), none that only leaves out characters (``keeping_speech``)."""
    return keeping_digits(reference, keeping_speech(reference, candidates))


class SecondPass:
    """Rescoring of Mandarin chunks: n-best + sound-alike rewrites, by Whisper's teacher-forced score plus
    the weighted text scorers."""

    def __init__(
        self,
        runner: WhisperModelRunner,
        proposer: RewriteProposer,
        scorers: Sequence[tuple[TextScorer, float]],
        *,
        length_reward: float = LENGTH_REWARD,
        scored_candidates: int | None = SCORED_CANDIDATES,
        wide_window_below: float | None = None,
    ) -> None:
        if scored_candidates is not None and scored_candidates < 2:
            raise ValueError("scored_candidates must be at least 2 (the beam's choice and another)")
        self.runner = runner
        self.proposer = proposer
        self.scorers = list(scorers)
        self.length_reward = length_reward  # nats per character; it balances the scorers' weights
        self.scored_candidates = scored_candidates  # per chunk; None: every candidate the pruning keeps
        # A chunk whose beam averaged less than this log-probability per token also gets, in its pool, the
        # n-best of a decode on Whisper's full 30 s window (None: never; see ``ChunkDecoder._widen``).
        self.wide_window_below = wide_window_below

    def pool(
        self,
        candidates: list[Hypothesis],
        tokenizer: Tokenizer,
        bias: hotwords.BiasPlan,
        nbest: int,
        rewrites: int,
    ) -> list[Hypothesis]:
        """The distinct top n-best hypotheses (no loops, none with fewer digits in digit strings than the
        beam's choice or only leaving out its characters: ``keeping_what_was_said``) and their sound-alike
        rewrites; where a hypothesis holds a
        suppressed phrase, also the hypothesis with the phrase's sound-alikes in its place."""
        keep = tuple(w.text for w in bias.favoured)
        pool: list[Hypothesis] = []
        add = _distinct_adder(pool)
        for candidate in keeping_what_was_said(candidates[0].text if candidates else "", candidates):
            if len(pool) >= nbest:
                break
            add(candidate)
        # A rewrite's logprob holds its estimate (``estimated_logprob``) until it is scored.
        for candidate in list(pool):
            text = textnorm.to_simplified(textnorm.clean(candidate.text))
            for rewrite in self.proposer.rewrites(text, limit=rewrites, keep=keep):
                estimate = estimated_logprob(candidate.logprob, text, rewrite)
                add(Hypothesis(tokenizer.encode(rewrite), rewrite, estimate))
        # A suppressed phrase's sound-alikes are proposed once, in the context of the best candidate that
        # holds it: the other candidates differ elsewhere, and proposing in each of their contexts (4
        # readings × 4 candidates, every one scored teacher-forced since hot words are in play) cost more
        # than proposing ``STEER_ALIKES`` readings in one, which finds the reading that fits where the
        # trigram ranks it low (长假 → 涨价: its 7th sound-alike in 开发商…选择了长假).
        steered: set[str] = set()
        for candidate in list(pool):
            text = textnorm.to_simplified(textnorm.clean(candidate.text))
            held = tuple(w for w in bias.suppressed if w.text in text and w.text not in steered)
            if not held:
                continue
            steered.update(w.text for w in held)
            only_held = dataclasses.replace(bias, suppressed=held)
            for variant in hotwords.alternatives(text, only_held, self._rewrite_keeping):
                estimate = estimated_logprob(candidate.logprob, text, variant)
                add(Hypothesis(tokenizer.encode(variant), variant, estimate))
        # Where a stretch of a candidate sounds like a favoured phrase, the candidate with the phrase in its
        # place joins the pool, and the audio and the text scorers judge it as any other: replaced blindly
        # after decoding, the sound-alike stretches of a 725-word Baidu vocabulary more than doubled the
        # errors of 100 zh_dev clips (the stretch was most often right: 的时候 → 的事后 for 事后).
        if bias.favoured:
            corrected = 0
            for candidate in list(pool):
                if corrected >= CORRECTED_CANDIDATES:
                    break
                text = textnorm.to_simplified(textnorm.clean(candidate.text))
                for variant in hotwords.corrections(text, bias):
                    estimate = estimated_logprob(candidate.logprob, text, variant)
                    corrected += add(Hypothesis(tokenizer.encode(variant), variant, estimate))
                    if corrected >= CORRECTED_CANDIDATES:
                        break
        return pool

    @staticmethod
    def widened(pool: list[Hypothesis], candidates: Sequence[Hypothesis]) -> list[Hypothesis]:
        """``pool`` and, after it, those of ``candidates`` (another decode's n-best) it does not hold yet,
        except any with fewer digits in digit strings than the pool's first or only leaving out its
        characters (``keeping_what_was_said``; the full window dropped digits of phone numbers in 4 of the
        widened pools' 5 losses on zh_dev)."""
        out = list(pool)
        add = _distinct_adder(out)
        for candidate in keeping_what_was_said(pool[0].text if pool else "", candidates):
            add(candidate)
        return out

    def _rewrite_keeping(self, text: str, keep: tuple[str, ...]) -> list[str]:
        return self.proposer.rewrites(text, limit=hotwords.STEER_ALIKES, keep=keep)

    def choose(
        self,
        encoded: np.ndarray,
        frames: int,
        chunks: Sequence[Chunk],
        pools: dict[int, list[Hypothesis]],
        start_sequences: dict[int, list[int]],
        bias: hotwords.BiasPlan,
    ) -> dict[int, Choice]:
        """The best candidate of each pool (keyed by the chunk's index in ``chunks``/``encoded``), each
        scored after its chunk's ``start_sequences`` entry.

        Text scores come first (cheap); Whisper's teacher-forced score (a decoder pass per candidate, about 20
        ms for a 5 s clip on 2 cores) is only computed for candidates the text scorers rate within
        ``PRUNE_MARGIN`` of the beam's own choice: one the language model likes less can only win by
        sounding better, and the beam already judged that. Of those, the beam's choice and the
        ``scored_candidates`` - 1 others with the best text score plus estimated acoustic score (the beam's
        own log-probability; for a rewrite, its source's less the cost of the change) are scored, unless a
        candidate of the chunk holds a hot word (then all are: they are the caller's explicit wish). A chunk
        left with the beam's choice alone is not rescored."""
        # Per chunk, the candidates that earn a teacher-forced score, each with its text score.
        to_score: dict[int, list[tuple[Hypothesis, float]]] = {}
        # Every chunk's candidates in one call per scorer (the neural model batches them).
        every_text = [digits_as_arabic(c.text) for pool in pools.values() for c in pool]
        text_scores = np.zeros(len(every_text), dtype=np.float64)
        for scorer, weight in self.scorers:
            text_scores += weight * np.asarray(scorer.score_texts(every_text), dtype=np.float64)
        offset = 0
        for i, pool in pools.items():
            texts = [c.text for c in pool]
            sense = text_scores[offset : offset + len(pool)].copy()
            offset += len(pool)
            bonuses = [hot_word_bonus(t, bias) for t in texts]
            sense += [self.length_reward * len(flat(t)) + b for t, b in zip(texts, bonuses, strict=True)]
            kept = [
                (c, float(value))
                for c, value in zip(pool, sense, strict=True)
                if value >= sense[0] - PRUNE_MARGIN
            ]
            limit = None if any(bonuses) else self.scored_candidates
            if limit is not None and len(kept) > limit:
                others = sorted(kept[1:], key=lambda pair: -(pair[1] + pair[0].logprob))
                kept = [kept[0], *others[: limit - 1]]
            if len(kept) > 1:
                to_score[i] = kept
        chosen: dict[int, Choice] = {}
        for i, kept in to_score.items():
            scored = teacher_forced(self.runner, encoded, i, chunks[i], frames, start_sequences[i], kept)
            chosen[i] = max(scored, key=lambda pair: pair[0])[1]
        return chosen


def teacher_forced(
    runner: WhisperModelRunner,
    encoded: np.ndarray,
    i: int,
    chunk: Chunk,
    frames: int,
    start_sequence: list[int],
    candidates: Sequence[tuple[Hypothesis, float]],
) -> list[tuple[float, Choice]]:
    """Each of chunk ``i``'s ``candidates`` (with the text score it brings) scored by Whisper teacher-forced
    after ``start_sequence`` (``decoding.scoring_start``): (its sound plus text score, the candidate with
    its sound as log-probability and its alignment), in order. One call a chunk, over its speech and the
    margin after it: a row's cost grows with the encoder frames it attends to (CTranslate2 projects the
    frames for every row), so rows of a shorter chunk padded to a longer one's frames cost time (0.8 s of 4
    on the 601 s benchmark recording), and a chunk's scores do not depend on which chunks share its call."""
    num_frames = speech_frames(chunk, frames)
    keep_frames = min(encoded.shape[1], num_frames // 2 + SCORING_MARGIN_FRAMES)
    results = runner.align(
        encoded[[i] * len(candidates), :keep_frames],
        start_sequence,
        [c.tokens for c, _ in candidates],
        [num_frames] * len(candidates),
    )
    scored = []
    for (candidate, text_score), alignment in zip(candidates, results, strict=True):
        probs = np.maximum(np.asarray(alignment.text_token_probs, dtype=np.float64), 1e-10)
        sound = float(np.log(probs).sum())
        scored.append((sound + text_score, Choice(candidate._replace(logprob=sound), alignment)))
    return scored


__all__ = [
    "Choice",
    "RewriteProposer",
    "SecondPass",
    "TextScorer",
    "UnigramChooser",
    "biased_choice",
    "flat",
    "hot_word_bonus",
    "teacher_forced",
]
