"""Backoff n-gram language models (ARPA semantics, log10) held in numpy arrays, and our file format for them.

The layout is a reversed trie, the one KenLM's trie models use, so a model read from a KenLM binary keeps its
exact structure and answers exactly what ``kenlm`` answers: level 1 holds every word's probability and
backoff; level k ≥ 2 holds the k-grams grouped by their (k-1)-word suffix (the entry one level down), each
group sorted by the k-gram's first word. Scoring ``w`` after the context ``… u v`` walks ``w → v → u``: the
longest match gives the probability, and the backoffs of the context n-grams that were not extended are
added. A state is what KenLM keeps too: the matched words, newest first, with their backoffs, cut after the
last n-gram that some longer n-gram extends (later words cannot change any later score).

The file (``.npz``, written by :meth:`NgramModel.save`) stores the vocabulary as one NUL-separated UTF-8
blob, group sizes instead of pointers, word ids as differences from the previous entry, and probabilities and
backoffs as indices into small tables (KenLM's quantisation bins, or the distinct values of an ARPA file),
which compresses well and loads in well under a second. :func:`open_model` also reads ARPA text and KenLM
trie binaries directly (:mod:`tingyin.speech.ngram_import`).
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
import zlib
from bisect import bisect_left
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

FORMAT = "tingyin-ngram"
FORMAT_VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"

# A state: the context words (newest first) and the backoffs of the n-grams they end, as KenLM keeps them.
State = tuple[tuple[int, ...], tuple[float, ...]]

_FLOAT32 = struct.Struct("<f")


def _f32(value: float) -> float:
    """``value`` rounded to single precision: KenLM adds backoffs in float, and so must we to agree."""
    return float(_FLOAT32.unpack(_FLOAT32.pack(value))[0])


def has_extension(backoff: float) -> bool:
    """KenLM's mark for "no longer n-gram starts with this one": a backoff of exactly -0.0."""
    return backoff != 0.0 or math.copysign(1.0, backoff) > 0


@dataclass(frozen=True)
class Level:
    """The n-grams of one order k ≥ 2. Entry i extends its group's (k-1)-gram by the word ``words[i]`` on
    the left; ``prob_table[prob[i]]`` is its log10 probability. Below the highest order, it also has a
    backoff (``backoff_table[backoff[i]]``) and its own group of (k+1)-grams, ``next[i]:next[i + 1]``."""

    words: np.ndarray
    prob: np.ndarray
    prob_table: np.ndarray
    backoff: np.ndarray | None = None
    backoff_table: np.ndarray | None = None
    next: np.ndarray | None = None


