"""A Mandarin word-trigram language model for the second pass over Whisper's Chinese hypotheses.

Whisper base hears Mandarin syllables better than it picks their characters: 公积金首套房 comes out as
攻击金手套房, 可穿戴设备 as 可穿戴色背. The engine keeps the beam's n-best list; this module proposes
sound-alike rewrites of each hypothesis (dictionary words with the same toneless pinyin, or a fuzzy match of
initials and finals, chosen by a lattice search under the trigram) and scores text under the trigram. The
engine then asks Whisper how well each rewrite fits the audio (teacher-forced log-probability) and picks
the best sum of sound and sense, so a rewrite the audio does not support is not taken.

The model is libime's word trigram (the fcitx5 pinyin input method's model, Debian package
``libime-data-language-model``, LGPL-2.1+), converted to our own format and shipped in
``tingyin/speech/data/`` (see the NOTICE there), read with numpy by :mod:`tingyin.speech.ngram`; its scores
are exactly those ``kenlm`` gives for the original file. ``TINGYIN_ZH_LM`` names another model (our
``.npz``, an ARPA file or a KenLM trie binary), or ``off``; without a model the engine falls back to the
unigram corrector in :mod:`tingyin.speech.lexicon`.
"""

from __future__ import annotations

import logging
import math
import operator
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from tingyin.speech import textnorm
from tingyin.speech.lexicon import covered_positions, plain_readings, sentence_pieces, sound_keys
from tingyin.speech.ngram import NgramModel, State, open_model

log = logging.getLogger(__name__)

# libime's trigram in our format (scripts/convert_ngram.py; provenance and licence in data/NOTICE.md).
PACKAGED_MODEL = Path(__file__).resolve().parent / "data" / "zh_word_trigram.npz"
LN10 = math.log(10.0)
MAX_REWRITE_WORD = 4  # longest stretch replaced by one dictionary word
MAX_SEGMENT_WORD = 6  # longest word tried when segmenting text for scoring
BEAM = 8  # partial hypotheses kept per character position in the lattice search
MAX_ALIKES = 8  # sound-alike words tried per stretch: the cheapest changes, then the most frequent words
EXACT_COST = 2.0  # nats per changed character whose toneless pinyin is the same
FUZZY_COST = 4.0  # nats per changed character that only matches with fuzzy initials/finals
# Numerals are never rewritten: their sound-alikes (零/领, 四/是, 十/是) are common words the trigram
# prefers, and the digits Whisper heard are more reliable than any language model's guess.
NUMERALS = frozenset("零一二三四五六七八九十百千万亿两幺点")
# A Latin word or digit run inside Chinese: the trigram knows none, and which one was said is the audio's
# call, so it costs about what a common word does (的 is -4.5 nats as a unigram), not what one rare word
# would. At -12 nats (the unigram fallback's figure) the sound-alike 三地打印 beat 3D打印 on every 3D clip of
# zh_dev. zh_dev errors by this cost: -12: 513, -8: 511, -6: 510, -5: 508, -4: 508, -2: 510 (lower-cased
# and digit-for-word candidates start to win).
LATIN_WORD_NATS = -5.0
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")
_TOTAL = operator.itemgetter(0)  # a partial path's total score


class _Path(NamedTuple):
    """A finished path of the lattice search."""

    total: float  # language model + rewrite costs, nats
    lm: float  # language model only, nats
    text: str


