"""The Standard MIDI File writer both synthetic dev sets (sound tasks, music tagging) render from."""

from __future__ import annotations

import struct

from tingyin.audio.midi import standard_midi_file


def test_delta_times_are_variable_length_quantities() -> None:
    # Deltas 0, 127, 128, 500 and 16384 ticks: 1, 1, 2, 2 and 3 bytes, most significant first.
    events = [(0, b"\x90\x3c\x64"), (127, b"\x80\x3c\x00"), (255, b"\x90\x3e\x64"), (755, b"\x80\x3e\x00")]
    events.append((755 + 16384, b"\xc0\x28"))
    data = standard_midi_file(events, ticks_per_quarter=480, microseconds_per_quarter=500_000)
    track = data[22:]
    assert track == (
        b"\x00\xff\x51\x03\x07\xa1\x20"  # tempo 500000 µs per quarter at tick 0
        b"\x00\x90\x3c\x64"
        b"\x7f\x80\x3c\x00"
        b"\x81\x00\x90\x3e\x64"
        b"\x83\x74\x80\x3e\x00"
        b"\x81\x80\x00\xc0\x28"
        b"\x00\xff\x2f\x00"  # end of track
    )


def test_header_names_format_zero_one_track_and_the_division() -> None:
    data = standard_midi_file([], ticks_per_quarter=1000, microseconds_per_quarter=1_000_000)
    assert data[:4] == b"MThd" and struct.unpack(">IHHH", data[4:14]) == (6, 0, 1, 1000)
    assert data[14:18] == b"MTrk" and struct.unpack(">I", data[18:22])[0] == len(data) - 22
    assert data[22:] == b"\x00\xff\x51\x03\x0f\x42\x40\x00\xff\x2f\x00"
