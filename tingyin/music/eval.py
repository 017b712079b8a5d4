"""Evaluate music analysis: the music/non-music detector, the vocal decision, genres and language.

Data (all local, nothing downloaded at run time):

- rendered music (:mod:`tingyin.music.devset`): real pieces of the ``music21`` corpus played on ~60 General
  MIDI instruments and ensembles by ``fluidsynth``, with room and noise, 2-10 s; sung melodies (sampled choir
  and voice) over instruments; read speech mixed over music at -6, 0 and +6 dB. Built into ``--devset``
  (default ``~/.cache/tingyin/music-devset``) when absent; ``fit`` and ``eval`` splits share no piece, no
  speech clip, and a third of the eval instruments never appear in ``fit``;
- real music, when installed (``apt-get install asterisk-moh-opsound-wav sonic-pi-samples``): the five CC
  tracks of Debian's music on hold (8 kHz telephone band, 10 s segments; the Macroform tracks fit, the other
  two eval), Sonic Pi loops and guitar phrases, and read speech over the MOH segments;
- not music: read speech from ``../shared/testdata`` (zh_dev speaker S0150 / en_dev first half fit, the rest
  eval), ESC-10 environmental sounds (folds 1-3 fit, 4-5 eval), digital silence and hiss.

Run: ``python -m tingyin.music.eval [--fit] [--language]``. ``--fit`` refits ``detector.json`` on the fit
split first; the figures are always on the eval split. Clip features are cached next to the devset
(``features.json``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
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
CLASSES = ("music", "speech", "noise")
DEFAULT_DEVSET = Path.home() / ".cache" / "tingyin" / "music-devset"

Split = Literal["fit", "eval"]


@dataclass(frozen=True)
class Clip:
    """One evaluation clip. ``group`` is ``source:detail`` (e.g. ``render:violin``, ``esc10:rain``);
    ``truth`` is music, speech or noise (silence counts as noise); ``vocal`` is known for music clips."""

    name: str
    group: str
    audio: np.ndarray
    truth: str
    vocal: bool | None = None
    held_out: bool = False

    @property
    def is_music(self) -> bool:
        return self.truth == "music"

    @property
    def source(self) -> str:
        return self.group.split(":")[0]


def testdata_dir() -> Path:
    env = os.environ.get("TINGYIN_TESTDATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "testdata"


def _load(path: Path) -> np.ndarray:
    return decode(path).mono()


# ------------------------------------------------------------------------------------------- sources


def ensure_devset(root: Path, split: Split) -> Path:
    """The rendered split's manifest, rendering it first when absent (a few minutes)."""
    from tingyin.music import devset

    manifest = root / split / "manifest.csv"
    if not manifest.exists():
        testdata = testdata_dir()
        sizes = {"fit": (5, 40, 90), "eval": (6, 40, 120)}[split]
        print(f"rendering the {split} split of the music devset into {root / split} ...", flush=True)
        clips = devset.build(
            split,
            per_arrangement=sizes[0],
            sung=sizes[1],
            speech_mixes=sizes[2],
            testdata=testdata if testdata.is_dir() else None,
        )
        devset.write(clips, root / split)
    return manifest


def devset_clips(root: Path, split: Split) -> Iterator[Clip]:
    manifest = ensure_devset(root, split)
    with manifest.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            kind = row["kind"]
            if kind == "instrumental":
                group = f"render:{row['arrangement']}"
            elif kind == "sung":
                group = f"sung:{row['arrangement']}"
            else:
                level = row["detail"].split("voice ")[1].split(" dB")[0]
                group = f"speech_over_music:{level} dB"
            yield Clip(
                row["id"],
                group,
                _load(manifest.parent / row["path"]),
                "music",
                vocal=row["vocal"] == "1",
                held_out=row["held_out"] == "1",
            )


def moh_segments(split: Split) -> Iterator[Clip]:
    """10 s segments of the MOH tracks: the three Macroform tracks fit, the other two eval; even segments
    are instrumental clips, odd ones carry the speech of :func:`voice_over_music`."""
    for path in sorted(MOH_DIR.glob("*.wav")):
        if path.stem.startswith("macroform") != (split == "fit"):
            continue
        audio = _load(path)
        step = int(SEGMENT_S * RATE)
        for index, start in enumerate(range(0, len(audio) - step + 1, step)):
            yield Clip(f"{path.stem}#{index}", "moh", audio[start : start + step], "music", vocal=False)


