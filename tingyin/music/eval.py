"""Evaluate the music/non-music detector and the vocal/non-vocal decision on real audio.

Data (all local, nothing downloaded at run time):

- music: the five Creative Commons tracks of Debian's ``asterisk-moh-opsound-wav`` (8 kHz telephone-band
  music, cut into 10 s segments) and the Sonic Pi loops and guitar phrases of ``sonic-pi-samples`` (CC0;
  loops shorter than 6 s are repeated, as they are meant to be played);
- not music: read speech from ``../shared/testdata`` (zh_dev, en_dev), environmental sounds (esc10), digital
  silence and low hiss.
- vocal vs non-vocal: the instrumental segments above (non_vocal) and speech mixed over them at a 0 to +6 dB
  speech-to-music ratio (vocal: a voice over music, the closest to a song we can build without songs).

Run: ``python -m tingyin.music.eval [--fit] [--per-set N]``
(after ``apt-get install asterisk-moh-opsound-wav sonic-pi-samples``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from tingyin.audio import decode

MOH_DIR = Path("/usr/share/asterisk/moh")
SONIC_PI_DIR = Path("/usr/share/sonic-pi/samples")
# Sonic Pi samples that are music (rhythmic loops, guitar phrases). Single hits, drones and effects are left
# out because whether they are "music" is a matter of opinion; loop_3d_printer is a printer recording.
SONIC_PI_MUSIC = (
    "loop_amen", "loop_amen_full", "loop_breakbeat", "loop_compus", "loop_electric", "loop_garzul",
    "loop_industrial", "loop_mehackit1", "loop_mehackit2", "loop_mika", "loop_perc1", "loop_perc2",
    "loop_safari", "loop_tabla", "loop_weirdo", "guit_em9", "guit_e_fifths", "guit_e_slide",
    "guit_harmonics",
)  # fmt: skip
SEGMENT_S = 10.0
MIN_LOOP_S = 6.0
RATE = 16000


@dataclass(frozen=True)
class Clip:
    name: str
    group: str
    audio: np.ndarray
    is_music: bool


Split = Literal["train", "test"]


def testdata_dir() -> Path:
    env = os.environ.get("TINGYIN_TESTDATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "testdata"


def _load(path: Path) -> np.ndarray:
    return decode(path).mono()


def moh_segments(split: Split) -> Iterator[Clip]:
    """10 s segments of the MOH tracks: the three Macroform tracks train, the other two test."""
    for path in sorted(MOH_DIR.glob("*.wav")):
        if path.stem.startswith("macroform") != (split == "train"):
            continue
        audio = _load(path)
        step = int(SEGMENT_S * RATE)
        for index, start in enumerate(range(0, len(audio) - step + 1, step)):
            yield Clip(f"{path.stem}#{index}", "moh", audio[start : start + step], True)


def sonic_pi_music(split: Split) -> Iterator[Clip]:
    """Sonic Pi loops and guitar phrases, alternately to train and test."""
    for index, stem in enumerate(SONIC_PI_MUSIC):
        path = SONIC_PI_DIR / f"{stem}.flac"
        if not path.exists() or (index % 2 == 0) != (split == "train"):
            continue
        audio = _load(path)
        repeats = int(np.ceil(MIN_LOOP_S * RATE / len(audio)))
        yield Clip(stem, "sonic_pi", np.tile(audio, repeats), True)


def _in_split(set_name: str, row: dict[str, str], index: int, total: int, split: Split) -> bool:
    if set_name == "zh_dev":  # two speakers: one per split
        return ("S0150" in row["id"]) == (split == "train")
    if set_name == "esc10":  # official folds: 1-3 train, 4-5 test
        return (int(row["fold"]) <= 3) == (split == "train")
    return (index < total // 2) == (split == "train")  # en_dev: one speaker, first half train


def manifest_clips(set_name: str, split: Split, limit: int | None = None) -> Iterator[Clip]:
    """Clips of a ``../shared/testdata`` set in ``split``; ``limit`` takes equal shares of esc10 labels."""
    root = testdata_dir() / set_name
    manifest = root / "manifest.csv"
    if not manifest.exists():
        return
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rows = [row for i, row in enumerate(rows) if _in_split(set_name, row, i, len(rows), split)]
    if limit is not None and "label" in rows[0]:
        labels = sorted({row["label"] for row in rows})
        per_label = max(1, limit // len(labels))
        rows = [row for label in labels for row in [r for r in rows if r["label"] == label][:per_label]]
    elif limit is not None:
        rows = rows[:limit]
    for row in rows:
        group = f"{set_name}:{row['label']}" if "label" in row else set_name
        yield Clip(row["id"], group, _load(root / row["path"]), False)


def silence_clips(split: Split) -> Iterator[Clip]:
    rng = np.random.default_rng(7 if split == "train" else 8)
    yield Clip("digital_silence", "silence", np.zeros(5 * RATE, dtype=np.float32), False)
    for level_db in (-70, -60, -50, -45) if split == "train" else (-65, -55, -48):
        noise = rng.standard_normal(5 * RATE).astype(np.float32) * np.float32(10 ** (level_db / 20))
        yield Clip(f"hiss_{level_db}dB", "silence", noise, False)


def _mix(music: np.ndarray, speech: np.ndarray, speech_to_music_db: float) -> np.ndarray:
    length = min(len(music), len(speech))
    music, speech = music[:length], speech[:length]
    music_rms = float(np.sqrt(np.mean(music**2)) + 1e-9)
    speech_rms = float(np.sqrt(np.mean(speech**2)) + 1e-9)
    gain = music_rms / speech_rms * 10 ** (speech_to_music_db / 20)
    mixed = music + gain * speech
    return (mixed / max(1.0, float(np.abs(mixed).max()))).astype(np.float32)


def voice_over_music(split: Split, limit: int | None = 30) -> list[Clip]:
    """Read speech mixed over MOH segments at -6, -3 and 0 dB speech-to-music: the stand-in for songs."""
    music = list(moh_segments(split))[1::2]  # the odd segments: not the ones used as instrumentals
    english = [c for c in manifest_clips("en_dev", split) if len(c.audio) >= 6 * RATE]
    mandarin = [c for c in manifest_clips("zh_dev", split) if len(c.audio) >= 5 * RATE]
    # English and Mandarin alternate, so the language check sees both.
    speech = [voice for pair in zip(english, mandarin, strict=False) for voice in pair]
    clips = []
    for index, (clip, voice) in enumerate(zip(music, speech, strict=False)):
        if limit is not None and index >= limit:
            break
        snr = (-6.0, -3.0, 0.0)[index % 3]
        mixed = _mix(clip.audio, voice.audio, snr)
        language = "en" if voice.group == "en_dev" else "cmn"
        clips.append(Clip(f"{clip.name}+{voice.name}@{snr:g}dB", f"voice_over_music:{language}", mixed, True))
    return clips


def music_detection_set(split: Split = "test", per_set: int | None = None) -> list[Clip]:
    """Music (instrumental, voice over music) and non-music clips of ``split``; ``per_set`` caps each set."""
    clips: list[Clip] = []
    clips += list(moh_segments(split))[::2][:per_set]
    clips += sonic_pi_music(split)
    clips += voice_over_music(split, per_set)
    clips += manifest_clips("zh_dev", split, per_set)
    clips += manifest_clips("en_dev", split, per_set)
    clips += manifest_clips("esc10", split, None if per_set is None else per_set * 2)
    clips += silence_clips(split)
    return clips


def vocal_set(split: Split = "test", limit: int | None = None) -> list[tuple[Clip, bool]]:
    """(clip, has_vocals): instrumental MOH segments and Sonic Pi loops, and voice over music."""
    instrumental = [*list(moh_segments(split))[::2][:limit], *sonic_pi_music(split)]
    return [(clip, False) for clip in instrumental] + [
        (clip, True) for clip in voice_over_music(split, limit)
    ]


@dataclass(frozen=True)
class DetectorReport:
    accuracy: float
    n: int
    per_group: dict[str, tuple[int, int]]  # group -> (correct, total)
    errors: list[tuple[str, float]]
    seconds: float


def _report(
    items: list[tuple[str, str, bool]], predict: Callable[[int], tuple[bool, float]]
) -> DetectorReport:
    per_group: dict[str, list[int]] = {}
    errors: list[tuple[str, float]] = []
    correct = 0
    start = time.perf_counter()
    for index, (name, group, truth) in enumerate(items):
        decision, score = predict(index)
        ok = decision == truth
        correct += ok
        counts = per_group.setdefault(group if group.startswith("voice") else group.split(":")[0], [0, 0])
        counts[0] += ok
        counts[1] += 1
        if not ok:
            errors.append((f"{group}/{name}", score))
    seconds = time.perf_counter() - start
    return DetectorReport(
        correct / max(1, len(items)),
        len(items),
        {g: (c[0], c[1]) for g, c in per_group.items()},
        errors,
        seconds,
    )


def evaluate_music_detector(clips: list[Clip] | None = None, *, per_set: int | None = None) -> DetectorReport:
    """Accuracy of :func:`tingyin.music.detector.is_music` (default: the held-out test split), printed."""
    from tingyin.music.detector import is_music

    clips = music_detection_set("test", per_set) if clips is None else clips

    def predict(index: int) -> tuple[bool, float]:
        decision = is_music(clips[index].audio)
        return decision.is_music, decision.score

    report = _report([(c.name, c.group, c.is_music) for c in clips], predict)
    _print("music / non-music", report)
    return report


def evaluate_vocal(limit: int | None = None) -> DetectorReport:
    """Accuracy of the MusicTaggingVocal decision (P(vocal) > 0.5) on the test split of :func:`vocal_set`."""
    from tingyin.music.tagger import run_tagger
    from tingyin.music.taxonomy import vocal_probability

    items = vocal_set("test", limit)

    def predict(index: int) -> tuple[bool, float]:
        probability = vocal_probability(run_tagger(items[index][0].audio, "MTT_musicnn").tag_scores())
        return probability > 0.5, probability

    report = _report([(c.name, c.group, truth) for c, truth in items], predict)
    _print("vocal / non-vocal", report)
    return report


def evaluate_language(limit: int | None = None) -> DetectorReport:
    """MusicTaggingLang30's top tag on the voice-over-music test clips (English "en", Mandarin "cmn")."""
    from tingyin.music.service import NotMusic, analyse_music

    clips = voice_over_music("test", limit)

    def predict(index: int) -> tuple[bool, float]:
        try:
            analysis = analyse_music(clips[index].audio, task_types=["MusicTaggingLang30"], top_num=1)
        except NotMusic:
            return False, 0.0  # refused by the music detector: no language answered
        result = analysis.results[0]
        expected = clips[index].group.split(":")[1]
        return result.tags[0] == expected, float(result.pred[0])

    # Every clip counts as "True" (the expected language was found).
    report = _report([(c.name, c.group, True) for c in clips], predict)
    _print("language of voice over music", report)
    return report


