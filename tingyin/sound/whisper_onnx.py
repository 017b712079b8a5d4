"""The Whisper encoder rebuilt as a plain ONNX graph from the CTranslate2 weights we already ship.

Why not call CTranslate2: its Whisper encoder only takes whole 30 s windows (a 5 s clip costs a full
30 s encode), it returns only the last layer, and an exported classifier must run with onnxruntime
alone. The graph built here goes from raw 16 kHz audio to a pooled embedding:

    audio [B, N] -> pad to >= 1 s -> 30 s windows (last one aligned to the end) -> log-mel (STFT as a
    Conv with a windowed DFT basis, Slaney mel MatMul, Whisper's log10/clamp/scale) -> conv stem ->
    transformer layers -> mean and max of chosen layers' states over frames and windows -> [B, D]

Only the frames covering the clip are encoded (positional embeddings are sliced to the clip's length),
so a 5 s clip costs a 5 s encode. The weights stay float16 in the file and are cast once at load.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tingyin.models.registry import ModelError

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 30 * SAMPLE_RATE
MIN_SAMPLES = SAMPLE_RATE  # shorter clips are zero-padded to 1 s so the stem has frames to work on
N_FFT = 400
HOP = 160
N_MELS = 80
OPSET = 18
POOLINGS = ("mean", "max", "std")
MEL_LAYER = -1  # "layer" -1: the log-mel frames themselves (80 bands), before the encoder

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ctranslate2_variables(model_bin: Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """Variables of a CTranslate2 ``model.bin`` (binary format 6) whose names start with ``prefix``."""
    data = model_bin.read_bytes()
    position = 0

    def take(fmt: str) -> int:
        nonlocal position
        (value,) = struct.unpack_from(fmt, data, position)
        position += struct.calcsize(fmt)
        return int(value)

    def take_string() -> str:
        nonlocal position
        length = take("H")
        text = data[position : position + length - 1].decode("utf-8")
        position += length
        return text

    version = take("I")
    if version != 6:
        raise ModelError(f"{model_bin}: CTranslate2 binary format {version} is not supported (expected 6)")
    take_string()  # spec name
    take("I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = take_string()
        shape = [take("I") for _ in range(take("B"))]
        dtype_id = take("B")
        num_bytes = take("I")
        if name.startswith(prefix):
            if dtype_id not in _CT2_DTYPES:
                raise ModelError(f"{model_bin}: variable {name} has unsupported type id {dtype_id}")
            dtype = np.dtype(_CT2_DTYPES[dtype_id])
            array = np.frombuffer(data, dtype, count=num_bytes // dtype.itemsize, offset=position)
            variables[name] = array.reshape(shape).copy()
        position += num_bytes
    return variables


def whisper_mel_filters() -> np.ndarray:
    """Whisper's 80-band Slaney mel filter bank for a 400-point FFT at 16 kHz, (80, 201)."""
    from faster_whisper.feature_extractor import FeatureExtractor

    return np.asarray(FeatureExtractor.get_mel_filters(SAMPLE_RATE, N_FFT, n_mels=N_MELS), dtype=np.float32)


def _dft_kernels() -> np.ndarray:
    """Hann-windowed DFT basis as Conv1d kernels: (2 * 201, 1, 400), real parts then imaginary parts."""
    n = np.arange(N_FFT)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)  # periodic Hann, as torch.hann_window
    bins = np.arange(N_FFT // 2 + 1)[:, None]
    angle = 2 * np.pi * bins * n[None, :] / N_FFT
    real = window * np.cos(angle)
    imag = -window * np.sin(angle)
    return np.concatenate([real, imag])[:, None, :].astype(np.float32)


@dataclass(frozen=True)
class EmbedderSpec:
    """Which encoder states are pooled into the embedding. Layer 0 is the stem output (before any block),
    layer -1 the log-mel spectrogram (80 bands; no encoder is run when it is the only layer)."""

    layers: tuple[int, ...] = (1, 2, 3)
    num_layers: int = 6  # encoder blocks to run; later blocks are skipped when no chosen layer needs them
    # Statistics of each chosen layer's states over frames, in this order per layer.
    poolings: tuple[str, ...] = ("mean", "max")

    def __post_init__(self) -> None:
        unknown = [pooling for pooling in self.poolings if pooling not in POOLINGS]
        if unknown or not self.poolings or not self.layers or min(self.layers) < MEL_LAYER:
            raise ModelError(f"an embedder needs layers and poolings among {', '.join(POOLINGS)}")

    @property
    def key(self) -> str:
        names = ("mel" if layer == MEL_LAYER else str(layer) for layer in self.layers)
        key = "whisper-base-L" + "-".join(names)
        if self.poolings != ("mean", "max"):
            key += "-P" + "-".join(self.poolings)
        return key


class _Graph:
    """A tiny helper to emit nodes with unique names."""

    def __init__(self, fp16_weights: bool = True) -> None:
        self.fp16_weights = fp16_weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, **attrs: Any) -> str:
        output = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=output, **attrs))
        return output

    def op_multi(self, op_type: str, inputs: Sequence[str], count: int, **attrs: Any) -> list[str]:
        outputs = [self.name(op_type.lower()) for _ in range(count)]
        self.nodes.append(
            helper.make_node(op_type, list(inputs), outputs, name=outputs[0] + "_node", **attrs)
        )
        return outputs

    def const(self, value: np.ndarray | np.generic, hint: str = "const") -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, value: np.ndarray, hint: str) -> str:
        """A float weight stored as float16 and cast to float32 (folded once when the session loads).

        With ``fp16_weights=False`` it is stored as float32 so that int8 quantization can find it.
        """
        if not self.fp16_weights:
            return self.const(np.asarray(value, dtype=np.float16).astype(np.float32), hint)
        stored = self.const(np.asarray(value, dtype=np.float16), hint)
        return self.op("Cast", [stored], hint + "_f32", to=TensorProto.FLOAT)

    def ints(self, values: Sequence[int], hint: str = "ints") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint)


