"""Standard MIDI Files for the synthetic dev sets (sound tasks, music tagging), which fluidsynth renders."""

from __future__ import annotations

import struct
from collections.abc import Iterable


def _variable_length(value: int) -> bytes:
    """``value`` as a MIDI variable-length quantity: 7 bits a byte, most significant first."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def standard_midi_file(
    events: Iterable[tuple[int, bytes]], *, ticks_per_quarter: int, microseconds_per_quarter: int
) -> bytes:
    """A one-track (format 0) file: the tempo, then ``events`` — (tick, raw message) in playing order —
    each written after the ticks since the one before, then the end of the track."""
    track = bytearray(_variable_length(0) + b"\xff\x51\x03" + microseconds_per_quarter.to_bytes(3, "big"))
    now = 0
    for tick, message in events:
        track += _variable_length(tick - now) + message
        now = tick
    track += _variable_length(0) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, ticks_per_quarter)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)
