"""Reading n-gram models from ARPA text and KenLM trie binaries into :class:`tingyin.speech.ngram.NgramModel`.

Both are read here without the ``kenlm`` module. The KenLM binary layout (format version 5, written by
``build_binary trie``) as this reader understands it:

* a header: a magic line padded to 56 bytes, test values (0.0, 1.0, -0.5, 1, 2**32-1, 0 and a 64-bit 1) that
  pin the byte order, then the order, probing multiplier, model type, a has-vocabulary flag, the search
  version and the n-gram counts (64-bit each); the next part starts at the following multiple of 8;
* the vocabulary: its size, then the sorted 64-bit MurmurHash64A values of the words; id i + 1 is the
  i-th hash (0 is ``<unk>``), room for one entry per unigram;
* the trie: with quantisation an 8-byte header (version 2, probability bits, backoff bits) and the bin
  centres (per middle order a probability then a backoff table, then the highest order's probability
  table); the unigrams as (prob, backoff float32, first bigram uint64) records, two more than the count;
  one bit-packed array per middle order (entry: word id, backoff bin, probability bin, pointer to its
  first child) preceded, with array-compressed pointers, by a table of where each pointer's high bits
  change; and the highest order (word id, probability bin);
* the word strings, NUL-terminated, in id order, after the trie.

The reversed-trie structure and the quantised values are kept as they are, so scores match ``kenlm``
exactly. ARPA files are read into the same structure; an n-gram whose suffix is missing (pruned
models) gets a "blank" suffix holding the backed-off probability, as KenLM does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tingyin.speech.ngram import Level, NgramModel, _f32

KENLM_MAGIC = b"mmap lm http://kheafield.com/code"
_MAGIC_V5 = b"mmap lm http://kheafield.com/code format version 5\n\0"
_SANITY = _MAGIC_V5.ljust(56, b"\0") + struct.pack("<fffIIIQ", 0.0, 1.0, -0.5, 1, 2**32 - 1, 0, 1)
_FIXED = struct.Struct("<B3xfIB3xI")  # order, probing multiplier, model type, has vocabulary, search version
_UNIGRAM = np.dtype([("prob", "<f4"), ("backoff", "<f4"), ("next", "<u8")])
# Model types 2-5: trie, with quantisation, with array-compressed pointers, with both.
_TRIE_TYPES = {2: (False, False), 3: (True, False), 4: (False, True), 5: (True, True)}
UNKNOWN_MISSING_LOGPROB = -100.0  # what KenLM gives <unk> when an ARPA file does not list it


def read_kenlm_binary(path: Path, *, verify_vocabulary: bool = False) -> NgramModel:
    """A KenLM trie binary (any of the four trie types). ``verify_vocabulary`` also checks every word's
    hash against the file's hash table (slow in Python: about a second per 100k words). ValueError when
    the file is not one, or is damaged."""
    data = np.fromfile(path, dtype=np.uint8)
    try:
        return _parse_kenlm_binary(data, verify_vocabulary)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"damaged KenLM binary: {exc}") from exc


def _parse_kenlm_binary(data: np.ndarray, verify_vocabulary: bool) -> NgramModel:
    raw = data.tobytes()
    if not raw.startswith(KENLM_MAGIC):
        raise ValueError("not a KenLM binary")
    if raw[: len(_SANITY)] != _SANITY:
        raise ValueError("unsupported KenLM binary: not format version 5 on a little-endian 64-bit machine")
    order, _, model_type, has_vocabulary, search_version = _FIXED.unpack_from(raw, len(_SANITY))
    if model_type not in _TRIE_TYPES:
        raise ValueError("KenLM probing binaries are not supported: convert the ARPA file or a trie binary")
    if search_version != 1 or not 2 <= order <= 16:
        raise ValueError(f"unsupported KenLM trie (search version {search_version}, order {order})")
    if not has_vocabulary:
        raise ValueError("this KenLM binary has no vocabulary strings (rebuild it with build_binary)")
    quantised, array_pointers = _TRIE_TYPES[model_type]
    counts_at = len(_SANITY) + _FIXED.size
    counts = list(struct.unpack_from(f"<{order}Q", raw, counts_at))
    header_size = _align8(counts_at + 8 * order)
    padded = np.concatenate([data, np.zeros(8, dtype=np.uint8)])  # 64-bit reads past the last entry

    def need(end: int) -> None:
        if end > len(raw):
            raise ValueError("truncated KenLM binary")

    # Vocabulary hashes.
    (hashed,) = struct.unpack_from("<Q", raw, header_size)
    if hashed >= counts[0]:
        raise ValueError("bad KenLM vocabulary size")
    hashes = np.frombuffer(raw, dtype="<u8", count=hashed, offset=header_size + 8)
    at = header_size + 8 + 8 * counts[0]  # the vocabulary has room for every unigram

    # Quantisation tables.
    prob_tables: list[np.ndarray] = []
    backoff_tables: list[np.ndarray] = []
    if quantised:
        need(at + 3)
        version, prob_bits, backoff_bits = raw[at], raw[at + 1], raw[at + 2]
        if version != 2 or not 1 <= prob_bits <= 25 or not 1 <= backoff_bits <= 25:
            raise ValueError(f"unsupported KenLM quantisation (version {version})")
        cursor = at + 8
        for _ in range(order - 2):
            prob_tables.append(np.frombuffer(raw, "<f4", 1 << prob_bits, cursor))
            cursor += 4 << prob_bits
            backoff_tables.append(np.frombuffer(raw, "<f4", 1 << backoff_bits, cursor))
            cursor += 4 << backoff_bits
        prob_tables.append(np.frombuffer(raw, "<f4", 1 << prob_bits, cursor))
        at = cursor + (4 << prob_bits)
        middle_bits, longest_bits = prob_bits + backoff_bits, prob_bits
    else:
        middle_bits, longest_bits = 63, 31

    # Unigrams.
    need(at + _UNIGRAM.itemsize * (counts[0] + 2))
    unigrams = np.frombuffer(raw, _UNIGRAM, counts[0] + 2, at)
    at += _UNIGRAM.itemsize * (counts[0] + 2)
    word_bits = _required_bits(counts[0])
    bhiksha_bits = raw[at + 1] if array_pointers and order > 2 else 0

    levels: list[Level] = []
    for k in range(2, order):  # middle orders
        entries, max_next = counts[k - 1], counts[k]
        base = at
        if array_pointers:
            if raw[base] != 0:
                raise ValueError("unsupported KenLM pointer compression version")
            chop = _chop_bits(entries + 1, max_next, bhiksha_bits)
            inline_bits = _required_bits(max_next) - chop
            table_count = (max_next >> inline_bits) + 1
            aligned = _align8(base)
            need(aligned + 8 + 8 * table_count)
            offsets = np.frombuffer(raw, "<u8", table_count, aligned + 8)
            base += 8 * (1 + table_count) + 7
        else:
            inline_bits = _required_bits(max_next)
            offsets = None
        total_bits = word_bits + middle_bits + inline_bits
        size = ((1 + entries) * total_bits + 7) // 8 + 8
        need(base + size)
        starts = np.arange(entries + 1, dtype=np.int64) * total_bits + base * 8
        words = _read_bits(padded, starts[:-1], word_bits)
        low = _read_bits(padded, starts + word_bits + middle_bits, inline_bits)
        if offsets is None:
            pointers = low
        else:
            high = np.searchsorted(offsets, np.arange(entries + 1, dtype=np.uint64), side="right") - 1
            pointers = (high.astype(np.uint64) << np.uint64(inline_bits)) | low
        if quantised:
            backoff = _read_bits(padded, starts[:-1] + word_bits, backoff_bits)
            prob = _read_bits(padded, starts[:-1] + word_bits + backoff_bits, prob_bits)
            prob_table, backoff_table = prob_tables[k - 2], backoff_tables[k - 2]
        else:
            prob, prob_table = _tabulate(_nonpositive31(_read_bits(padded, starts[:-1] + word_bits, 31)))
            backoff, backoff_table = _tabulate(_read_bits(padded, starts[:-1] + word_bits + 31, 32))
        levels.append(
            Level(
                words.astype(np.uint32),
                prob,
                prob_table,
                backoff,
                backoff_table,
                pointers.astype(np.uint32 if max_next < 2**32 else np.uint64),
            )
        )
        at = base + size
    # Highest order.
    total_bits = word_bits + longest_bits
    entries = counts[-1]
    size = ((1 + entries) * total_bits + 7) // 8 + 8
    need(at + size)
    starts = np.arange(entries, dtype=np.int64) * total_bits + at * 8
    words = _read_bits(padded, starts, word_bits)
    if quantised:
        prob, prob_table = _read_bits(padded, starts + word_bits, longest_bits), prob_tables[-1]
    else:
        prob, prob_table = _tabulate(_nonpositive31(_read_bits(padded, starts + word_bits, 31)))
    levels.append(Level(words.astype(np.uint32), prob, prob_table))
    at += size

    # Word strings.
    strings = raw[at:].split(b"\0")
    if not strings or strings[0] != b"<unk>" or len(strings) < counts[0] + 1 or strings[counts[0]] != b"":
        raise ValueError("the KenLM vocabulary strings are missing or in the wrong place")
    vocab = [s.decode("utf-8") for s in strings[: counts[0]]]
    if verify_vocabulary:
        expected = np.array([murmur_hash64a(s) for s in strings[1 : hashed + 1]], dtype=np.uint64)
        if not np.array_equal(expected, hashes):
            raise ValueError("the KenLM vocabulary strings do not match its hash table")
    return NgramModel(
        vocab,
        unigrams["prob"][: counts[0]].copy(),
        unigrams["backoff"][: counts[0]].copy(),
        unigrams["next"][: counts[0] + 1].astype(np.uint32 if counts[1] < 2**32 else np.uint64),
        levels,
    )


def _align8(offset: int) -> int:
    return (offset + 7) // 8 * 8


def _required_bits(value: int) -> int:
    return value.bit_length()


def _chop_bits(max_offset: int, max_next: int, configured: int) -> int:
    """How many high bits of the child pointers the array compression moved into its table: the choice
    that minimises table size minus inline savings (KenLM's rule, so we find the same layout)."""
    required = _required_bits(max_next)
    best, lowest = 0, None
    for chop in range(min(required, configured) + 1):
        change = (max_next >> (required - chop)) * 64 - max_offset * chop
        if lowest is None or change < lowest:
            best, lowest = chop, change
    return best


def _read_bits(data: np.ndarray, bit_offsets: np.ndarray, length: int) -> np.ndarray:
    """Little-endian bit fields of ``length`` (≤ 57) bits at ``bit_offsets``."""
    if length == 0:
        return np.zeros(len(bit_offsets), dtype=np.uint64)
    byte = bit_offsets >> 3
    word = np.zeros(len(bit_offsets), dtype=np.uint64)
    for k in range(8):
        word |= data[byte + k].astype(np.uint64) << np.uint64(8 * k)
    return (word >> (bit_offsets & 7).astype(np.uint64)) & np.uint64((1 << length) - 1)


def _nonpositive31(bits: np.ndarray) -> np.ndarray:
    """KenLM stores non-positive floats without their sign bit."""
    return bits | np.uint64(0x80000000)


def _tabulate(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 bit patterns → (index, table of distinct values); by bits, so -0.0 and 0.0 stay apart."""
    table, index = np.unique(bits.astype(np.uint32), return_inverse=True)
    return index.astype(np.uint32), table.view(np.float32)


def murmur_hash64a(data: bytes, seed: int = 0) -> int:
    """MurmurHash64A (Austin Appleby, public domain), the hash KenLM's vocabulary is sorted by."""
    m, r, mask = 0xC6A4A7935BD1E995, 47, (1 << 64) - 1
    h = (seed ^ (len(data) * m)) & mask
    blocks = len(data) // 8
    for (k,) in struct.iter_unpack("<Q", data[: blocks * 8]):
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = ((h ^ k) * m) & mask
    tail = data[blocks * 8 :]
    if tail:
        h = ((h ^ int.from_bytes(tail, "little")) * m) & mask
    h ^= h >> r
    h = (h * m) & mask
    return h ^ (h >> r)


# ------------------------------------------------------------------------------------------------- ARPA


def read_arpa(path: Path) -> NgramModel:
    """An ARPA backoff model (``\\data\\`` header, ``\\k-grams:`` sections). Pure Python: about 5 s per
    million n-grams; convert large models once with ``scripts/convert_ngram.py``."""
    with open(path, encoding="utf-8") as f:
        return arpa_model(f)


def arpa_model(lines: Iterator[str] | list[str]) -> NgramModel:
    counts: dict[int, int] = {}
    grams: list[dict[tuple[int, ...], tuple[float, float | None]]] = []
    vocab = ["<unk>"]
    ids: dict[str, int] = {}
    unk: tuple[float, float | None] | None = None
    section = 0
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        if line == "\\data\\":
            continue
        if line.startswith("ngram ") and section == 0:
            k, _, n = line[6:].partition("=")
            counts[int(k)] = int(n)
            continue
        if line.startswith("\\") and line.endswith("-grams:"):
            section = int(line[1:-7])
            if section != len(grams) + 1 or section not in counts:
                raise ValueError(f"line {number}: unexpected section {line}")
            grams.append({})
            continue
        if line == "\\end\\":
            break
        if section == 0:
            raise ValueError(f"line {number}: not an ARPA file")
        parts = line.split()
        if len(parts) not in (section + 1, section + 2):
            raise ValueError(f"line {number}: expected a {section}-gram")
        # Single precision, as KenLM reads them; positive log-probabilities are clamped to 0, as it does.
        prob = min(_f32(float(parts[0])), 0.0)
        backoff = _f32(float(parts[section + 1])) if len(parts) == section + 2 else None
        names = parts[1 : section + 1]
        if section == 1:
            word = names[0]
            if word in ("<unk>", "<UNK>"):
                unk = (prob, backoff)
                continue
            if word in ids:
                raise ValueError(f"line {number}: duplicate unigram {word}")
            ids[word] = len(vocab)
            vocab.append(word)
            grams[0][(ids[word],)] = (prob, backoff)
        else:
            try:
                key = tuple(0 if w in ("<unk>", "<UNK>") else ids[w] for w in names)
            except KeyError as exc:
                raise ValueError(f"line {number}: {exc.args[0]} is not among the unigrams") from None
            grams[section - 1][key] = (prob, backoff)
    if not grams:
        raise ValueError("no n-grams in the ARPA file")
    grams[0][(0,)] = unk if unk is not None else (UNKNOWN_MISSING_LOGPROB, 0.0)
    return _build(vocab, grams, stand_in_unknown=unk is None)


def _build(
    vocab: list[str],
    grams: list[dict[tuple[int, ...], tuple[float, float | None]]],
    *,
    stand_in_unknown: bool,
) -> NgramModel:
    order = len(grams)
    # Blanks: every n-gram's suffix must exist to hold its place in the reversed trie.
    blanks: list[set[tuple[int, ...]]] = [set() for _ in range(order)]
    for k in range(order, 2, -1):
        for key in list(grams[k - 1]) + list(blanks[k - 1]):
            suffix = key[1:]
            if suffix not in grams[k - 2]:
                blanks[k - 2].add(suffix)

    def backoff_of(key: tuple[int, ...]) -> float:
        entry = grams[len(key) - 1].get(key)
        return (entry[1] or 0.0) if entry is not None else 0.0

    def logprob(key: tuple[int, ...]) -> float:
        """ARPA semantics: the n-gram's own probability, else the context's backoff plus the shorter one."""
        entry = grams[len(key) - 1].get(key)
        if entry is not None:
            return entry[0]
        return _f32(backoff_of(key[:-1]) + logprob(key[1:]))

    # Which n-grams some longer n-gram extends to the right (KenLM keeps only those in a state).
    extended: list[set[tuple[int, ...]]] = [set() for _ in range(order)]
    for k in range(2, order + 1):
        for key in list(grams[k - 1]) + list(blanks[k - 1]):
            extended[k - 2].add(key[:-1])

    def backoff_value(key: tuple[int, ...], given: float | None) -> float:
        value = given or 0.0
        if value == 0.0:
            value = 0.0 if key in extended[len(key) - 1] else -0.0
        return value

    size = len(vocab)
    unigram_prob = np.array([grams[0][(i,)][0] for i in range(size)], dtype=np.float32)
    unigram_backoff = np.array(
        [backoff_value((i,), grams[0][(i,)][1]) for i in range(size)], dtype=np.float32
    )
    if stand_in_unknown:  # KenLM gives the <unk> it adds a +0.0 backoff: it stays in a state
        unigram_backoff[0] = 0.0
    levels: list[Level] = []
    parent_index: dict[tuple[int, ...], int] = {(i,): i for i in range(size)}
    parent_pointers: list[np.ndarray] = []
    for k in range(2, order + 1):
        keys = sorted(set(grams[k - 1]) | blanks[k - 1], key=lambda g: g[::-1])
        parents = np.array([parent_index[g[1:]] for g in keys], dtype=np.int64)
        pointers = np.zeros(len(parent_index) + 1, dtype=np.int64)
        np.cumsum(np.bincount(parents, minlength=len(parent_index)), out=pointers[1:])
        parent_pointers.append(pointers)
        words = np.array([g[0] for g in keys], dtype=np.uint32)
        probs = np.array([logprob(g) for g in keys], dtype=np.float32)
        prob, prob_table = _tabulate(probs.view(np.uint32))
        if k < order:
            backoffs = np.array([backoff_value(g, backoff_of(g)) for g in keys], dtype=np.float32)
            backoff, backoff_table = _tabulate(backoffs.view(np.uint32))
            levels.append(Level(words, prob, prob_table, backoff, backoff_table))
        else:
            levels.append(Level(words, prob, prob_table))
        parent_index = {g: i for i, g in enumerate(keys)}
    # Each level's child pointers were computed one level up.
    finished = []
    for k, level in enumerate(levels, start=2):
        if k < order:
            level = Level(
                level.words,
                level.prob,
                level.prob_table,
                level.backoff,
                level.backoff_table,
                parent_pointers[k - 1].astype(np.uint32),
            )
        finished.append(level)
    unigram_next = parent_pointers[0].astype(np.uint32) if order > 1 else np.zeros(size + 1, np.uint32)
    return NgramModel(vocab, unigram_prob, unigram_backoff, unigram_next, finished)
