"""Dev tasks unlike ESC-10 for the sound classifier, generated from what this machine can reach.

Nothing generated is kept in git: ``build_tasks`` writes FLAC clips and one ``manifest.csv`` per task
(columns ``path, label, split, group``) under a directory of your choice, deterministically from a seed.
``split`` is ``train`` (the pool training clips are drawn from) or ``test``; ``group`` names what must
not be shared between the two (a voice, a melody, a recording), and the test side never shares one.

Tasks (classes, how the test side differs from the training side):

- ``words``: 10 spoken command words (Speech-Commands style) by ``espeak-ng`` voices, accents x voice
  variants with random pitch and speed; test voices (variants) are never heard in training.
- ``instruments``: 10 General MIDI instruments rendered with ``fluidsynth`` and FluidR3_GM; random
  melodies, tempos and dynamics. The test side is another recording situation: new melodies in the upper
  part of each instrument's range (training: the lower part, overlapping by a fourth), a large reverberant
  room with chorus (training: a small dry one) and more background noise.
- ``speakers``: 9 voices from the dev speech sets. ``en_dev`` has one speaker and ``zh_dev`` two, so each
  real speaker also appears pitch-shifted by -2.5 and +2.5 semitones (tempo kept; pitch and formants
  move, as a shorter or longer vocal tract would), the pseudo-speaker trick of speaker-recognition
  augmentation. Clips are 3 s crops; test utterances are never heard in training.
- ``music_speech_noise``: rendered multi-instrument music, speech (dev sets and espeak-ng), noise (ESC-10's
  non-vocal classes and synthetic coloured noise); test material is disjoint.
- ``esc10_few``: ESC-10 itself, fold 5 held out, training clips drawn from folds 1-4 (at most 32 per
  class exist there, so "50 per class" means all 32).

Debian packages: ``espeak-ng``, ``fluidsynth``, ``fluid-soundfont-gm`` (installed by ``.ci/services.sh``).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tingyin.audio import decode
from tingyin.audio.midi import standard_midi_file
from tingyin.errors import InvalidRequest

SAMPLE_RATE = 16000
TASKS = ("words", "instruments", "speakers", "music_speech_noise", "esc10_few")
TRAIN_POOL = 50  # training clips generated per class (the largest training size evaluated)
TEST_PER_CLASS = 20
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
FLUIDSYNTH = ("fluidsynth", "-ni", "-q", "-g", "0.6")  # no shell, no MIDI input, quiet, gain

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
ESPEAK_ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-029", "en-us-nyc")
# General MIDI programs (0-based) of the instrument task.
INSTRUMENTS = {
    "piano": 0,
    "marimba": 12,
    "organ": 19,
    "guitar": 24,
    "violin": 40,
    "cello": 42,
    "trumpet": 56,
    "alto_sax": 65,
    "clarinet": 71,
    "flute": 73,
}
# Comfortable MIDI note ranges of those instruments.
RANGES = {
    "piano": (48, 84),
    "marimba": (53, 84),
    "organ": (48, 79),
    "guitar": (45, 76),
    "violin": (55, 88),
    "cello": (36, 67),
    "trumpet": (55, 79),
    "alto_sax": (49, 77),
    "clarinet": (50, 82),
    "flute": (60, 93),
}
NOISE_CLASSES = ("rain", "sea_waves", "helicopter", "chainsaw", "crackling_fire", "clock_tick")


@dataclass(frozen=True)
class TaskClip:
    path: str  # relative to the task's folder
    label: str
    split: str  # "train" or "test"
    group: str


def _write_flac(path: Path, audio: np.ndarray) -> None:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0.99:
        audio = audio * (0.99 / peak)
    soundfile.write(str(path), np.asarray(audio, dtype=np.float32), SAMPLE_RATE, format="FLAC")


def _fit(audio: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """``audio`` placed at a random offset in (or cropped at random to) exactly ``seconds``."""
    size = int(seconds * SAMPLE_RATE)
    if audio.shape[0] >= size:
        start = int(rng.integers(0, audio.shape[0] - size + 1))
        return audio[start : start + size].astype(np.float32)
    out = np.zeros(size, dtype=np.float32)
    start = int(rng.integers(0, size - audio.shape[0] + 1))
    out[start : start + audio.shape[0]] = audio
    return out


def _with_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(audio), dtype=np.float64))) or 1e-3
    noise = np.asarray(rng.standard_normal(audio.shape[0]), dtype=np.float32)
    return np.asarray(audio + noise * (rms / 10 ** (snr_db / 20)), dtype=np.float32)


def _require(program: str) -> None:
    if shutil.which(program) is None:
        raise InvalidRequest(f"{program} is not installed (Debian package: see tingyin/eval/sound_tasks.py)")


# ---------------------------------------------------------------- espeak-ng


def espeak_variants() -> list[str]:
    """espeak-ng's voice variants (``+name``), sorted."""
    _require("espeak-ng")
    listing = subprocess.run(
        ["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[1:]
    return sorted({line.split()[-1].split("/")[-1] for line in listing if line.strip()})


def speak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """``text`` spoken by espeak-ng ``voice`` at ``speed`` words/min and ``pitch`` (0-99), 16 kHz."""
    _require("espeak-ng")
    with tempfile.NamedTemporaryFile(suffix=".wav") as handle:
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", handle.name, text],
            check=True,
            capture_output=True,
        )
        return decode(Path(handle.name)).samples


def _words_task(root: Path, rng: np.random.Generator) -> list[TaskClip]:
    variants = espeak_variants()
    order = rng.permutation(len(variants))
    test_variants = {variants[i] for i in order[: len(variants) // 3]}
    clips = []
    for label in WORDS:
        for split, count in (("train", TRAIN_POOL), ("test", TEST_PER_CLASS)):
            pool = sorted(v for v in variants if (v in test_variants) == (split == "test"))
            for index in range(count):
                variant = pool[int(rng.integers(len(pool)))]
                accent = ESPEAK_ACCENTS[int(rng.integers(len(ESPEAK_ACCENTS)))]
                speed, pitch = int(rng.integers(120, 220)), int(rng.integers(20, 80))
                audio = speak(label, f"{accent}+{variant}", speed, pitch)
                audio = _with_noise(_fit(audio, 1.5, rng), float(rng.uniform(15, 35)), rng)
                name = f"{split}/{label}/{index:03d}.flac"
                _write_flac(root / name, audio)
                clips.append(TaskClip(name, label, split, f"{accent}+{variant}"))
    return clips


# ---------------------------------------------------------------- fluidsynth


def midi_file(events: Sequence[tuple[float, bytes]], ticks_per_second: int = 1000) -> bytes:
    """A one-track Standard MIDI File of (time in seconds, raw channel message) events."""
    ordered = sorted(events, key=lambda item: item[0])
    # One quarter note a second: a tick is then 1 / ticks_per_second s.
    return standard_midi_file(
        ((round(when * ticks_per_second), message) for when, message in ordered),
        ticks_per_quarter=ticks_per_second,
        microseconds_per_quarter=1_000_000,
    )


SMALL_ROOM = (
    "-o",
    "synth.reverb.room-size=0.1",
    "-o",
    "synth.reverb.level=0.2",
    "-o",
    "synth.chorus.active=0",
)
LARGE_ROOM = (
    "-o",
    "synth.reverb.room-size=0.9",
    "-o",
    "synth.reverb.level=0.8",
    "-o",
    "synth.chorus.active=1",
)


def render_midi(midi: bytes, settings: Sequence[str] = ()) -> np.ndarray:
    """``midi`` rendered by fluidsynth with FluidR3_GM (extra ``-o`` settings), 16 kHz mono float32."""
    _require("fluidsynth")
    if not SOUNDFONT.exists():
        raise InvalidRequest(f"{SOUNDFONT} is missing (Debian package fluid-soundfont-gm)")
    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch) / "in.mid", Path(scratch) / "out.wav"
        source.write_bytes(midi)
        subprocess.run(
            [*FLUIDSYNTH, *settings, "-r", str(SAMPLE_RATE), "-F", str(target), str(SOUNDFONT), str(source)],
            check=True,
            capture_output=True,
        )
        return decode(target).samples


def _melody(
    rng: np.random.Generator, channel: int, program: int, low: int, high: int, start: float, seconds: float
) -> list[tuple[float, bytes]]:
    events = [(start, bytes([0xC0 | channel, program]))]
    now = start
    note = int(rng.integers(low, high + 1))
    beat = float(rng.uniform(0.15, 0.5))
    while now < start + seconds - 0.1:
        note = int(np.clip(note + rng.integers(-5, 6), low, high))
        length = beat * float(rng.choice([0.5, 1, 1, 2]))
        velocity = int(rng.integers(50, 120))
        events.append((now, bytes([0x90 | channel, note, velocity])))
        events.append((min(now + length * 0.9, start + seconds), bytes([0x80 | channel, note, 0])))
        now += length
    return events


def _render_batch(
    pieces: list[list[tuple[float, bytes]]], slot: float, keep: float, settings: Sequence[str] = ()
) -> list[np.ndarray]:
    """Render pieces laid one after another every ``slot`` seconds in one fluidsynth run, cut apart."""
    events = []
    for index, piece in enumerate(pieces):
        events += [(index * slot + when, message) for when, message in piece]
    audio = render_midi(midi_file(events), settings)
    size, keep_size = int(slot * SAMPLE_RATE), int(keep * SAMPLE_RATE)
    audio = np.pad(audio, (0, max(0, len(pieces) * size - audio.shape[0])))
    return [audio[i * size : i * size + keep_size] for i in range(len(pieces))]


def _instruments_task(root: Path, rng: np.random.Generator) -> list[TaskClip]:
    clips = []
    for label, program in INSTRUMENTS.items():
        low, high = RANGES[label]
        middle = (low + high) // 2
        for split, count, (bottom, top), room, snr in (
            ("train", TRAIN_POOL, (low, middle + 2), SMALL_ROOM, (30.0, 45.0)),
            ("test", TEST_PER_CLASS, (middle - 2, high), LARGE_ROOM, (15.0, 30.0)),
        ):
            pieces = [_melody(rng, 0, program, bottom, top, 0.0, 3.0) for _ in range(count)]
            for index, audio in enumerate(_render_batch(pieces, 5.0, 3.5, room)):
                name = f"{split}/{label}/{index:03d}.flac"
                _write_flac(root / name, _with_noise(audio, float(rng.uniform(*snr)), rng))
                clips.append(TaskClip(name, label, split, f"{label}-{split}-{index}"))
    return clips


# ---------------------------------------------------------------- dev speech, ESC-10


def _manifest_rows(testdata: Path, name: str) -> list[dict[str, str]]:
    manifest = testdata / name / "manifest.csv"
    if not manifest.exists():
        raise InvalidRequest(f"{manifest} is missing")
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["file"] = str(testdata / name / row["path"])
    return rows


def _speaker_of(row: dict[str, str]) -> str:
    for speaker in ("S0150", "S0252"):
        if speaker in row["path"] or speaker in row.get("id", ""):
            return speaker
    return "LJ"


def _speakers_task(root: Path, rng: np.random.Generator, testdata: Path) -> list[TaskClip]:
    import librosa

    rows = _manifest_rows(testdata, "zh_dev") + _manifest_rows(testdata, "en_dev")
    by_speaker: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_speaker.setdefault(_speaker_of(row), []).append(row)
    clips = []
    for speaker, utterances in sorted(by_speaker.items()):
        order = rng.permutation(len(utterances))
        test_rows = [utterances[i] for i in order[: len(order) // 3]]
        train_rows = [utterances[i] for i in order[len(order) // 3 :]]
        for shift, suffix in ((0.0, ""), (-2.5, "_low"), (2.5, "_high")):
            label = speaker + suffix
            sides = (("train", train_rows, TRAIN_POOL), ("test", test_rows, TEST_PER_CLASS))
            for split, pool, count in sides:
                for index in range(count):
                    row = pool[index % len(pool)]
                    audio = _fit(decode(Path(row["file"])).samples, 3.0, rng)
                    if shift:
                        audio = librosa.effects.pitch_shift(audio, sr=SAMPLE_RATE, n_steps=shift)
                    name = f"{split}/{label}/{index:03d}.flac"
                    _write_flac(root / name, audio)
                    clips.append(TaskClip(name, label, split, row["path"]))
    return clips


def _coloured_noise(seconds: float, rng: np.random.Generator) -> np.ndarray:
    size = int(seconds * SAMPLE_RATE)
    spectrum = np.fft.rfft(rng.standard_normal(size))
    slope = float(rng.uniform(0.0, 2.0))  # 0 white, 1 pink, 2 brown
    frequencies = np.maximum(np.fft.rfftfreq(size, 1 / SAMPLE_RATE), 20.0)
    audio = np.asarray(np.fft.irfft(spectrum / frequencies ** (slope / 2), size))
    return np.asarray(0.1 * audio / (np.std(audio) + 1e-9), dtype=np.float32)


def _music_speech_noise_task(root: Path, rng: np.random.Generator, testdata: Path) -> list[TaskClip]:
    clips: list[TaskClip] = []

    def add(split: str, label: str, index: int, audio: np.ndarray, group: str) -> None:
        name = f"{split}/{label}/{index:03d}.flac"
        _write_flac(root / name, audio)
        clips.append(TaskClip(name, label, split, group))

    plan = [("train", i) for i in range(TRAIN_POOL)] + [("test", i) for i in range(TEST_PER_CLASS)]
    # Music: two or three instruments at once, drums half the time.
    pieces = []
    for _ in plan:
        piece: list[tuple[float, bytes]] = []
        for channel in range(int(rng.integers(2, 4))):
            program = int(rng.integers(0, 96))
            piece += _melody(rng, channel, program, 40 + 12 * channel, 64 + 12 * channel, 0.0, 3.0)
        if rng.random() < 0.5:
            now = 0.0
            while now < 3.0:
                drum = int(rng.choice([35, 38, 42, 46]))
                piece += [(now, bytes([0x99, drum, 100])), (now + 0.1, bytes([0x89, drum, 0]))]
                now += 0.25
        pieces.append(piece)
    for (split, index), audio in zip(plan, _render_batch(pieces, 5.0, 3.0), strict=True):
        add(split, "music", index, audio, f"music-{split}-{index}")
    # Speech: half real (dev sets), half espeak-ng; test utterances and voices are disjoint.
    rows = _manifest_rows(testdata, "zh_dev") + _manifest_rows(testdata, "en_dev")
    order = rng.permutation(len(rows))
    test_rows, train_rows = order[: len(rows) // 3], order[len(rows) // 3 :]
    sentences = [row.get("text", "") for row in rows if row.get("text")]
    variants = espeak_variants()
    for split, index in plan:
        if index % 2 == 0:
            pool = test_rows if split == "test" else train_rows
            row = rows[int(pool[int(rng.integers(len(pool)))])]
            audio = _fit(decode(Path(row["file"])).samples, 3.0, rng)
            group = row["path"]
        else:
            text = sentences[int(rng.integers(len(sentences)))]
            half = variants[: len(variants) // 2] if split == "train" else variants[len(variants) // 2 :]
            voice = (
                ("cmn" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "en")
                + "+"
                + half[int(rng.integers(len(half)))]
            )
            audio = _fit(speak(text, voice, int(rng.integers(140, 200)), int(rng.integers(20, 80))), 3.0, rng)
            group = voice
        add(split, "speech", index, audio, group)
    # Noise: ESC-10's non-vocal sounds (folds 1-4 for training, 5 for test) or synthetic coloured noise.
    esc = [row for row in _manifest_rows(testdata, "esc10") if row["label"] in NOISE_CLASSES]
    for split, index in plan:
        if index % 2 == 0:
            pool_rows = [row for row in esc if (row["fold"] == "5") == (split == "test")]
            row = pool_rows[int(rng.integers(len(pool_rows)))]
            audio = _fit(decode(Path(row["file"])).samples, 3.0, rng)
            group = row["path"]
        else:
            audio, group = _coloured_noise(3.0, rng), f"noise-{split}-{index}"
        add(split, "noise", index, audio, group)
    return clips


def _esc10_task(root: Path, testdata: Path) -> list[TaskClip]:
    clips = []
    for row in _manifest_rows(testdata, "esc10"):
        split = "test" if row["fold"] == "5" else "train"
        name = f"{split}/{row['label']}/{Path(row['path']).name}"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(row["file"], root / name)
        clips.append(TaskClip(name, row["label"], split, row["path"]))
    return clips


def build_tasks(
    destination: Path,
    testdata: Path,
    *,
    tasks: Sequence[str] = TASKS,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
) -> dict[str, Path]:
    """Generate the dev tasks under ``destination/<task>/`` (skipping those already complete); returns
    each task's manifest path."""
    unknown = [task for task in tasks if task not in TASKS]
    if unknown:
        raise InvalidRequest(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    manifests = {}
    for task in tasks:
        root = destination / task
        manifest = root / "manifest.csv"
        manifests[task] = manifest
        if manifest.exists():
            continue
        rng = np.random.default_rng([seed, TASKS.index(task), 17])
        if log:
            log(f"generating {task} ...")
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        if task == "words":
            clips = _words_task(root, rng)
        elif task == "instruments":
            clips = _instruments_task(root, rng)
        elif task == "speakers":
            clips = _speakers_task(root, rng, testdata)
        elif task == "music_speech_noise":
            clips = _music_speech_noise_task(root, rng, testdata)
        else:
            clips = _esc10_task(root, testdata)
        partial = manifest.with_suffix(".partial")
        with partial.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label", "split", "group"])
            writer.writerows([clip.path, clip.label, clip.split, clip.group] for clip in clips)
        partial.replace(manifest)
    return manifests


def read_task(manifest: Path) -> list[TaskClip]:
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [TaskClip(row["path"], row["label"], row["split"], row["group"]) for row in rows]


# ---------------------------------------------------------------- evaluation


@dataclass
class TaskRun:
    task: str
    per_class: int  # training clips per class asked for (fewer where the pool has fewer)
    train_clips: int
    test_clips: int
    accuracy: float
    train_seconds: float
    features: str
    augmented: int
    variant_kinds: str = ""  # the kinds of audio variant training kept, e.g. "mix+speed"


@dataclass
class OpenSetRun:
    task: str
    known_classes: int
    auroc: float  # familiarity ranks known test clips above clips of unseen classes
    false_unknown: float  # known test clips answered unknown at the default threshold
    caught_unknown: float  # clips of unseen classes answered unknown at the default threshold


def _auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    values = np.concatenate([positive, negative])
    ranks = np.argsort(np.argsort(values, kind="stable"), kind="stable") + 1.0
    # Ties share their mean rank.
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    wins = ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2
    return float(wins / (len(positive) * len(negative)))


def _score(classifier: Any, clips: list[Any], cache: Any) -> tuple[np.ndarray, np.ndarray]:
    """Scores and familiarity of ``clips`` (``LabeledClip``) under a ``TrainedClassifier``."""
    from tingyin.sound.embeddings import embed_clips

    embeddings = embed_clips(clips, embedder=classifier.embedder(), cache=cache)
    scores, familiarity = classifier.predict_embeddings(embeddings)
    return scores, familiarity if familiarity is not None else np.ones(len(clips))


def evaluate_tasks(
    manifests: dict[str, Path],
    *,
    sizes: Sequence[int] = (10, 20, 50),
    seed: int = 0,
    open_set: bool = True,
    log: Callable[[str], None] | None = print,
) -> tuple[list[TaskRun], list[OpenSetRun]]:
    """Train through ``train_classifier`` (feature selection, budget, augmentation as the platform does)
    on ``n`` clips per class of each task's training pool and score its test side. Every run starts from
    an empty embedding cache, so train times include embedding. With ``open_set``, a model trained on the
    first half of the classes (20 clips each) scores the test clips of all classes: known ones should be
    familiar, the others not."""
    from tingyin.sound.embeddings import EmbeddingCache
    from tingyin.sound.training import LabeledClip, train_classifier

    runs: list[TaskRun] = []
    open_runs: list[OpenSetRun] = []
    for task, manifest in manifests.items():
        root = manifest.parent
        clips = read_task(manifest)
        classes = sorted({clip.label for clip in clips})
        labeled = {clip.path: LabeledClip.from_path(root / clip.path, clip.label) for clip in clips}
        test = [clip for clip in clips if clip.split == "test"]
        with tempfile.TemporaryDirectory(prefix="tingyin-tasks-") as scratch:
            test_cache = EmbeddingCache(Path(scratch) / "test")

            for size in sizes:
                rng = np.random.default_rng([seed, size])
                train = []
                for label in classes:
                    pool = [clip for clip in clips if clip.split == "train" and clip.label == label]
                    picked = rng.permutation(len(pool))[:size]
                    train += [labeled[pool[i].path] for i in sorted(picked)]
                started = time.perf_counter()
                result = train_classifier(train, seed=seed, cache_dir=Path(scratch) / f"train{size}")
                elapsed = time.perf_counter() - started
                scores, _ = _score(result.classifier, [labeled[row.path] for row in test], test_cache)
                predicted = [result.classifier.classes[i] for i in scores.argmax(axis=1)]
                accuracy = float(np.mean([p == row.label for p, row in zip(predicted, test, strict=True)]))
                run = TaskRun(
                    task,
                    size,
                    len(train),
                    len(test),
                    round(accuracy, 4),
                    round(elapsed, 1),
                    result.classifier.features.key,
                    result.augmented_count,
                    "+".join(result.report.details.get("variants") or []),
                )
                runs.append(run)
                if log:
                    log(
                        f"{task} n={size}: accuracy {accuracy:.2%} on {len(test)} test clips, "
                        f"trained in {elapsed:.1f} s ({run.features}, {run.augmented} variants: "
                        f"{run.variant_kinds or 'none'})"
                    )
            if open_set and len(classes) >= 4:
                known = classes[: len(classes) // 2]
                rng = np.random.default_rng([seed, 99])
                train = []
                for label in known:
                    pool = [clip for clip in clips if clip.split == "train" and clip.label == label]
                    train += [labeled[pool[i].path] for i in sorted(rng.permutation(len(pool))[:20])]
                result = train_classifier(train, seed=seed, cache_dir=Path(scratch) / "open")
                _, familiarity = _score(result.classifier, [labeled[row.path] for row in test], test_cache)
                is_known = np.array([row.label in known for row in test])
                threshold = result.classifier.resolve_threshold("auto") or 0.0
                open_run = OpenSetRun(
                    task,
                    len(known),
                    round(_auroc(familiarity[is_known], familiarity[~is_known]), 4),
                    round(float(np.mean(familiarity[is_known] < threshold)), 4),
                    round(float(np.mean(familiarity[~is_known] < threshold)), 4),
                )
                open_runs.append(open_run)
                if log:
                    log(
                        f"{task} open set ({len(known)} known classes): AUROC {open_run.auroc:.3f}, "
                        f"unknown at the default threshold: {open_run.false_unknown:.1%} of known clips, "
                        f"{open_run.caught_unknown:.1%} of unseen-class clips"
                    )
    return runs, open_runs


def format_task_report(runs: Sequence[TaskRun], open_runs: Sequence[OpenSetRun]) -> str:
    import os

    sizes = sorted({run.per_class for run in runs})
    header = (
        "| task | "
        + " | ".join(f"{n}/class: accuracy (train s)" for n in sizes)
        + " | features at the largest |"
    )
    lines = [header, "|" + "---|" * (len(sizes) + 2)]
    for task in dict.fromkeys(run.task for run in runs):
        cells = []
        for size in sizes:
            run = next((r for r in runs if r.task == task and r.per_class == size), None)
            cells.append(f"{run.accuracy:.1%} ({run.train_seconds:.0f} s)" if run else "-")
        last = [r for r in runs if r.task == task][-1]
        lines.append(f"| {task} | " + " | ".join(cells) + f" | {last.features} |")
    at20 = [r for r in runs if r.per_class == 20]
    if at20:
        worst = min(at20, key=lambda r: r.accuracy)
        verdict = "met" if worst.accuracy >= 0.9 else "NOT met"
        lines.append(
            f"target: every task >= 90% at 20 clips/class: {verdict} "
            f"(lowest {worst.task} {worst.accuracy:.1%})"
        )
    for open_run in open_runs:
        lines.append(
            f"open set, {open_run.task} ({open_run.known_classes} known classes, 20 clips each): "
            f"AUROC {open_run.auroc:.3f}; the default threshold answers unknown for "
            f"{open_run.false_unknown:.1%} of known and {open_run.caught_unknown:.1%} of unseen-class clips"
        )
    lines.append(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return "\n".join(lines)
