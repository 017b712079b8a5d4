"""The dev-task generator's pieces: a Standard MIDI File writer, fluidsynth rendering, espeak-ng speech."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest

from tingyin.eval.sound_tasks import _auroc, midi_file, render_midi, speak


def test_midi_file_layout() -> None:
    data = midi_file([(0.5, bytes([0x80, 60, 0])), (0.0, bytes([0x90, 60, 100]))], ticks_per_second=1000)
    assert data[:4] == b"MThd" and struct.unpack(">IHHH", data[4:14]) == (6, 0, 1, 1000)
    track_length = struct.unpack(">I", data[18:22])[0]
    track = data[22:]
    assert data[14:18] == b"MTrk" and len(track) == track_length
    # Events sorted by time; 500 ticks between note on and off as a variable-length delta (0x83 0x74).
    assert bytes([0x00, 0x90, 60, 100, 0x83, 0x74, 0x80, 60, 0]) in track
    assert track.endswith(b"\x00\xff\x2f\x00")


def test_auroc_counts_ties_half() -> None:
    assert _auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert _auroc(np.array([1.0]), np.array([1.0])) == 0.5


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth is not installed")
def test_render_a_note() -> None:
    audio = render_midi(
        midi_file([(0.0, bytes([0xC0, 40])), (0.0, bytes([0x90, 69, 110])), (0.8, bytes([0x80, 69, 0]))])
    )
    assert audio.dtype == np.float32 and audio.shape[0] >= 16000 * 0.8
    spectrum = np.abs(np.fft.rfft(audio[: 16000 // 2]))
    assert 400 < np.argmax(spectrum) * 2 < 480  # a violin's A4 (440 Hz) dominates


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_speak_a_word() -> None:
    audio = speak("left", "en+f3", 160, 50)
    assert audio.dtype == np.float32 and 0.2 * 16000 < audio.shape[0] < 2 * 16000
    assert float(np.sqrt(np.mean(audio**2))) > 0.01
