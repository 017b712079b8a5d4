"""Fixtures of the music tests: small clips in tests/fixtures/music (see ATTRIBUTION.md there)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tingyin.audio import decode

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "music"


def load_clip(name: str) -> np.ndarray:
    return decode(FIXTURES / name).mono()


@pytest.fixture(scope="session")
def electronic_loop() -> np.ndarray:
    """8 s electronic loop (Sonic Pi "loop_garzul", CC0)."""
    return load_clip("loop_garzul_16k.flac")


@pytest.fixture(scope="session")
def instrumental_track() -> np.ndarray:
    """12 s of an instrumental track (Manolo Camp, "Morning Coffee", CC BY-SA 3.0)."""
    return load_clip("morning_coffee_12s_16k.flac")


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    """6 s of read English speech (LJSpeech, public domain)."""
    return load_clip("LJ001-0182_speech.flac")


@pytest.fixture(scope="session")
def reference() -> dict[str, np.ndarray]:
    """TensorFlow outputs of musicnn recorded by scripts/convert_musicnn.py."""
    with np.load(FIXTURES / "musicnn_reference.npz") as data:
        return {key: data[key] for key in data.files}


RENDERED = (
    "violin", "cello", "clarinet", "flute", "alto_sax", "nylon_guitar", "contrabass", "string_quartet",
    "jazz_combo", "koto",
)  # fmt: skip


@pytest.fixture(scope="session")
def rendered() -> dict[str, np.ndarray]:
    """4 s General MIDI renders of real pieces (tingyin/music/devset.py), by instrument or ensemble."""
    return {name: load_clip(f"render_{name}.ogg") for name in RENDERED}


@pytest.fixture(scope="session")
def mandarin_speech() -> np.ndarray:
    """Read Mandarin (AISHELL sample data, tests/fixtures/speech)."""
    return decode(FIXTURES.parent / "speech" / "BAC009S0252W0131.flac").mono()
