"""Realistic development data for the music detector and tagger, rendered here: nothing is downloaded.

Real pieces from the ``music21`` corpus (Bach chorales, Monteverdi madrigals, Irish fiddle tunes of Ryan's
Mammoth Collection, Chinese (Han) and German folk songs of the Essen collection) are played on General MIDI
instruments and ensembles of Debian's ``fluid-soundfont-gm`` (FluidR3, sampled real instruments) by
``fluidsynth``, then placed in a room (synthetic impulse response), given background noise and a level,
and cut to 2-10 s clips. Vocal clips are built from the same renders: read speech of ``../shared/testdata``
(zh_dev, en_dev) mixed over the music at several speech-to-music ratios, and sung vowels (the soundfont's
sampled "Choir Aahs" / "Voice Oohs") carrying the melody over an instrumental accompaniment.

Two disjoint splits: ``fit`` and ``eval`` use different pieces, different random draws and different speech
clips; some instruments appear only in ``eval`` (``HELD_OUT_INSTRUMENTS``) so the figures show whether a
decision generalises to instruments it was never tuned on.

Needs ``apt-get install fluidsynth fluid-soundfont-gm`` and ``pip install music21`` (the ``music-eval``
extra). Rendered audio is kept out of git: ``python -m tingyin.music.devset OUT_DIR`` or the evaluation
script (``python -m tingyin.music.eval``) builds it into a cache folder.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import numpy as np

from tingyin.audio.midi import standard_midi_file

RATE = 16000
SOUNDFONT_CANDIDATES = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
)
TICKS_PER_QUARTER = 480
DRUM_CHANNEL = 9

Split = Literal["fit", "eval"]
Role = Literal["melody", "alto", "tenor", "bass", "chords", "all", "drums"]


@dataclass(frozen=True)
class Instrument:
    """A General MIDI program (0-127; ``None`` for the drum kit) and the pitch range it is played in."""

    name: str
    program: int | None
    low: int
    high: int
    family: str


# General MIDI programs, with the comfortable range of the real instrument (MIDI note numbers).
INSTRUMENTS: dict[str, Instrument] = {
    i.name: i
    for i in (
        Instrument("piano", 0, 28, 100, "keyboard"),
        Instrument("electric_piano", 4, 36, 96, "keyboard"),
        Instrument("harpsichord", 6, 36, 89, "keyboard"),
        Instrument("vibraphone", 11, 53, 89, "mallet"),
        Instrument("marimba", 12, 45, 96, "mallet"),
        Instrument("xylophone", 13, 65, 108, "mallet"),
        Instrument("rock_organ", 18, 36, 96, "organ"),
        Instrument("church_organ", 19, 24, 96, "organ"),
        Instrument("accordion", 21, 53, 89, "organ"),
        Instrument("harmonica", 22, 60, 96, "reed"),
        Instrument("nylon_guitar", 24, 40, 83, "guitar"),
        Instrument("steel_guitar", 25, 40, 83, "guitar"),
        Instrument("jazz_guitar", 26, 40, 84, "guitar"),
        Instrument("clean_guitar", 27, 40, 84, "guitar"),
        Instrument("overdriven_guitar", 29, 40, 84, "guitar"),
        Instrument("distortion_guitar", 30, 40, 84, "guitar"),
        Instrument("acoustic_bass", 32, 28, 55, "bass"),
        Instrument("electric_bass", 33, 28, 60, "bass"),
        Instrument("synth_bass", 38, 28, 60, "synth"),
        Instrument("violin", 40, 55, 100, "strings"),
        Instrument("viola", 41, 48, 88, "strings"),
        Instrument("cello", 42, 36, 76, "strings"),
        Instrument("contrabass", 43, 28, 60, "strings"),
        Instrument("pizzicato_strings", 45, 36, 84, "strings"),
        Instrument("harp", 46, 24, 100, "plucked"),
        Instrument("timpani", 47, 40, 57, "percussion"),
        Instrument("string_ensemble", 48, 36, 96, "strings"),
        Instrument("synth_strings", 50, 36, 96, "synth"),
        Instrument("choir_aahs", 52, 48, 79, "voice"),
        Instrument("voice_oohs", 53, 48, 79, "voice"),
        Instrument("trumpet", 56, 54, 84, "brass"),
        Instrument("trombone", 57, 40, 72, "brass"),
        Instrument("tuba", 58, 28, 58, "brass"),
        Instrument("french_horn", 60, 41, 77, "brass"),
        Instrument("brass_section", 61, 41, 84, "brass"),
        Instrument("soprano_sax", 64, 56, 88, "reed"),
        Instrument("alto_sax", 65, 49, 81, "reed"),
        Instrument("tenor_sax", 66, 44, 76, "reed"),
        Instrument("baritone_sax", 67, 36, 69, "reed"),
        Instrument("oboe", 68, 58, 91, "reed"),
        Instrument("english_horn", 69, 52, 81, "reed"),
        Instrument("bassoon", 70, 34, 72, "reed"),
        Instrument("clarinet", 71, 50, 91, "reed"),
        Instrument("piccolo", 72, 74, 108, "pipe"),
        Instrument("flute", 73, 60, 96, "pipe"),
        Instrument("recorder", 74, 60, 91, "pipe"),
        Instrument("pan_flute", 75, 60, 91, "pipe"),
        Instrument("shakuhachi", 77, 55, 84, "pipe"),
        Instrument("square_lead", 80, 48, 96, "synth"),
        Instrument("saw_lead", 81, 48, 96, "synth"),
        Instrument("warm_pad", 89, 36, 84, "synth"),
        Instrument("sitar", 104, 48, 84, "ethnic"),
        Instrument("banjo", 105, 48, 84, "plucked"),
        Instrument("shamisen", 106, 48, 84, "ethnic"),
        Instrument("koto", 107, 48, 88, "ethnic"),
        Instrument("kalimba", 108, 60, 91, "ethnic"),
        Instrument("fiddle", 110, 55, 96, "strings"),
        Instrument("steel_drums", 114, 55, 88, "percussion"),
        Instrument("drum_kit", None, 35, 81, "percussion"),
    )
}


@dataclass(frozen=True)
class Arrangement:
    """A solo instrument or an ensemble: which instrument plays which role of a piece."""

    name: str
    parts: tuple[tuple[str, Role], ...]
    vocal: bool = False  # sung (sampled voices) rather than instrumental

    @property
    def family(self) -> str:
        if len(self.parts) == 1:
            return INSTRUMENTS[self.parts[0][0]].family
        return "ensemble"


def _solo(name: str, role: Role = "melody") -> Arrangement:
    return Arrangement(name, ((name, role),))


def _ensemble(name: str, parts: str, *, vocal: bool = False) -> Arrangement:
    """An ensemble from ``"instrument:role instrument:role ..."``."""
    pairs = tuple(tuple(part.split(":")) for part in parts.split())
    return Arrangement(name, cast(tuple[tuple[str, Role], ...], pairs), vocal)


# Monophonic instruments play one line; keyboards, guitars and harps play every voice of the piece.
POLYPHONIC = (
    "piano", "electric_piano", "harpsichord", "church_organ", "rock_organ", "accordion", "nylon_guitar",
    "steel_guitar", "jazz_guitar", "harp", "string_ensemble", "synth_strings", "warm_pad", "marimba", "koto",
)  # fmt: skip
BASS_LINE = ("acoustic_bass", "electric_bass", "contrabass", "tuba", "timpani", "bassoon")
INSTRUMENTAL: tuple[Arrangement, ...] = (
    *(_solo(name, "all") for name in POLYPHONIC),
    *(
        _solo(name, "bass" if name in BASS_LINE else "melody")
        for name, instrument in INSTRUMENTS.items()
        if name not in POLYPHONIC and instrument.family not in ("voice",) and name != "drum_kit"
    ),
    _ensemble("string_quartet", "violin:melody violin:alto viola:tenor cello:bass"),
    _ensemble("brass_quartet", "trumpet:melody french_horn:alto trombone:tenor tuba:bass"),
    _ensemble("woodwind_quartet", "flute:melody oboe:alto clarinet:tenor bassoon:bass"),
    _ensemble("sax_quartet", "soprano_sax:melody alto_sax:alto tenor_sax:tenor baritone_sax:bass"),
    _ensemble("piano_trio", "violin:melody cello:bass piano:chords"),
    _ensemble("jazz_combo", "alto_sax:melody acoustic_bass:bass electric_piano:chords drum_kit:drums"),
    _ensemble(
        "rock_band", "distortion_guitar:melody electric_bass:bass overdriven_guitar:chords drum_kit:drums"
    ),
    _ensemble("pop_band", "saw_lead:melody synth_bass:bass electric_piano:chords drum_kit:drums"),
    _ensemble("folk_band", "fiddle:melody banjo:chords steel_guitar:chords acoustic_bass:bass"),
    _ensemble("east_asian_trio", "pan_flute:melody koto:chords shamisen:bass"),
    _ensemble(
        "orchestra", "flute:melody string_ensemble:chords french_horn:tenor contrabass:bass timpani:bass"
    ),
    _ensemble("organ_and_trumpet", "trumpet:melody church_organ:chords"),
    _ensemble("drums_and_bass", "drum_kit:drums electric_bass:bass"),
    _ensemble("guitar_duo", "nylon_guitar:melody steel_guitar:chords"),
)
SUNG: tuple[Arrangement, ...] = (
    _ensemble("choir", "choir_aahs:melody choir_aahs:alto choir_aahs:tenor choir_aahs:bass", vocal=True),
    _ensemble("voice_and_piano", "voice_oohs:melody piano:chords", vocal=True),
    _ensemble(
        "voice_and_band",
        "choir_aahs:melody electric_bass:bass clean_guitar:chords drum_kit:drums",
        vocal=True,
    ),
    _ensemble("voice_and_strings", "voice_oohs:melody string_ensemble:chords cello:bass", vocal=True),
)
# Never used in the fit split: the evaluation shows how the detector does on instruments it was not tuned on.
HELD_OUT_INSTRUMENTS = frozenset(
    {"vibraphone", "harmonica", "viola", "english_horn", "shakuhachi", "sitar", "kalimba", "steel_drums",
     "banjo", "synth_strings", "tuba", "orchestra", "sax_quartet", "east_asian_trio", "guitar_duo"}
)  # fmt: skip


# --------------------------------------------------------------------------------------------- pieces


@dataclass
class Piece:
    """A piece as voices of (start, duration, MIDI pitch) in quarter notes, soprano first, bass last."""

    name: str
    voices: list[list[tuple[float, float, int]]]
    beats_per_bar: int
    tonic: int  # pitch class of the key's tonic
    minor: bool

    @property
    def length(self) -> float:
        return max((s + d for voice in self.voices for s, d, _ in voice), default=0.0)


def _corpus_sources(split: Split) -> list[tuple[str, int | None]]:
    """(corpus path, tune number or None) of the pieces of ``split`` (even picks fit, odd picks eval), the
    collections interleaved so that the first few dozen already cover every style."""
    from music21 import corpus

    parity = 0 if split == "fit" else 1
    paths = sorted(str(p).split("/corpus/")[-1].rsplit(".", 1)[0] for p in corpus.getPaths())
    chorales = list(corpus.chorales.Iterator(numberingSystem="bwv", returnType="filename"))
    madrigals = [p for p in paths if p.startswith("monteverdi/madrigal.")]
    fiddle_tunes = [p for p in paths if p.startswith("ryansMammoth/")]
    groups: list[list[tuple[str, int | None]]] = [
        [(name, None) for name in chorales[parity:160:2]],
        [(name, None) for name in madrigals[parity::2]],
        [(name, None) for name in fiddle_tunes[parity:400:4]],
        # Chinese (Han) folk songs and German ballads of the Essen collection: collections of numbered tunes.
        [("essenFolksong/han1", n) for n in range(1 + parity, 121, 2)],
        [("essenFolksong/han2", n) for n in range(1 + parity, 61, 2)],
        [("essenFolksong/ballad10", n) for n in range(1 + parity, 41, 2)],
    ]
    longest = max(len(group) for group in groups)
    return [group[i] for i in range(longest) for group in groups if i < len(group)]


def load_piece(source: str, number: int | None = None) -> Piece | None:
    """Parse one corpus piece into voices; None when it has no notes or does not parse."""
    from music21 import corpus

    try:
        score = corpus.parse(source, number=number) if number is not None else corpus.parse(source)
        if hasattr(score, "scores"):  # an Opus: its first tune
            score = score.scores[0]
        score = score.stripTies()
        key = score.analyze("key")
    except Exception:
        return None
    parts = list(score.parts) or [score]
    voices: list[list[tuple[float, float, int]]] = []
    for part in parts:
        notes: list[tuple[float, float, int]] = []
        for element in part.flatten().notes:
            start, duration = float(element.offset), float(element.quarterLength)
            if duration <= 0:
                continue
            # A chord in one part (rare in these pieces) keeps its top note: each voice stays a line.
            pitch = max(p.midi for p in element.pitches)
            notes.append((start, duration, int(pitch)))
        if notes:
            voices.append(sorted(notes))
    if not voices:
        return None
    voices.sort(key=lambda v: -float(np.mean([n[2] for n in v])))
    time_signature = score.recurse().getElementsByClass("TimeSignature").first()
    beats = int(time_signature.numerator) if time_signature is not None else 4
    if beats not in (2, 3, 4, 6, 9, 12):
        beats = 4
    name = source.split("/")[-1] + (f"#{number}" if number is not None else "")
    return Piece(name, voices, beats, int(key.tonic.pitchClass), key.mode == "minor")


def pieces(split: Split, limit: int | None = None) -> Iterator[Piece]:
    count = 0
    for source, number in _corpus_sources(split):
        piece = load_piece(source, number)
        if piece is None or piece.length < 8:
            continue
        yield piece
        count += 1
        if limit is not None and count >= limit:
            return


# ----------------------------------------------------------------------------- arranging and MIDI


@dataclass
class Track:
    program: int | None  # None: the drum kit on channel 10
    notes: list[tuple[float, float, int, int]] = field(
        default_factory=list
    )  # start s, dur s, pitch, velocity


def _fit_range(
    line: list[tuple[float, float, int]], instrument: Instrument
) -> list[tuple[float, float, int]]:
    """Transpose a line by octaves so its median lies in the instrument's range; clamp outliers by octaves."""
    if not line:
        return line
    median = float(np.median([p for _, _, p in line]))
    centre = (instrument.low + instrument.high) / 2
    shift = 12 * round((centre - median) / 12)
    fitted = []
    for start, duration, pitch in line:
        moved = pitch + shift
        while moved < instrument.low:
            moved += 12
        while moved > instrument.high:
            moved -= 12
        fitted.append((start, duration, moved))
    return fitted


