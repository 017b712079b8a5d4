"""The served ONNX taggers and the numpy front end against musicnn's TensorFlow original and librosa."""

from __future__ import annotations

import numpy as np
import pytest

from tingyin.music import features
from tingyin.music.tagger import EMBED_DIM, MODELS, load_tagger, run_tagger


@pytest.mark.parametrize("model", MODELS)
def test_onnx_matches_tensorflow_outputs(model: str, reference: dict[str, np.ndarray]) -> None:
    tags, penultimate = load_tagger(model).run(["tags", "penultimate"], {"x": reference["inputs"]})
    assert tags.shape == (2, 50)
    assert penultimate.shape == (2, EMBED_DIM)
    np.testing.assert_allclose(tags, reference[f"{model}/tags"], atol=1e-4)
    np.testing.assert_allclose(penultimate, reference[f"{model}/penultimate"], atol=1e-4)


@pytest.mark.parametrize("model", MODELS)
def test_end_to_end_matches_musicnn_extractor(
    model: str, electronic_loop: np.ndarray, reference: dict[str, np.ndarray]
) -> None:
    """Our front end + ONNX vs musicnn.extractor (librosa + TF, with its float16 cast) on the same clip."""
    taggram = run_tagger(electronic_loop, model).taggram
    expected = reference[f"{model}/taggram"]
    assert taggram.shape == expected.shape == (2, 50)  # 8 s -> two whole 3 s patches, the tail dropped
    np.testing.assert_allclose(taggram, expected, atol=1e-3)


def test_front_end_reproduces_the_reference_input(
    electronic_loop: np.ndarray, reference: dict[str, np.ndarray]
) -> None:
    spectrogram = features.log_mel(electronic_loop)
    assert spectrogram.shape == (1 + len(electronic_loop) // features.HOP, features.N_MELS)
    assert spectrogram.dtype == np.float32
    np.testing.assert_allclose(spectrogram[: features.PATCH_FRAMES], reference["inputs"][1], atol=1e-4)


def test_front_end_matches_librosa(electronic_loop: np.ndarray) -> None:
    librosa = pytest.importorskip("librosa")
    basis = librosa.filters.mel(sr=16000, n_fft=512, n_mels=96)
    np.testing.assert_allclose(features.mel_basis(), basis, atol=1e-7)
    mel = librosa.feature.melspectrogram(y=electronic_loop, sr=16000, hop_length=256, n_fft=512, n_mels=96).T
    np.testing.assert_allclose(features.log_mel(electronic_loop), np.log10(10000 * mel + 1), atol=1e-4)


def test_patches_cut_whole_three_second_windows_and_pad_short_audio() -> None:
    spectrogram = np.ones((500, features.N_MELS), dtype=np.float32)
    cut = features.patches(spectrogram)
    assert cut.shape == (2, features.PATCH_FRAMES, features.N_MELS)
    short = features.patches(spectrogram[:100])
    assert short.shape == (1, features.PATCH_FRAMES, features.N_MELS)
    assert short[0, :100].min() == 1.0 and short[0, 100:].max() == 0.0
    assert pytest.approx(2.992, abs=1e-3) == features.PATCH_SECONDS


@pytest.mark.parametrize("seconds", [1.0, 2.99, 3.0, 10.0, 61.0])
def test_spread_patches_are_the_same_patches_computed_alone(seconds: float) -> None:
    """A long track's sampled patches equal the matching patches of the whole spectrogram, bit for bit."""
    samples = np.random.default_rng(3).standard_normal(int(16000 * seconds)).astype(np.float32) * 0.1
    whole = features.patches(features.log_mel(samples))
    assert features.patch_count(len(samples)) == len(whole)
    index = features.spread_patches(len(samples), 4)
    assert len(index) == min(4, len(whole)) and index[0] == 0 and index[-1] == len(whole) - 1
    np.testing.assert_array_equal(features.log_mel_patches(samples, index), whole[index])


def test_spread_patches_cover_the_whole_track_evenly() -> None:
    ten_minutes = 16000 * 600
    index = features.spread_patches(ten_minutes, 20)
    assert len(index) == 20 and list(index) == sorted(set(index))
    assert np.diff(index).min() >= 9 and np.diff(index).max() <= 11  # 200 patches, every 10th or so
    assert list(features.spread_patches(16000 * 9, 20)) == [0, 1, 2]
    with pytest.raises(ValueError):
        features.spread_patches(16000, 0)