def _layer_norm(g: _Graph, x: str, gamma: np.ndarray, beta: np.ndarray) -> str:
    return g.op(
        "LayerNormalization",
        [x, g.weight(gamma, "ln_gamma"), g.weight(beta, "ln_beta")],
        axis=-1,
        epsilon=1e-5,
    )


def _gelu(g: _Graph, x: str) -> str:
    scaled = g.op("Div", [x, g.const(np.float32(np.sqrt(2.0)))])
    erf = g.op("Erf", [scaled])
    one_plus = g.op("Add", [erf, g.const(np.float32(1.0))])
    half_x = g.op("Mul", [x, g.const(np.float32(0.5))])
    return g.op("Mul", [half_x, one_plus])


LINEAR_MATMUL_PREFIX = "linear_matmul"


def _linear(g: _Graph, x: str, weight: np.ndarray, bias: np.ndarray, hint: str) -> str:
    # Only these MatMuls (activation x constant weight) are worth int8: the mel filterbank MatMul sees a
    # power spectrum spanning ~13 decades that 8 bits would flatten, and attention MatMuls have no weights.
    product = g.op("MatMul", [x, g.weight(weight.T, hint + "_w")], hint=LINEAR_MATMUL_PREFIX)
    return g.op("Add", [product, g.weight(bias, hint + "_b")])