MAJOR_TRIADS = ((0, 4, 7), (5, 9, 0), (7, 11, 2), (9, 0, 4))  # I, IV, V, vi
MINOR_TRIADS = ((0, 3, 7), (5, 8, 0), (7, 11, 2), (3, 7, 10))  # i, iv, V, III


def harmonise(piece: Piece) -> list[list[tuple[float, float, int]]]:
    """Accompaniment for a melody: per bar the triad (I, IV, V, vi) holding most of its notes, as three chord
    lines (upper, middle, lower note) and a bass line, in the order alto, tenor, chord root, bass."""
    melody = piece.voices[0]
    triads = MINOR_TRIADS if piece.minor else MAJOR_TRIADS
    bar = float(piece.beats_per_bar if piece.beats_per_bar <= 4 else piece.beats_per_bar / 2)
    lines: list[list[tuple[float, float, int]]] = [[], [], [], []]
    for bar_start in np.arange(0.0, piece.length, bar):
        in_bar = [p % 12 for s, _, p in melody if bar_start <= s < bar_start + bar]
        if not in_bar:
            continue
        relative = [(pc - piece.tonic) % 12 for pc in in_bar]
        best = max(triads, key=lambda triad: sum(r in triad for r in relative))
        pitches = sorted(55 + (piece.tonic + interval - 55) % 12 for interval in best)  # close position
        for line, pitch in zip(lines[:3], reversed(pitches), strict=True):
            line.append((float(bar_start), bar, pitch))
        lines[3].append((float(bar_start), bar, 36 + (piece.tonic + best[0]) % 12))
    return lines


