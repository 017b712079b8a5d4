"""The development-data generator: arranging real pieces, writing MIDI, rendering with fluidsynth."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from tingyin.music import devset
from tingyin.music.detector import is_music


def _need_renderer() -> None:
    """fluidsynth and its soundfont come from .ci/services.sh: required in CI, skipped elsewhere."""
    missing = shutil.which("fluidsynth") is None or not any(p.exists() for p in devset.SOUNDFONT_CANDIDATES)
    if missing:
        if os.environ.get("CI"):
            raise RuntimeError("CI must install fluidsynth and fluid-soundfont-gm (.ci/services.sh)")
        pytest.skip("fluidsynth / fluid-soundfont-gm not installed")


def _scale_piece() -> devset.Piece:
    """C major: a melody of quarter notes over a held bass, four bars of 4/4."""
    melody = [(float(i), 1.0, pitch) for i, pitch in enumerate([60, 62, 64, 65, 67, 69, 71, 72] * 2)]
    bass = [(0.0, 8.0, 48), (8.0, 8.0, 43)]
    return devset.Piece("scale", [melody, bass], 4, 0, False)


def test_harmonise_picks_the_triad_that_holds_the_melody() -> None:
    melody = [(0.0, 1.0, 60), (1.0, 1.0, 64), (2.0, 1.0, 67), (3.0, 1.0, 64)]  # C E G E: tonic
    melody += [(4.0, 1.0, 67), (5.0, 1.0, 71), (6.0, 1.0, 74), (7.0, 1.0, 71)]  # G B D B: dominant
    piece = devset.Piece("arpeggios", [melody], 4, 0, False)
    alto, tenor, root, bass = devset.harmonise(piece)
    assert [p % 12 for _, _, p in bass] == [0, 7]
    assert {alto[0][2] % 12, tenor[0][2] % 12, root[0][2] % 12} == {0, 4, 7}
    assert {alto[1][2] % 12, tenor[1][2] % 12, root[1][2] % 12} == {7, 11, 2}


def test_arrangements_keep_lines_in_the_instruments_range() -> None:
    rng = np.random.default_rng(0)
    quartet = next(a for a in devset.INSTRUMENTAL if a.name == "string_quartet")
    tracks = devset.arrange(_scale_piece(), quartet, 120.0, rng)
    assert [t.program for t in tracks] == [40, 40, 41, 42]
    for track, (name, _role) in zip(tracks, quartet.parts, strict=True):
        instrument = devset.INSTRUMENTS[name]
        assert track.notes and all(instrument.low <= n[2] <= instrument.high for n in track.notes)
    # 120 bpm: the sixteenth quarter note starts near 7.5 s.
    assert tracks[0].notes[-1][0] == pytest.approx(7.5, abs=0.05)
    assert len({a.name for a in devset.INSTRUMENTAL}) >= 20


def test_midi_file_structure() -> None:
    track = devset.Track(40, [(0.0, 0.5, 60, 90), (0.5, 0.5, 62, 90)])
    drums = devset.Track(None, [(0.0, 0.25, 36, 100)])
    data = devset.midi_bytes([(0.0, [track, drums]), (5.0, [devset.Track(73, [(0.0, 1.0, 72, 80)])])])
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    assert bytes([0xC0, 40]) in data and bytes([0xC0, 73]) in data  # program per segment, channel 1
    assert bytes([0x99, 36, 100]) in data  # the kit on MIDI channel 10


def test_rendered_performances_are_music() -> None:
    _need_renderer()
    rng = np.random.default_rng(1)
    piece = _scale_piece()
    arrangements = [a for a in devset.INSTRUMENTAL if a.name in ("violin", "jazz_combo")]
    plans = [devset.plan(piece, arrangement, 4.0, rng) for arrangement in arrangements]
    clips = devset.perform(plans, rng)
    for clip, arrangement in zip(clips, arrangements, strict=True):
        assert len(clip) == pytest.approx(4.0 * devset.RATE, abs=devset.RATE // 2)
        assert devset.rms(clip) > 1e-3
        decision = is_music(devset.finish(clip, rng, snr_db=30, level_dbfs=-20))
        assert decision.is_music, (arrangement.name, decision.reason)


def test_corpus_pieces_load_as_voices() -> None:
    """A Bach chorale (four voices, soprano first) and a Han folk song (one melody) from music21's corpus."""
    pytest.importorskip("music21")
    chorale = devset.load_piece("bach/bwv66.6")
    assert chorale is not None and len(chorale.voices) == 4
    assert (chorale.tonic, chorale.minor, chorale.beats_per_bar) == (6, True, 4)  # F-sharp minor, 4/4
    lowest = [min(note[2] for note in voice) for voice in chorale.voices]
    assert lowest == sorted(lowest, reverse=True)
    song = devset.load_piece("essenFolksong/han1", 1)
    assert song is not None and len(song.voices) == 1 and song.length > 8