def sonic_pi_music(split: Split) -> Iterator[Clip]:
    """Sonic Pi loops and guitar phrases, alternately to fit and eval."""
    for index, stem in enumerate(SONIC_PI_MUSIC):
        path = SONIC_PI_DIR / f"{stem}.flac"
        if not path.exists() or (index % 2 == 0) != (split == "fit"):
            continue
        audio = _load(path)
        repeats = int(np.ceil(MIN_LOOP_S * RATE / len(audio)))
        yield Clip(stem, "sonic_pi", np.tile(audio, repeats), "music", vocal=False)


def _in_split(set_name: str, row: dict[str, str], index: int, total: int, split: Split) -> bool:
    if set_name == "zh_dev":  # two speakers: one per split
        return ("S0150" in row["id"]) == (split == "fit")
    if set_name == "esc10":  # official folds: 1-3 fit, 4-5 eval
        return (int(row["fold"]) <= 3) == (split == "fit")
    return (index < total // 2) == (split == "fit")  # en_dev: one speaker, first half fit


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
        truth = "noise" if set_name == "esc10" else "speech"
        yield Clip(row["id"], group, _load(root / row["path"]), truth)


def silence_clips(split: Split) -> Iterator[Clip]:
    rng = np.random.default_rng(7 if split == "fit" else 8)
    yield Clip("digital_silence", "silence", np.zeros(5 * RATE, dtype=np.float32), "noise")
    for level_db in (-70, -60, -50, -45) if split == "fit" else (-65, -55, -48):
        noise = rng.standard_normal(5 * RATE).astype(np.float32) * np.float32(10 ** (level_db / 20))
        yield Clip(f"hiss_{level_db}dB", "silence", noise, "noise")


def _mix(music: np.ndarray, speech: np.ndarray, speech_to_music_db: float) -> np.ndarray:
    length = min(len(music), len(speech))
    music, speech = music[:length], speech[:length]
    music_rms = float(np.sqrt(np.mean(music**2)) + 1e-9)
    speech_rms = float(np.sqrt(np.mean(speech**2)) + 1e-9)
    gain = music_rms / speech_rms * 10 ** (speech_to_music_db / 20)
    mixed = music + gain * speech
    return (mixed / max(1.0, float(np.abs(mixed).max()))).astype(np.float32)


def voice_over_music(split: Split, limit: int | None = 30) -> list[Clip]:
    """Read speech mixed over MOH segments at -6, 0 and +6 dB speech-to-music (real music under a voice)."""
    music = list(moh_segments(split))[1::2]  # the odd segments: not the ones used as instrumentals
    english = [c for c in manifest_clips("en_dev", split) if len(c.audio) >= 6 * RATE]
    mandarin = [c for c in manifest_clips("zh_dev", split) if len(c.audio) >= 5 * RATE]
    # English and Mandarin alternate, so the language check sees both.
    speech = [voice for pair in zip(english, mandarin, strict=False) for voice in pair]
    clips = []
    for index, (clip, voice) in enumerate(zip(music, speech, strict=False)):
        if limit is not None and index >= limit:
            break
        snr = (-6.0, 0.0, 6.0)[index % 3]
        mixed = _mix(clip.audio, voice.audio, snr)
        language = "en" if voice.group == "en_dev" else "cmn"
        clips.append(
            Clip(
                f"{clip.name}+{voice.name}@{snr:g}dB",
                f"voice_over_moh:{language}",
                mixed,
                "music",
                vocal=True,
            )
        )
    return clips


def evaluation_set(split: Split, devset_root: Path | None, per_set: int | None = None) -> list[Clip]:
    """Every clip of ``split``: music (rendered, real, vocal) and non-music; ``per_set`` caps real sets."""
    clips: list[Clip] = []
    if devset_root is not None:
        clips += devset_clips(devset_root, split)
    clips += list(moh_segments(split))[::2][:per_set]
    clips += sonic_pi_music(split)
    clips += voice_over_music(split, per_set)
    clips += manifest_clips("zh_dev", split, per_set)
    clips += manifest_clips("en_dev", split, per_set)
    clips += manifest_clips("esc10", split, None if per_set is None else per_set * 2)
    clips += silence_clips(split)
    return clips


# ------------------------------------------------------------------------------------------ analysis


@dataclass(frozen=True)
class ClipAnalysis:
    """What the models say about one clip: the detector's named features, P(vocal), the top genre."""

    features: dict[str, float]
    vocal_probability: float
    genre: str
    level_dbfs: float


def analyse_clip(audio: np.ndarray) -> ClipAnalysis:
    from tingyin.music import features, taxonomy
    from tingyin.music.detector import DETECTOR_MODELS, named_features, rms_dbfs
    from tingyin.music.tagger import run_patches

    patch_input = features.patches(features.log_mel(audio))
    taggers = {model: run_patches(patch_input, model) for model in DETECTOR_MODELS}
    scores = {model: output.tag_scores() for model, output in taggers.items()}
    genres = {
        tag: taxonomy.tag_probability(tag, scores)
        for tag in taxonomy.SAMI_GENRE34
        if tag in taxonomy.TAG_SOURCES
    }
    return ClipAnalysis(
        named_features(audio, taggers),
        taxonomy.vocal_probability(scores["MTT_musicnn"]),
        max(genres, key=lambda tag: genres[tag]),
        rms_dbfs(audio),
    )


class FeatureCache:
    """Clip analyses stored in one JSON file, keyed by clip group, name and length."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, dict[str, object]] = {}
        if path is not None and path.exists():
            self.entries = json.loads(path.read_text())

    @staticmethod
    def key(clip: Clip) -> str:
        return f"{clip.group}|{clip.name}|{len(clip.audio)}"

    def analyse(self, clips: Sequence[Clip]) -> list[ClipAnalysis]:
        results = []
        started, fresh = time.perf_counter(), 0
        for clip in clips:
            entry = self.entries.get(self.key(clip))
            if entry is None:
                analysis = analyse_clip(clip.audio)
                self.entries[self.key(clip)] = {
                    "features": analysis.features,
                    "vocal": analysis.vocal_probability,
                    "genre": analysis.genre,
                    "level": analysis.level_dbfs,
                }
                fresh += 1
                if fresh % 100 == 0:
                    self.save()
                    print(f"  analysed {fresh} clips ({time.perf_counter() - started:.0f} s)", flush=True)
            else:
                analysis = ClipAnalysis(
                    dict(entry["features"]),  # type: ignore[call-overload]
                    float(entry["vocal"]),  # type: ignore[arg-type]
                    str(entry["genre"]),
                    float(entry["level"]),  # type: ignore[arg-type]
                )
            results.append(analysis)
        self.save()
        return results

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.entries))


# --------------------------------------------------------------------------------------- detector fit


# The detector's inputs: musicnn's tag activations (the tags that describe instruments, voices, textures
# and styles of real music), the loudness contour and the tonal features. All named, so the fitted weights
# can be read (docs/music.md shows the largest ones).
def detector_feature_names() -> tuple[str, ...]:
    from tingyin.music.detector import CONTOUR_FEATURES, TONAL_FEATURES
    from tingyin.music.tagger import MSD_LABELS, MTT_LABELS

    return (
        *(f"mtt:{tag}" for tag in MTT_LABELS),
        *(f"msd:{tag}" for tag in MSD_LABELS),
        *CONTOUR_FEATURES,
        *TONAL_FEATURES,
    )


MUSIC_C_GRID = (0.05, 0.3, 1.0)
THRESHOLD_GRID = (0.3, 0.4, 0.5)
MAX_MUSIC_REFUSED = 0.02  # cross-validated share of fit-split music a setting may refuse
VOCAL_C = 0.3


def _regression(x: np.ndarray, y: np.ndarray, c: float) -> object:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=10000).fit(x, y)


def choose_setting(x: np.ndarray, y: np.ndarray, folds: int = 5) -> tuple[float, float, dict[str, float]]:
    """Regularisation and threshold by cross-validation on the fit split: among the settings that refuse
    at most ``MAX_MUSIC_REFUSED`` of the music, the one refusing the most non-music (mean of speech and
    noise)."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(folds, shuffle=True, random_state=0)
    best: tuple[float, float, float, dict[str, float]] | None = None
    for c in MUSIC_C_GRID:
        p_music = np.zeros(len(y))
        for train, test in splitter.split(x, y):
            p_music[test] = _regression(x[train], y[train], c).predict_proba(x[test])[:, 0]  # type: ignore[attr-defined]
        for threshold in THRESHOLD_GRID:
            refused = p_music < threshold
            rates = {CLASSES[k]: float(refused[y == k].mean()) for k in range(len(CLASSES))}
            print(f"  cross-validation C={c:g} threshold={threshold:g}: refused {rates}", flush=True)
            score = (rates["speech"] + rates["noise"]) / 2
            if rates["music"] <= MAX_MUSIC_REFUSED and (best is None or score > best[2]):
                best = (c, threshold, score, rates)
    if best is None:
        return MUSIC_C_GRID[-1], THRESHOLD_GRID[0], {}
    return best[0], best[1], best[3]


def fit_detector(clips: Sequence[Clip], analyses: Sequence[ClipAnalysis]) -> dict[str, object]:
    """Fit the music / speech / noise regression and the vocal regression on clips above the silence gate."""
    from tingyin.music.detector import SILENCE_DBFS

    names = detector_feature_names()
    rows = [(clip, a) for clip, a in zip(clips, analyses, strict=True) if a.level_dbfs >= SILENCE_DBFS]
    x = np.array([[a.features[name] for name in names] for _, a in rows])
    y = np.array([CLASSES.index(clip.truth) for clip, _ in rows])
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    c, threshold, cv_rates = choose_setting(z, y)
    regression = _regression(z, y, c)
    music = np.array([clip.vocal is not None for clip, _ in rows])
    vocal_y = np.array([bool(clip.vocal) for clip, _ in rows])
    vocal = _regression(z[music], vocal_y[music], VOCAL_C)
    counts = Counter(clip.truth for clip, _ in rows)
    sources = Counter(clip.source for clip, _ in rows)
    return {
        "classes": list(CLASSES),
        "features": list(names),
        "mean": mean.round(6).tolist(),
        "scale": scale.round(6).tolist(),
        "coef": regression.coef_.round(6).tolist(),  # type: ignore[attr-defined]
        "intercept": regression.intercept_.round(6).tolist(),  # type: ignore[attr-defined]
        "threshold": threshold,
        "vocal": {
            "coef": vocal.coef_[0].round(6).tolist(),  # type: ignore[attr-defined]
            "intercept": round(float(vocal.intercept_[0]), 6),  # type: ignore[attr-defined]
            "clips": int(music.sum()),
            "vocal_clips": int(vocal_y[music].sum()),
            "regularisation_C": VOCAL_C,
        },
        "trained_on": {
            "clips": len(rows),
            "per_class": dict(counts),
            "per_source": dict(sorted(sources.items())),
            "regularisation_C": c,
            "cross_validated_refusals": {k: round(v, 4) for k, v in cv_rates.items()},
            "script": "python -m tingyin.music.eval --fit",
        },
    }


# ------------------------------------------------------------------------------------------- reports


def roc_auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties half."""
    pos, neg = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


@dataclass(frozen=True)
class Report:
    """Refusals per group, the figures of issue 19, and the decisions behind them."""

    refused: dict[str, tuple[int, int]]  # group -> (refused, total)
    figures: dict[str, float]
    wrong: list[tuple[str, str]]  # (clip, reason) of wrong decisions


def _share(pairs: Sequence[tuple[int, int]]) -> tuple[int, int, float]:
    refused = sum(r for r, _ in pairs)
    total = sum(t for _, t in pairs)
    return refused, total, refused / total if total else float("nan")


def evaluate(clips: Sequence[Clip], analyses: Sequence[ClipAnalysis]) -> Report:
    """Decide every clip with the shipped detector and gather the figures."""
    from tingyin.music.detector import SILENCE_DBFS, get_detector

    detector = get_detector()
    refused: dict[str, list[int]] = {}
    wrong: list[tuple[str, str]] = []
    for clip, analysis in zip(clips, analyses, strict=True):
        if analysis.level_dbfs < SILENCE_DBFS:
            is_music, reason = False, "silence"
        else:
            probabilities = detector.probabilities(analysis.features)
            is_music = probabilities["music"] >= detector.threshold
            reason = ", ".join(f"{k} {v:.2f}" for k, v in probabilities.items())
        counts = refused.setdefault(clip.group, [0, 0])
        counts[0] += not is_music
        counts[1] += 1
        if is_music != clip.is_music:
            wrong.append((f"{clip.group}/{clip.name}", reason))
    by_group = {group: (c[0], c[1]) for group, c in refused.items()}

    def groups(prefix: str) -> list[tuple[int, int]]:
        return [v for g, v in by_group.items() if g == prefix or g.startswith(prefix + ":")]

    figures: dict[str, float] = {}
    for name, prefixes in (
        ("instrumental renders", ["render"]),
        ("real instrumental (MOH, Sonic Pi)", ["moh", "sonic_pi"]),
        ("sung over instruments", ["sung"]),
        ("speech over rendered music", ["speech_over_music"]),
        ("speech over MOH music", ["voice_over_moh"]),
        ("speech (zh_dev, en_dev)", ["zh_dev", "en_dev"]),
        ("ESC-10", ["esc10"]),
        ("silence", ["silence"]),
    ):
        _refused, total, share = _share([v for p in prefixes for v in groups(p)])
        if total:
            figures[f"refused share: {name}"] = share
            figures[f"clips: {name}"] = total
    held = [(c, a) for c, a in zip(clips, analyses, strict=True) if c.held_out and c.source == "render"]
    if held:
        held_refused = sum(1 for clip, _ in held if f"{clip.group}/{clip.name}" in {w[0] for w in wrong})
        figures["refused share: renders of instruments not in the fit"] = held_refused / len(held)
    render_arrangements = {c.group for c in clips if c.source == "render"}
    figures["instrumental arrangements"] = len(render_arrangements)

    pairs = list(zip(clips, analyses, strict=True))
    scorers: dict[str, Callable[[ClipAnalysis], float]] = {
        "vocal AUC (renders vs sung/speech over renders)": lambda a: detector.vocal_probability(a.features),
        "vocal AUC with MTT voice tags alone": lambda a: a.vocal_probability,
    }
    for name, score in scorers.items():
        vocal = [score(a) for c, a in pairs if c.source in ("sung", "speech_over_music")]
        instrumental = [score(a) for c, a in pairs if c.source == "render"]
        figures[name] = roc_auc(vocal, instrumental)
    genres = Counter(a.genre for c, a in zip(clips, analyses, strict=True) if c.source == "render")
    if genres:
        figures["most common top genre share (renders)"] = genres.most_common(1)[0][1] / sum(genres.values())
        figures["distinct top genres (renders)"] = len(genres)
    return Report(by_group, figures, wrong)


def evaluate_language(clips: Sequence[Clip]) -> tuple[int, int]:
    """MusicTaggingLang30's top tag on speech-over-music clips whose language is known (en_dev, zh_dev)."""
    from tingyin.music.service import NotMusic, analyse_music

    correct = total = 0
    for clip in clips:
        if clip.source not in ("speech_over_music", "voice_over_moh"):
            continue
        expected = "cmn" if "zh_dev" in clip.name or clip.group.endswith("cmn") else "en"
        try:
            analysis = analyse_music(clip.audio, task_types=["MusicTaggingLang30"], top_num=1)
        except NotMusic:
            total += 1
            continue
        result = analysis.results[0]
        correct += bool(result.tags) and result.tags[0] == expected
        total += 1
    return correct, total


def print_report(report: Report, genres: Counter[str] | None = None) -> None:
    print("refused / clips per group:")
    for group, (refused, total) in sorted(report.refused.items()):
        print(f"  {group:40s} {refused:4d}/{total:<4d} {refused / total:6.1%}")
    print("figures:")
    for name, value in report.figures.items():
        shown = (
            f"{value:.1%}"
            if name.startswith(("refused", "most common"))
            else f"{value:.3f}".rstrip("0").rstrip(".")
        )
        print(f"  {name:60s} {shown}")
    if genres:
        print("top genre of instrumental renders:", ", ".join(f"{g} {n}" for g, n in genres.most_common()))
    print(f"wrong decisions ({len(report.wrong)}):")
    for name, reason in report.wrong[:60]:
        print(f"  {name}: {reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Evaluate music analysis (see the module docstring).")
    parser.add_argument("--fit", action="store_true", help="refit detector.json on the fit split first")
    parser.add_argument("--devset", type=Path, default=DEFAULT_DEVSET, help="rendered data (built if absent)")
    parser.add_argument("--no-devset", action="store_true", help="real recordings and testdata only")
    parser.add_argument("--language", action="store_true", help="also check Lang30 on speech over music")
    parser.add_argument("--per-set", type=int, default=0, help="cap on clips per real set (0: all)")
    args = parser.parse_args()
    root = None if args.no_devset else args.devset
    cache = FeatureCache(None if root is None else root / "features.json")
    per_set = args.per_set or None
    if args.fit:
        from tingyin.music.detector import DETECTOR_PATH

        fit_clips = evaluation_set("fit", root, per_set)
        model = fit_detector(fit_clips, cache.analyse(fit_clips))
        DETECTOR_PATH.write_text(json.dumps(model, indent=1) + "\n")
        print(f"fitted on {model['trained_on']}; wrote {DETECTOR_PATH}")
    clips = evaluation_set("eval", root, per_set)
    analyses = cache.analyse(clips)
    report = evaluate(clips, analyses)
    genres = Counter(a.genre for c, a in zip(clips, analyses, strict=True) if c.source == "render")
    print_report(report, genres)
    if args.language:
        correct, total = evaluate_language(clips)
        print(f"language of speech over music (Lang30 top tag): {correct}/{total}")


if __name__ == "__main__":
    main()