def _role_lines(piece: Piece, role: Role) -> list[list[tuple[float, float, int]]]:
    """The lines a role plays: soprano, alto, tenor, bass of a part song, or of a harmonised melody."""
    voices = piece.voices if len(piece.voices) > 1 else [piece.voices[0], *harmonise(piece)]
    if role == "all":
        return voices
    if role == "melody":
        return [voices[0]]
    if role == "bass":
        return [voices[-1]]
    if role == "alto":
        return [voices[min(1, len(voices) - 1)]]
    if role == "tenor":
        return [voices[min(2, len(voices) - 1)]]
    if role == "chords":
        return voices[1:-1] or voices
    return []


def drum_pattern(
    beats_per_bar: int, length_q: float, rng: np.random.Generator
) -> list[tuple[float, float, int]]:
    """A kit groove: kick and snare on alternating beats (waltz: kick then snares), hi-hat in eighths."""
    hat = 46 if rng.random() < 0.2 else 42
    pattern: list[tuple[float, float, int]] = [(0.0, 1.0, 49)]
    bar = float(beats_per_bar if beats_per_bar <= 4 else beats_per_bar / 2)
    for bar_start in np.arange(0.0, length_q, bar):
        for beat in range(int(bar)):
            at = float(bar_start + beat)
            if beats_per_bar == 3:
                pattern.append((at, 0.5, 36 if beat == 0 else 38))
            else:
                pattern.append((at, 0.5, 36 if beat % 2 == 0 else 38))
            pattern += [(at, 0.25, hat), (at + 0.5, 0.25, hat)]
    return pattern