def _frontend(g: _Graph, audio: str) -> str:
    """audio [B, N] float32 -> log-mel windows [B * n_windows, 80, frames]."""
    shape = g.op("Shape", [audio])
    length = g.op("Gather", [shape, g.ints([1])], axis=0)  # [1]
    batch = g.op("Gather", [shape, g.ints([0])], axis=0)  # [1]
    # Zero-pad very short clips to MIN_SAMPLES.
    missing = g.op("Max", [g.op("Sub", [g.ints([MIN_SAMPLES]), length]), g.ints([0])])
    pads = g.op("Concat", [g.ints([0, 0, 0]), missing], axis=0)
    audio = g.op("Pad", [audio, pads], mode="constant")
    length = g.op("Max", [length, g.ints([MIN_SAMPLES])])
    # Windows of min(N, 30 s); the last window ends at the clip's end so all windows have equal length.
    window = g.op("Min", [length, g.ints([WINDOW_SAMPLES])])
    n_windows = g.op("Div", [g.op("Sub", [g.op("Add", [length, window]), g.ints([1])]), window])
    n_windows_scalar = g.op("Squeeze", [n_windows, g.ints([0])])
    window_scalar = g.op("Squeeze", [window, g.ints([0])])
    window_index = g.op("Range", [g.const(np.int64(0)), n_windows_scalar, g.const(np.int64(1))])
    starts = g.op("Min", [g.op("Mul", [window_index, window]), g.op("Sub", [length, window])])
    offsets = g.op("Range", [g.const(np.int64(0)), window_scalar, g.const(np.int64(1))])
    indices = g.op(
        "Add",
        [g.op("Unsqueeze", [starts, g.ints([1])]), g.op("Unsqueeze", [offsets, g.ints([0])])],
    )  # [n_windows, W]
    windows = g.op("Gather", [audio, indices], axis=1)  # [B, n_windows, W]
    flat_shape = g.op("Concat", [g.ints([-1, 1]), window], axis=0)
    windows = g.op("Reshape", [windows, flat_shape])  # [B * n_windows, 1, W]
    # STFT (center=True, reflect) as a strided Conv with the windowed DFT basis.
    padded = g.op("Pad", [windows, g.ints([0, 0, N_FFT // 2, 0, 0, N_FFT // 2])], mode="reflect")
    spectrum = g.op("Conv", [padded, g.const(_dft_kernels(), "dft")], kernel_shape=[N_FFT], strides=[HOP])
    real, imag = g.op_multi("Split", [spectrum, g.ints([N_FFT // 2 + 1, N_FFT // 2 + 1])], 2, axis=1)
    power = g.op("Add", [g.op("Mul", [real, real]), g.op("Mul", [imag, imag])])  # [BW, 201, F + 1]
    power = g.op("Slice", [power, g.ints([0]), g.ints([-1]), g.ints([2])])  # Whisper drops the last frame
    mel = g.op("MatMul", [g.const(whisper_mel_filters(), "mel_filters"), power])  # [BW, 80, F]
    log_mel = g.op(
        "Div",
        [g.op("Log", [g.op("Max", [mel, g.const(np.float32(1e-10))])]), g.const(np.float32(np.log(10.0)))],
    )
    peak = g.op("ReduceMax", [log_mel, g.ints([1, 2])], keepdims=1)
    log_mel = g.op("Max", [log_mel, g.op("Sub", [peak, g.const(np.float32(8.0))])])
    log_mel = g.op("Div", [g.op("Add", [log_mel, g.const(np.float32(4.0))]), g.const(np.float32(4.0))])
    del batch
    return log_mel


def _attention(g: _Graph, x: str, w: dict[str, np.ndarray], prefix: str, num_heads: int) -> str:
    dim = w[prefix + "linear_1/weight"].shape[0]
    head_dim = dim // num_heads
    qkv = _linear(g, x, w[prefix + "linear_0/weight"], w[prefix + "linear_0/bias"], "qkv")  # [B, T, 3D]
    split_shape = g.ints([0, 0, 3, num_heads, head_dim])
    qkv = g.op("Reshape", [qkv, split_shape])
    qkv = g.op("Transpose", [qkv], perm=[2, 0, 3, 1, 4])  # [3, B, H, T, hd]
    query, key, value = g.op_multi("Split", [qkv, g.ints([1, 1, 1])], 3, axis=0)
    query = g.op("Squeeze", [query, g.ints([0])])
    key = g.op("Squeeze", [key, g.ints([0])])
    value = g.op("Squeeze", [value, g.ints([0])])
    scores = g.op("MatMul", [query, g.op("Transpose", [key], perm=[0, 1, 3, 2])])
    scores = g.op("Mul", [scores, g.const(np.float32(1.0 / np.sqrt(head_dim)))])
    weights = g.op("Softmax", [scores], axis=-1)
    context = g.op("MatMul", [weights, value])  # [B, H, T, hd]
    context = g.op("Transpose", [context], perm=[0, 2, 1, 3])
    context = g.op("Reshape", [context, g.ints([0, 0, dim])])
    return _linear(g, context, w[prefix + "linear_1/weight"], w[prefix + "linear_1/bias"], "attn_out")


def _encoder_states(
    g: _Graph,
    w: dict[str, np.ndarray],
    log_mel: str,
    last_layer: int,
    num_layers: int,
    states: dict[int, str],
) -> None:
    """The conv stem and transformer blocks up to ``last_layer``; fills ``states[0..last_layer]``."""
    num_heads = int(w["encoder/num_heads"])
    x = g.op(
        "Conv",
        [
            log_mel,
            g.weight(w["encoder/conv1/weight"], "conv1_w"),
            g.weight(w["encoder/conv1/bias"], "conv1_b"),
        ],
        kernel_shape=[3],
        pads=[1, 1],
    )
    x = _gelu(g, x)
    x = g.op(
        "Conv",
        [x, g.weight(w["encoder/conv2/weight"], "conv2_w"), g.weight(w["encoder/conv2/bias"], "conv2_b")],
        kernel_shape=[3],
        pads=[1, 1],
        strides=[2],
    )
    x = _gelu(g, x)
    x = g.op("Transpose", [x], perm=[0, 2, 1])  # [BW, T, D]
    tokens = g.op("Gather", [g.op("Shape", [x]), g.ints([1])], axis=0)
    positions = g.op(
        "Slice", [g.weight(w["encoder/position_encodings/encodings"], "pos"), g.ints([0]), tokens]
    )
    x = g.op("Add", [x, positions])
    states[0] = x
    for index in range(last_layer):
        prefix = f"encoder/layer_{index}/"
        normed = _layer_norm(
            g, x, w[prefix + "self_attention/layer_norm/gamma"], w[prefix + "self_attention/layer_norm/beta"]
        )
        x = g.op("Add", [x, _attention(g, normed, w, prefix + "self_attention/", num_heads)])
        normed = _layer_norm(g, x, w[prefix + "ffn/layer_norm/gamma"], w[prefix + "ffn/layer_norm/beta"])
        hidden = _gelu(
            g, _linear(g, normed, w[prefix + "ffn/linear_0/weight"], w[prefix + "ffn/linear_0/bias"], "ff0")
        )
        x = g.op(
            "Add",
            [
                x,
                _linear(g, hidden, w[prefix + "ffn/linear_1/weight"], w[prefix + "ffn/linear_1/bias"], "ff1"),
            ],
        )
        states[index + 1] = x
    if last_layer == num_layers:
        # The top layer is read after the encoder's final layer norm, as Whisper's decoder sees it.
        states[last_layer] = _layer_norm(g, x, w["encoder/layer_norm/gamma"], w["encoder/layer_norm/beta"])


def build_embedder(model_bin: Path, spec: EmbedderSpec, *, fp16_weights: bool = True) -> onnx.ModelProto:
    """The audio -> embedding graph for ``spec`` from Whisper-base CTranslate2 weights."""
    w = read_ctranslate2_variables(model_bin)
    last_layer = max(spec.layers)
    if last_layer > spec.num_layers:
        raise ModelError(f"layer {last_layer} does not exist in a {spec.num_layers}-layer encoder")
    g = _Graph(fp16_weights)
    log_mel = _frontend(g, "audio")
    states = {MEL_LAYER: g.op("Transpose", [log_mel], perm=[0, 2, 1])}  # [BW, F, 80]
    if last_layer >= 0:
        _encoder_states(g, w, log_mel, last_layer, spec.num_layers, states)
    # Pool each chosen layer over frames and over the windows of one clip: [B, n_windows * T, D].
    audio_batch = g.op("Gather", [g.op("Shape", ["audio"]), g.ints([0])], axis=0)
    pooled = []
    for layer in spec.layers:
        dim = g.op("Gather", [g.op("Shape", [states[layer]]), g.ints([2])], axis=0)
        per_clip = g.op("Reshape", [states[layer], g.op("Concat", [audio_batch, g.ints([-1]), dim], axis=0)])
        mean = g.op("ReduceMean", [per_clip, g.ints([1])], keepdims=0)
        for pooling in spec.poolings:
            if pooling == "mean":
                pooled.append(mean)
            elif pooling == "max":
                pooled.append(g.op("ReduceMax", [per_clip, g.ints([1])], keepdims=0))
            else:  # std over frames: sqrt(E[x^2] - E[x]^2), clamped at 0 against rounding
                square_mean = g.op("ReduceMean", [g.op("Mul", [per_clip, per_clip]), g.ints([1])], keepdims=0)
                variance = g.op("Sub", [square_mean, g.op("Mul", [mean, mean])])
                variance = g.op("Max", [variance, g.const(np.float32(0.0))])
                pooled.append(g.op("Sqrt", [variance]))
    embedding = g.op("Concat", pooled, axis=1)
    g.nodes.append(helper.make_node("Identity", [embedding], ["embedding"], name="embedding_out"))
    graph = helper.make_graph(
        g.nodes,
        "tingyin_sound_embedder",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", "dim"])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tingyin")
    model.ir_version = 8
    return model


def quantizable_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the transformer's weight MatMuls (the only nodes int8 quantization should touch)."""
    return [node.name for node in model.graph.node if node.name.startswith(LINEAR_MATMUL_PREFIX)]


def embedder_dim(spec: EmbedderSpec, width: int = 512) -> int:
    return len(spec.poolings) * sum(N_MELS if layer == MEL_LAYER else width for layer in spec.layers)


def embedder_cache_path(cache_dir: Path, model_bin: Path, spec: EmbedderSpec) -> Path:
    """Where the built graph is kept; the name changes when the weights file or the spec changes."""
    stat = model_bin.stat()
    digest = hashlib.sha256(f"{model_bin.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{spec.key}:v2".encode())
    return cache_dir / f"sound-embedder-{spec.key}-{digest.hexdigest()[:12]}.onnx"