def fit_music_detector(path: Path | None = None, *, c: float = 0.1) -> Path:
    """Fit the detector's logistic regression on the training split and write its JSON."""
    from sklearn.linear_model import LogisticRegression

    from tingyin.music.detector import (
        CONTOUR_FEATURES,
        DETECTOR_PATH,
        SILENCE_DBFS,
        detector_features,
        rms_dbfs,
    )
    from tingyin.music.tagger import EMBED_DIM, run_tagger

    clips = [clip for clip in music_detection_set("train") if rms_dbfs(clip.audio) >= SILENCE_DBFS]
    features = np.stack(
        [detector_features(clip.audio, run_tagger(clip.audio, "MTT_musicnn")) for clip in clips]
    )
    labels = np.array([clip.is_music for clip in clips])
    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-6
    regression = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    regression.fit((features - mean) / scale, labels)
    groups = sorted({clip.group.split(":")[0] for clip in clips})
    model = {
        "features": [f"mtt_embedding_{i}" for i in range(EMBED_DIM)] + list(CONTOUR_FEATURES),
        "mean": mean.round(6).tolist(),
        "scale": scale.round(6).tolist(),
        "coef": regression.coef_[0].round(6).tolist(),
        "intercept": round(float(regression.intercept_[0]), 6),
        "threshold": 0.5,
        "trained_on": {
            "clips": len(clips),
            "music": int(labels.sum()),
            "groups": groups,
            "regularisation_C": c,
            "script": "python -m tingyin.music.eval --fit",
        },
    }
    target = path or DETECTOR_PATH
    target.write_text(json.dumps(model, indent=1) + "\n")
    print(f"fitted on {len(clips)} clips ({int(labels.sum())} music); wrote {target}")
    return target


def _print(title: str, report: DetectorReport) -> None:
    print(f"{title}: accuracy {report.accuracy:.3f} on {report.n} clips ({report.seconds:.1f} s)")
    for group, (correct, total) in sorted(report.per_group.items()):
        print(f"  {group:20s} {correct:4d}/{total:<4d} {correct / total:.3f}")
    for name, score in report.errors[:20]:
        print(f"  wrong: {name} (score {score:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description="Evaluate the music detector and the vocal decision.")
    parser.add_argument("--fit", action="store_true", help="refit the detector on the training split first")
    parser.add_argument("--per-set", type=int, default=0, help="cap on clips per set (0: all)")
    args = parser.parse_args()
    if args.fit:
        fit_music_detector()
    evaluate_music_detector(per_set=args.per_set or None)
    evaluate_vocal(args.per_set or None)
    evaluate_language(args.per_set or None)


if __name__ == "__main__":
    main()