@dataclass
class NgramModel:
    """A backoff n-gram model. ``vocab[0]`` is ``<unk>``; unigram i has probability ``unigram_prob[i]``,
    backoff ``unigram_backoff[i]`` and the bigram group ``unigram_next[i]:unigram_next[i + 1]``."""

    vocab: list[str]
    unigram_prob: np.ndarray
    unigram_backoff: np.ndarray
    unigram_next: np.ndarray
    levels: list[Level]
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()
        self.ids = {word: i for i, word in enumerate(self.vocab)}
        self.ids.pop("<unk>", None)
        self.begin_sentence_id = self.ids.get("<s>", 0)
        self.end_sentence_id = self.ids.get("</s>", 0)
        # The scoring loop reads single entries (see _FastLevel).
        no_extension = (self.unigram_backoff == 0) & np.signbit(self.unigram_backoff)
        self._unigrams = (
            self.ids,
            _view(np.asarray(self.unigram_prob, dtype=np.float32)),
            _view(np.asarray(self.unigram_backoff, dtype=np.float32)),
            _view(~no_extension),
            _view(self.unigram_next),
        )
        self._levels = [_FastLevel.of(level) for level in self.levels]

    @property
    def order(self) -> int:
        return len(self.levels) + 1

    def counts(self) -> list[int]:
        return [len(self.vocab)] + [len(level.words) for level in self.levels]

    # ------------------------------------------------------------------------------------------- queries

    def index(self, word: str) -> int:
        """The word's id; 0 (``<unk>``) for a word the model does not know."""
        return self.ids.get(word, 0)

    def __contains__(self, word: object) -> bool:
        return word in self.ids

    def begin_sentence(self) -> State:
        return ((self.begin_sentence_id,), (float(self.unigram_backoff[self.begin_sentence_id]),))

    @staticmethod
    def null_context() -> State:
        return ((), ())

    def unigram(self, word: str) -> float:
        """log10 p(word) with no context."""
        return float(self.unigram_prob[self.ids.get(word, 0)])

    def score(self, state: State, word: str) -> tuple[float, State]:
        """log10 p(word | state) and the state after it: KenLM's ``BaseScore``, to the last bit."""
        # The second pass calls this millions of times: locals, tuples and no helper calls on purpose.
        ids, uni_prob, uni_backoff, uni_extends, uni_next = self._unigrams
        word_id = ids.get(word, 0)
        context, context_backoffs = state
        prob: float = uni_prob[word_id]
        begin, end = uni_next[word_id], uni_next[word_id + 1]
        out_words: tuple[int, ...] = (word_id,)
        out_backoffs: tuple[float, ...] = (uni_backoff[word_id],)
        keep = 1 if uni_extends[word_id] else 0  # the state ends after the last n-gram that extends
        matched = 1  # order of the n-gram that gave the probability
        for (words, probs, prob_table, backoffs, backoff_table, extends, pointers), previous in zip(  # noqa: B905
            self._levels, context
        ):
            if begin == end:  # no longer n-gram ends with the words matched so far
                break
            at = bisect_left(words, previous, begin, end)
            if at == end or words[at] != previous:
                break
            prob = prob_table[probs[at]]
            matched += 1
            if pointers is None:  # the highest order
                break
            bin_ = backoffs[at]  # type: ignore[index]
            out_words += (previous,)
            out_backoffs += (backoff_table[bin_],)
            if extends[bin_]:
                keep = matched
            begin, end = pointers[at], pointers[at + 1]
        for backoff in context_backoffs[matched - 1 :]:  # the context n-grams that were not extended
            prob = _FLOAT32.unpack(_FLOAT32.pack(prob + backoff))[0]  # in float, as KenLM adds them
        if keep == len(out_words):
            return prob, (out_words, out_backoffs)
        return prob, (out_words[:keep], out_backoffs[:keep])

    @cached_property
    def score_ceilings(self) -> np.ndarray:
        """Per word id, a log10 value no ``score()`` of that word exceeds, whatever its context: the
        highest probability of an n-gram ending in the word (all of them lie below its unigram in the
        reversed trie), plus every backoff that can be added where one is positive (none is in a
        normalised model), plus a margin for float rounding. A search can skip a word whose best possible
        score could not matter without looking it up."""
        below: np.ndarray | None = None  # per entry of the level: the best probability at or beneath it
        for level in reversed(self.levels):
            probs = np.asarray(level.prob_table, dtype=np.float64)[level.prob]
            if below is not None:
                assert level.next is not None  # every level but the highest has the next one's groups
                probs = np.maximum(probs, _group_maxima(below, level.next))
            below = probs
        ceilings = np.asarray(self.unigram_prob, dtype=np.float64)
        if below is not None:
            ceilings = np.maximum(ceilings, _group_maxima(below, self.unigram_next))
        backoffs = [float(np.max(self.unigram_backoff))] + [
            float(np.max(level.backoff_table[level.backoff]))
            for level in self.levels
            if level.backoff is not None and level.backoff_table is not None and len(level.words)
        ]
        return ceilings + (self.order - 1) * max(0.0, *backoffs) + 1e-4

    # -------------------------------------------------------------------------------------------- checks

    def validate(self) -> None:
        """Raise ValueError unless the arrays form a well-formed trie: a damaged file must fail here, not
        with an IndexError in the middle of a transcription."""
        size = len(self.vocab)
        if size < 1 or self.vocab[0] != "<unk>":
            raise ValueError("the vocabulary must start with <unk>")
        if len(self.unigram_prob) != size or len(self.unigram_backoff) != size:
            raise ValueError("unigram arrays do not match the vocabulary")
        pointers = self.unigram_next
        for k, level in enumerate(self.levels, start=2):
            count = len(level.words)
            if len(pointers) != (size if k == 2 else len(self.levels[k - 3].words)) + 1:
                raise ValueError(f"the {k - 1}-gram pointers have the wrong length")
            if pointers[0] != 0 or pointers[-1] != count or np.any(pointers[1:] < pointers[:-1]):
                raise ValueError(f"the {k - 1}-gram pointers do not cover the {k}-grams")
            if count and int(level.words.max()) >= size:
                raise ValueError(f"a {k}-gram names a word outside the vocabulary")
            if len(level.prob) != count or (count and int(level.prob.max()) >= len(level.prob_table)):
                raise ValueError(f"bad {k}-gram probabilities")
            last = k == self.order
            if last != (level.next is None) or last != (level.backoff is None):
                raise ValueError(f"the {k}-grams have the wrong fields for their order")
            if level.backoff is not None:
                table = level.backoff_table
                if table is None or len(level.backoff) != count:
                    raise ValueError(f"bad {k}-gram backoffs")
                if count and int(level.backoff.max()) >= len(table):
                    raise ValueError(f"bad {k}-gram backoffs")
            if level.next is not None:
                pointers = level.next

    # ---------------------------------------------------------------------------------------- our format

    def save(self, path: Path) -> None:
        """Write the model in our format (compressed ``.npz``)."""
        arrays: dict[str, np.ndarray] = {
            "vocab": np.frombuffer("\0".join(self.vocab).encode("utf-8"), dtype=np.uint8),
            "unigram_prob": self.unigram_prob.astype(np.float32),
            "unigram_backoff": self.unigram_backoff.astype(np.float32),
            "unigram_children": _narrow(np.diff(self.unigram_next.astype(np.int64))),
        }
        for k, level in enumerate(self.levels, start=2):
            arrays[f"words_{k}"] = _narrow(_delta_encode(level.words))
            arrays[f"prob_{k}"] = _narrow(level.prob)
            arrays[f"prob_table_{k}"] = level.prob_table.astype(np.float32)
            if level.backoff is not None and level.backoff_table is not None and level.next is not None:
                arrays[f"backoff_{k}"] = _narrow(level.backoff)
                arrays[f"backoff_table_{k}"] = level.backoff_table.astype(np.float32)
                arrays[f"children_{k}"] = _narrow(np.diff(level.next.astype(np.int64)))
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "order": self.order,
            "provenance": self.provenance,
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
        # An .npz written member by member with a fixed date, so the same model gives the same bytes.
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for name, array in arrays.items():
                member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                member.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(member, "w") as out:
                    np.lib.format.write_array(out, np.ascontiguousarray(array), allow_pickle=False)

    @classmethod
    def load(cls, path: Path) -> NgramModel:
        """Read a model written by :meth:`save`; ValueError when the file is not one."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(npz["meta"].tobytes().decode("utf-8"))
                if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
                    found = f"{meta.get('format')!r} version {meta.get('version')!r}"
                    raise ValueError(f"unsupported n-gram file format {found}")
                order = int(meta["order"])
                vocab = npz["vocab"].tobytes().decode("utf-8").split("\0")
                levels: list[Level] = []
                for k in range(2, order + 1):
                    words = _delta_decode(npz[f"words_{k}"])
                    prob, prob_table = npz[f"prob_{k}"], npz[f"prob_table_{k}"]
                    if k < order:
                        backoff, backoff_table = npz[f"backoff_{k}"], npz[f"backoff_table_{k}"]
                        pointers = _pointers(npz[f"children_{k}"])
                        levels.append(Level(words, prob, prob_table, backoff, backoff_table, pointers))
                    else:
                        levels.append(Level(words, prob, prob_table))
                return cls(
                    vocab,
                    npz["unigram_prob"],
                    npz["unigram_backoff"],
                    _pointers(npz["unigram_children"]),
                    levels,
                    dict(meta.get("provenance") or {}),
                )
        except (EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise ValueError(f"not a tingyin n-gram file: {exc}") from exc
        except (KeyError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"damaged tingyin n-gram file: {exc!r}") from exc


class _FastLevel(NamedTuple):
    """A level as the scoring loop reads it: memoryviews and lists answer single lookups far faster than
    numpy indexing, and the memoryviews share the arrays' memory."""

    words: memoryview
    prob: memoryview
    prob_table: list[float]
    backoff: memoryview | None
    backoff_table: list[float]
    extends: list[bool]
    next: memoryview | None

    @classmethod
    def of(cls, level: Level) -> _FastLevel:
        backoff_table = [] if level.backoff_table is None else level.backoff_table.astype(np.float32).tolist()
        return cls(
            words=_view(level.words),
            prob=_view(level.prob),
            prob_table=level.prob_table.astype(np.float32).tolist(),
            backoff=None if level.backoff is None else _view(level.backoff),
            backoff_table=backoff_table,
            extends=[has_extension(b) for b in backoff_table],
            next=None if level.next is None else _view(level.next),
        )