class ZhLanguageModel:
    """Word trigram scores and sound-alike rewrites of Chinese text."""

    def __init__(self, path: Path) -> None:
        """Load the model file at ``path`` (our ``.npz``, ARPA text or a KenLM trie binary); OSError when
        it cannot be read, ValueError when it is not a model."""
        self.path = path
        self.model: NgramModel = open_model(path)
        # Candidate words: jieba's dictionary words (1-4 characters) the trigram knows, by sound, each with
        # its unigram log10 probability (the tie-break among equally cheap changes).
        self.index: dict[tuple[str, ...], list[tuple[str, float]]] = {}
        text = resources.files("jieba").joinpath("dict.txt").read_text(encoding="utf-8")
        for line in text.splitlines():
            word = line.split(" ", 1)[0]
            if 1 <= len(word) <= MAX_REWRITE_WORD and word in self.model:
                entry = (word, self.model.unigram(word))
                for key in sound_keys(word, limit=4):
                    self.index.setdefault(key, []).append(entry)
        # Which characters sound alike, for the cost of a change (a shared toneless reading is cheaper
        # than a fuzzy match): the candidate words' characters by reading, and per character asked about
        # the union over its readings.
        self._reading_chars: dict[str, set[str]] = {}
        for char in {char for entries in self.index.values() for word, _ in entries for char in word}:
            for reading in plain_readings(char):
                self._reading_chars.setdefault(reading, set()).add(char)
        self._alike_chars: dict[str, frozenset[str]] = {}
        self._score_ceilings: list[float] = (self.model.score_ceilings * LN10).tolist()  # nats
        # The rewrite searches of one chunk's n-best ask the same word after the same context again and
        # again: on a 601 s recording 540,000 lookups, 107,000 distinct (0.15 s of 1.5 s saved; the entries
        # are small, 16,384 hold as many hits as 262,144 there). Since the search skips paths that cannot
        # matter: 480,000 lookups, 96,000 distinct.
        self._ngram_score = lru_cache(maxsize=16384)(self.model.score)
        self._alikes = lru_cache(maxsize=65536)(self._sound_alikes)
        self._run_score = lru_cache(maxsize=65536)(self._score_run)
        # n-best hypotheses share most of their runs: each run is searched once.
        self._run_rewrites = lru_cache(maxsize=16384)(self._rewrite_run)

    @classmethod
    def packaged(cls) -> ZhLanguageModel:
        """The trigram shipped with tingyin (libime's, LGPL-2.1+)."""
        return cls(PACKAGED_MODEL)

    # ------------------------------------------------------------------------------------------ scoring

    def score(self, text: str) -> float:
        """Log-probability (nats) of ``text``: Chinese runs under the trigram at their best segmentation,
        each Latin word or digit run a fixed cost, punctuation ignored. The text is one sentence: a Chinese
        run beside a Latin word neither ends nor begins one (the trigram's context restarts after the
        word, as after any word it does not know). Scoring each run as its own sentence charged Latin
        words inside Chinese for two sentence boundaries, so 3D打印 lost to the sound-alike 三地打印."""
        pieces = sentence_pieces(text)
        total = 0.0
        for k, piece in enumerate(pieces):
            if textnorm.has_cjk(piece):
                total += self._run_score(piece, k == 0, k == len(pieces) - 1)
            else:
                total += LATIN_WORD_NATS
        return total

    def _score_run(self, run: str, opens: bool = True, closes: bool = True) -> float:
        return self._search(run, rewrite=False, keep=frozenset(), opens=opens, closes=closes)[0].lm

    # ---------------------------------------------------------------------------------------- rewriting

    def rewrites(self, text: str, limit: int = 4, keep: tuple[str, ...] = ()) -> list[str]:
        """Up to ``limit`` sound-alike rewrites of ``text`` that the trigram prefers (``text`` itself
        excluded), best first. Only Chinese runs change; numerals and the ``keep`` phrases never do."""
        parts = _CJK_RUN.split(text)
        runs = _CJK_RUN.findall(text)
        if not runs:
            return []
        alternatives: list[list[str]] = []
        for run in runs:
            alternatives.append(list(self._run_rewrites(run, covered_positions(run, keep))) or [run])

        def assemble(chosen: list[str]) -> str:
            pieces = [parts[0]]
            for run, rest in zip(chosen, parts[1:], strict=True):
                pieces += [run, rest]
            return "".join(pieces)

        best = [options[0] for options in alternatives]
        out: list[str] = [assemble(best)]
        # Then the runners-up of one run at a time, the other runs at their best.
        for rank in range(1, max(len(options) for options in alternatives)):
            for i, options in enumerate(alternatives):
                if rank < len(options):
                    out.append(assemble([*best[:i], options[rank], *best[i + 1 :]]))
        unique = [t for t in dict.fromkeys(out) if t != text]
        return unique[:limit]

    def _rewrite_run(self, run: str, keep: frozenset[int]) -> tuple[str, ...]:
        return tuple(p.text for p in self._search(run, rewrite=True, keep=keep))

    def _sound_alikes(self, stretch: str) -> tuple[tuple[str, float, float], ...]:
        """Up to ``MAX_ALIKES`` dictionary words that sound like ``stretch``: the cheapest changes, then the
        most frequent words (a common syllable has dozens of single-character homophones; the search only
        needs the likely ones). Each with the cost of the change and the most it can add to a path."""
        same = [self._same_reading(char) for char in stretch]  # per character: those sharing a reading
        found: dict[str, tuple[float, float]] = {}  # word: (cost of the change, -its unigram)
        for key in sound_keys(stretch):
            for word, unigram in self.index.get(key, ()):
                if word == stretch or word in found:
                    continue
                cost = 0.0
                for char, other, alike in zip(stretch, word, same, strict=True):
                    if other == char:
                        continue
                    if other in NUMERALS or char in NUMERALS:
                        break  # a numeral never changes
                    cost += EXACT_COST if other in alike else FUZZY_COST
                else:
                    found[word] = (cost, -unigram)
        ranked = sorted(found.items(), key=lambda item: item[1])
        return tuple((word, cost, self._ceiling(word) - cost) for word, (cost, _) in ranked[:MAX_ALIKES])

    def _same_reading(self, char: str) -> frozenset[str]:
        """The candidate words' characters that share a toneless reading with ``char``."""
        alike = self._alike_chars.get(char)
        if alike is None:
            readings = plain_readings(char)
            alike = frozenset().union(*(self._reading_chars.get(r, ()) for r in readings))
            self._alike_chars[char] = alike
        return alike

    def _ceiling(self, word: str) -> float:
        """No context scores ``word`` above this (nats)."""
        return self._score_ceilings[self.model.index(word)]

    def _search(
        self, run: str, *, rewrite: bool, keep: frozenset[int], opens: bool = True, closes: bool = True
    ) -> list[_Path]:
        """Beam search over segmentations of ``run`` (and, with ``rewrite``, sound-alike replacements of
        its words); finished paths, best first, one per distinct text. ``opens``/``closes``: the run
        begins/ends the sentence (else it follows/precedes a word the trigram does not know)."""
        model = self.model
        score = self._ngram_score
        # Partial paths are plain (total, lm, state, text) tuples, not NamedTuples, whose constructor is a
        # Python call: the searches of a 601 s recording make hundreds of thousands.
        size_of_run = len(run)
        beams: list[list[tuple[float, float, State, str]]] = [[] for _ in range(size_of_run + 1)]
        start = model.begin_sentence() if opens else model.null_context()
        beams[0] = [(0.0, 0.0, start, "")]
        longest = MAX_REWRITE_WORD if rewrite else MAX_SEGMENT_WORD
        # A position's list is cut to its best ``BEAM`` whenever it holds twice that, and a path that
        # would not beat the last one kept is never added, nor its word looked up when the word's best
        # score in any context would not (its ceiling): the paths kept are the ones the full list would
        # keep (ties go to the earlier path, as in a stable sort). The end position keeps every path: each
        # distinct text is an answer.
        floors = [-math.inf] * (size_of_run + 1)
        for i in range(size_of_run):
            # Best first, ties in the order they were reached (a stable sort), the best ``BEAM`` kept.
            beam = sorted(beams[i], key=_TOTAL, reverse=True)[:BEAM]
            # The words that may stand at position i do not depend on the path that reaches it: each with
            # the cost of the change and the most it can add to a path's total.
            choices: list[tuple[int, list[tuple[str, float, float]]]] = []
            for size in range(1, min(longest, size_of_run - i) + 1):
                stretch = run[i : i + size]
                options: list[tuple[str, float, float]] = []
                if size == 1 or stretch in model:
                    options.append((stretch, 0.0, self._ceiling(stretch)))
                if rewrite and not keep.intersection(range(i, i + size)):
                    options.extend(self._alikes(stretch))
                if options:
                    choices.append((i + size, options))
            for total, lm, state, text in beam:
                for end, options in choices:
                    target, floor = beams[end], floors[end]
                    for word, cost, ceiling in options:
                        if total + ceiling <= floor:
                            continue
                        logprob, after = score(state, word)
                        logprob *= LN10
                        value = total + logprob - cost
                        if value <= floor:
                            continue
                        target.append((value, lm + logprob, after, text + word))
                        if len(target) >= 2 * BEAM and end < size_of_run:
                            target.sort(key=_TOTAL, reverse=True)
                            del target[BEAM:]
                            floor = floors[end] = target[-1][0]
        finished: dict[str, tuple[float, float]] = {}  # text: its best (total, lm)
        for total, lm, state, text in beams[size_of_run]:
            last = score(state, "</s>")[0] * LN10 if closes else 0.0
            if text not in finished or total + last > finished[text][0]:
                finished[text] = (total + last, lm + last)
        ranked = sorted(finished.items(), key=lambda item: -item[1][0])
        return [_Path(total, lm, text) for text, (total, lm) in ranked]


def find_language_model(configured: str) -> Path | None:
    """The model file for the ``TINGYIN_ZH_LM`` setting: a path, ``off`` (None), or empty for the packaged
    trigram."""
    configured = configured.strip()
    if configured.lower() in ("off", "none", "0", "false"):
        return None
    if configured:
        return Path(configured).expanduser()
    return PACKAGED_MODEL


def load_language_model(configured: str) -> ZhLanguageModel | None:
    """The model the setting names, loaded; None (logged) when it is off, missing or unreadable, so that
    Mandarin falls back to the unigram corrector instead of failing."""
    path = find_language_model(configured)
    if path is None:
        return None
    try:
        model = ZhLanguageModel(path)
    except (OSError, ValueError) as exc:
        log.warning(
            "cannot read the Chinese language model (%s); using the unigram corrector", type(exc).__name__
        )
        return None
    log.info("Chinese language model loaded from %s", path)
    return model