def arrange(
    piece: Piece, arrangement: Arrangement, tempo_bpm: float, rng: np.random.Generator
) -> list[Track]:
    """The piece played by ``arrangement`` at ``tempo_bpm`` (quarter notes), humanised in time and
    velocity."""
    seconds_per_quarter = 60.0 / tempo_bpm
    tracks = []
    base_velocity = int(rng.integers(60, 110))
    articulation = float(rng.uniform(0.75, 1.0))
    for name, role in arrangement.parts:
        instrument = INSTRUMENTS[name]
        if role == "drums":
            lines = [drum_pattern(piece.beats_per_bar, piece.length, rng)]
        else:
            lines = [_fit_range(line, instrument) for line in _role_lines(piece, role)]
        track = Track(instrument.program)
        for line in lines:
            for start, duration, pitch in line:
                onset = max(0.0, start * seconds_per_quarter + float(rng.normal(0, 0.008)))
                length = max(0.05, duration * seconds_per_quarter * articulation)
                velocity = int(np.clip(base_velocity + rng.normal(0, 8), 30, 127))
                track.notes.append((onset, length, pitch, velocity))
        tracks.append(track)
    return tracks


def midi_bytes(segments: Sequence[tuple[float, Sequence[Track]]]) -> bytes:
    """A Standard MIDI File (format 0, 120 bpm: one quarter = 0.5 s) playing each ``(offset_s, tracks)``
    segment from its offset (times in seconds); each segment sets its own programs, so segments that do
    not overlap can reuse the channels."""
    ticks_per_second = TICKS_PER_QUARTER * 2
    events: list[tuple[int, int, bytes]] = []
    melodic_channels = [c for c in range(16) if c != DRUM_CHANNEL]
    for offset, tracks in segments:
        melodic = 0
        for track in tracks:
            if track.program is None:
                channel = DRUM_CHANNEL
            else:
                channel = melodic_channels[melodic % len(melodic_channels)]
                melodic += 1
                events.append((round(offset * ticks_per_second), 0, bytes([0xC0 | channel, track.program])))
            for start, duration, pitch, velocity in track.notes:
                on = round((offset + start) * ticks_per_second)
                off = round((offset + start + duration) * ticks_per_second)
                events.append((on, 2, bytes([0x90 | channel, pitch, velocity])))
                events.append((off, 1, bytes([0x80 | channel, pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    return standard_midi_file(
        ((tick, message) for tick, _order, message in events),
        ticks_per_quarter=TICKS_PER_QUARTER,
        microseconds_per_quarter=500_000,
    )


def soundfont() -> Path:
    for path in SOUNDFONT_CANDIDATES:
        if path.exists():
            return path
    raise FileNotFoundError("no General MIDI soundfont: apt-get install fluid-soundfont-gm")


RENDER_GAP_S = 3.0  # silence between performances rendered in one run: lets every note's release die out
RENDER_BATCH = 40  # performances per fluidsynth run (the soundfont loads once per run)


def render(performances: Sequence[Sequence[Track]]) -> list[np.ndarray]:
    """Each performance played by fluidsynth at 16 kHz, mono float32, with a tail for the notes' release.

    Performances are rendered back to back in a few long fluidsynth runs: loading the 140 MB soundfont is the
    slow part."""
    from tingyin.audio import decode

    if shutil.which("fluidsynth") is None:
        raise FileNotFoundError("fluidsynth is not installed: apt-get install fluidsynth")
    rendered: list[np.ndarray] = []
    for first in range(0, len(performances), RENDER_BATCH):
        batch = performances[first : first + RENDER_BATCH]
        segments: list[tuple[float, Sequence[Track]]] = []
        lengths = []
        offset = 0.5
        for tracks in batch:
            length = max((s + d for t in tracks for s, d, _, _ in t.notes), default=0.0) + 1.5
            segments.append((offset, tracks))
            lengths.append(length)
            offset += length + RENDER_GAP_S
        with tempfile.TemporaryDirectory(prefix="tingyin-render-") as tmp:
            midi = Path(tmp) / "batch.mid"
            wav = Path(tmp) / "batch.wav"
            midi.write_bytes(midi_bytes(segments))
            subprocess.run(
                [
                    "fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(RATE), "-T", "wav", "-F", str(wav),
                    "-o", "synth.reverb.active=0", "-o", "synth.chorus.active=0", str(soundfont()), str(midi),
                ],
                check=True,
                capture_output=True,
                timeout=1800,
            )  # fmt: skip
            audio = decode(wav).mono()
        for (start, _), length in zip(segments, lengths, strict=True):
            begin = int(start * RATE)
            rendered.append(audio[begin : begin + int(length * RATE)].copy())
    return rendered


# ------------------------------------------------------------------------------------- acoustics


def room(audio: np.ndarray, rt60_s: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic room response (exponentially decaying noise after a direct path)."""
    from scipy.signal import fftconvolve

    if rt60_s <= 0 or wet <= 0:
        return audio
    length = int(RATE * min(2.0, rt60_s * 1.2))
    t = np.arange(length) / RATE
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / rt60_s)
    tail[: int(0.005 * RATE)] = 0.0  # first reflections after 5 ms
    tail *= wet / (np.sqrt(np.sum(tail**2)) + 1e-9)
    response = tail
    response[0] += 1.0
    return fftconvolve(audio, response)[: len(audio)].astype(np.float32)


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power spectrum 1/f^exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[1:] /= freqs[1:] ** (exponent / 2)
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n)
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))) + 1e-12)


def finish(audio: np.ndarray, rng: np.random.Generator, *, snr_db: float, level_dbfs: float) -> np.ndarray:
    """Add background noise at ``snr_db`` and set the RMS level; never clips."""
    noise = coloured_noise(len(audio), float(rng.choice([0.0, 1.0, 2.0])), rng)
    mixed = audio + noise * rms(audio) * 10 ** (-snr_db / 20)
    mixed *= 10 ** (level_dbfs / 20) / rms(mixed)
    peak = float(np.abs(mixed).max())
    return (mixed / peak * 0.99 if peak > 0.99 else mixed).astype(np.float32)


def mix_voice(music: np.ndarray, voice: np.ndarray, voice_to_music_db: float) -> np.ndarray:
    """``voice`` over ``music`` (same length) at a voice-to-music RMS ratio."""
    gain = rms(music) / rms(voice) * 10 ** (voice_to_music_db / 20)
    return (music + gain * voice).astype(np.float32)


# ----------------------------------------------------------------------------------------- clips


@dataclass(frozen=True)
class RenderedClip:
    id: str
    kind: str  # "instrumental", "sung", "speech_over_music"
    arrangement: str
    family: str
    piece: str
    vocal: bool
    held_out: bool
    detail: str
    audio: np.ndarray


def _window(audio: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A ``seconds`` window starting at the first sound, moved forward by a random offset."""
    loud = np.flatnonzero(np.abs(audio) > 0.02 * (np.abs(audio).max() + 1e-9))
    first = int(loud[0]) if len(loud) else 0
    last = int(loud[-1]) if len(loud) else len(audio)
    length = int(seconds * RATE)
    room_left = max(0, last - first - length)
    start = first + int(rng.integers(0, room_left + 1))
    return audio[start : start + length]


@dataclass
class Performance:
    """A planned clip: what plays (``tracks``), for how long, and the acoustics applied after rendering."""

    tracks: list[Track]
    seconds: float
    rt60_s: float
    wet: float
    detail: str


def plan(piece: Piece, arrangement: Arrangement, seconds: float, rng: np.random.Generator) -> Performance:
    """``seconds`` of ``piece`` by ``arrangement``: a random tempo, a random starting bar, a random room."""
    tempo = float(rng.uniform(60, 150))
    # Play long enough: repeat the piece if it is short at this tempo.
    needed_q = (seconds + 1.0) * tempo / 60.0
    if piece.length < needed_q:
        repeats = int(np.ceil(needed_q / piece.length))
        piece = Piece(
            piece.name,
            [[(s + k * piece.length, d, p) for k in range(repeats) for s, d, p in v] for v in piece.voices],
            piece.beats_per_bar,
            piece.tonic,
            piece.minor,
        )
    bar = float(piece.beats_per_bar)
    latest = max(0.0, piece.length - needed_q)
    offset = bar * int(rng.integers(0, int(latest // bar) + 1))
    voices = [[(s - offset, d, p) for s, d, p in v if offset <= s < offset + needed_q] for v in piece.voices]
    # Keep every voice (even one resting here): the roles of an arrangement are read by voice position.
    trimmed = Piece(
        piece.name, voices if voices[0] else piece.voices, piece.beats_per_bar, piece.tonic, piece.minor
    )
    rt60 = float(rng.choice([0.0, rng.uniform(0.2, 0.6), rng.uniform(0.6, 1.4)]))
    return Performance(
        arrange(trimmed, arrangement, tempo, rng),
        seconds,
        rt60,
        float(rng.uniform(0.2, 1.0)),
        f"tempo {tempo:.0f} bpm, rt60 {rt60:.2f} s",
    )


def perform(performances: Sequence[Performance], rng: np.random.Generator) -> list[np.ndarray]:
    """Render the planned performances, put each in its room and cut its window."""
    rendered = render([p.tracks for p in performances])
    return [
        _window(room(audio, p.rt60_s, p.wet, rng), p.seconds, rng)
        for audio, p in zip(rendered, performances, strict=True)
    ]


def speech_clips(split: Split, testdata: Path) -> list[tuple[str, np.ndarray]]:
    """Read speech for the vocal mixes: zh_dev speaker S0150 and the first half of en_dev fit, the rest
    eval."""
    from tingyin.audio import decode

    clips = []
    for set_name in ("zh_dev", "en_dev"):
        manifest = testdata / set_name / "manifest.csv"
        if not manifest.exists():
            continue
        with manifest.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        for index, row in enumerate(rows):
            first_half = ("S0150" in row["id"]) if set_name == "zh_dev" else index < len(rows) // 2
            if first_half == (split == "fit") and float(row["duration_s"]) >= 3.0:
                clips.append((f"{set_name}:{row['id']}", testdata / set_name / row["path"]))
    return [(name, decode(path).mono()) for name, path in clips]


def build(
    split: Split,
    *,
    per_arrangement: int,
    sung: int,
    speech_mixes: int,
    testdata: Path | None,
    seed: int = 0,
    max_pieces: int = 80,
) -> list[RenderedClip]:
    """The rendered clips of ``split``: ``per_arrangement`` clips of every instrumental arrangement (held-out
    instruments only in eval), ``sung`` sung clips and ``speech_mixes`` speech-over-music mixes."""
    rng = np.random.default_rng(seed + (0 if split == "fit" else 1000))
    all_pieces = list(pieces(split, max_pieces))
    if not all_pieces:
        raise RuntimeError("no music21 corpus pieces could be read")
    arrangements = [a for a in INSTRUMENTAL if split == "eval" or a.name not in HELD_OUT_INSTRUMENTS]

    def next_piece() -> Piece:
        return all_pieces[int(rng.integers(0, len(all_pieces)))]

    # (kind, arrangement, piece name, vocal, performance, voice (name, audio, voice-to-music dB) or None)
    planned: list[tuple[str, Arrangement, str, Performance, tuple[str, np.ndarray, float] | None]] = []
    for arrangement in arrangements:
        for _ in range(per_arrangement):
            piece = next_piece()
            planned.append(
                (
                    "instrumental",
                    arrangement,
                    piece.name,
                    plan(piece, arrangement, float(rng.uniform(2, 10)), rng),
                    None,
                )
            )
    for index in range(sung):
        arrangement = SUNG[index % len(SUNG)]
        piece = next_piece()
        planned.append(
            ("sung", arrangement, piece.name, plan(piece, arrangement, float(rng.uniform(2, 10)), rng), None)
        )
    voices = speech_clips(split, testdata) if testdata is not None else []
    order = rng.permutation(len(voices))
    backing = [a for a in arrangements if a.parts[0][1] != "bass"]
    for index in range(min(speech_mixes, len(voices))):
        voice_name, voice = voices[int(order[index])]
        arrangement = backing[int(rng.integers(0, len(backing)))]
        seconds = min(10.0, len(voice) / RATE)
        ratio = (-6.0, 0.0, 6.0)[index % 3]
        planned.append(
            (
                "speech_over_music",
                arrangement,
                voice_name,
                plan(next_piece(), arrangement, seconds, rng),
                (voice_name, voice, ratio),
            )
        )

    clips = []
    for index, ((kind, arrangement, piece_name, performance, voice_mix), audio) in enumerate(
        zip(planned, perform([p[3] for p in planned], rng), strict=True)
    ):
        detail = performance.detail
        if voice_mix is not None:
            _name, voice, ratio = voice_mix
            length = min(len(audio), len(voice))
            audio = mix_voice(audio[:length], voice[:length], ratio)
            detail += f", voice {ratio:+.0f} dB"
        snr, level = float(rng.uniform(10, 45)), float(rng.uniform(-32, -12))
        suffix = f"speech-over-{arrangement.name}" if kind == "speech_over_music" else arrangement.name
        clips.append(
            RenderedClip(
                f"{split}-{index + 1:04d}-{suffix}",
                kind,
                arrangement.name,
                "voice" if kind == "sung" else arrangement.family,
                piece_name,
                kind != "instrumental",
                arrangement.name in HELD_OUT_INSTRUMENTS,
                f"{detail}, snr {snr:.0f} dB, {level:.0f} dBFS",
                finish(audio, rng, snr_db=snr, level_dbfs=level),
            )
        )
    return clips


MANIFEST_FIELDS = ("id", "path", "kind", "arrangement", "family", "piece", "vocal", "held_out", "detail")


def write(clips: Sequence[RenderedClip], out_dir: Path) -> Path:
    """Write the clips as 16 kHz 16-bit WAV under ``out_dir`` with ``manifest.csv``; returns the manifest."""
    import soundfile

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "audio").mkdir(exist_ok=True)
    manifest = out_dir / "manifest.csv"
    partial = out_dir / "manifest.csv.partial"
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        for clip in clips:
            path = Path("audio") / f"{clip.id}.wav"
            soundfile.write(out_dir / path, clip.audio, RATE, subtype="PCM_16")
            writer.writerow(
                {
                    "id": clip.id,
                    "path": str(path),
                    "kind": clip.kind,
                    "arrangement": clip.arrangement,
                    "family": clip.family,
                    "piece": clip.piece,
                    "vocal": int(clip.vocal),
                    "held_out": int(clip.held_out),
                    "detail": clip.detail,
                }
            )
            handle.flush()
    partial.replace(manifest)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Render the music development set (see the module docstring)."
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--split", choices=("fit", "eval"), default="eval")
    parser.add_argument("--per-arrangement", type=int, default=6)
    parser.add_argument("--sung", type=int, default=40)
    parser.add_argument("--speech-mixes", type=int, default=90)
    parser.add_argument("--testdata", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-pieces", type=int, default=80)
    args = parser.parse_args()
    clips = build(
        args.split,
        per_arrangement=args.per_arrangement,
        sung=args.sung,
        speech_mixes=args.speech_mixes,
        testdata=args.testdata,
        seed=args.seed,
        max_pieces=args.max_pieces,
    )
    print(write(clips, args.out_dir / args.split))


if __name__ == "__main__":
    main()