def _group_maxima(values: np.ndarray, pointers: np.ndarray) -> np.ndarray:
    """The maximum of each group ``values[pointers[g]:pointers[g + 1]]`` (-inf for an empty group)."""
    starts, ends = np.asarray(pointers[:-1], dtype=np.int64), np.asarray(pointers[1:], dtype=np.int64)
    out = np.full(len(starts), -np.inf)
    filled = ends > starts
    if np.any(filled):  # the groups are contiguous: each non-empty one runs to the next one's start
        out[filled] = np.maximum.reduceat(values, starts[filled])
    return out


def _view(array: np.ndarray) -> memoryview:
    return np.ascontiguousarray(array).data


def _narrow(values: np.ndarray) -> np.ndarray:
    """The smallest integer type that holds ``values`` (files compress better, load faster)."""
    values = np.asarray(values)
    low = int(values.min()) if values.size else 0
    high = int(values.max()) if values.size else 0
    return values.astype(np.result_type(np.min_scalar_type(low), np.min_scalar_type(high)))


def _pointers(children: np.ndarray) -> np.ndarray:
    """Group sizes → group start offsets (one more entry than groups)."""
    dtype = np.uint32 if int(children.sum(dtype=np.uint64)) < 2**32 else np.uint64
    out = np.zeros(len(children) + 1, dtype=dtype)
    np.cumsum(children, dtype=dtype, out=out[1:])
    return out


def _delta_encode(words: np.ndarray) -> np.ndarray:
    """Differences from the previous entry: small within a group (sorted ids), one jump between groups."""
    return np.diff(words.astype(np.int64), prepend=0)


def _delta_decode(delta: np.ndarray) -> np.ndarray:
    # Every running sum is a word id, so int32 (and then uint32) arithmetic is exact.
    return np.cumsum(delta, dtype=np.int32).view(np.uint32)


def open_model(path: Path) -> NgramModel:
    """A model from our ``.npz`` format, an ARPA text file or a KenLM trie binary, by the file's content.
    Raises OSError when the file cannot be read, ValueError when it is none of these."""
    from tingyin.speech import ngram_import

    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(ZIP_MAGIC):
        return NgramModel.load(path)
    if head.startswith(ngram_import.KENLM_MAGIC):
        return ngram_import.read_kenlm_binary(path)
    if head.lstrip().startswith(b"\\data\\"):
        return ngram_import.read_arpa(path)
    raise ValueError("not an n-gram model (expected tingyin .npz, ARPA text or a KenLM binary)")
