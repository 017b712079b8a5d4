"""`tingyin eval recordings`: multi-speaker recordings built from dev clips, and how much of them survives.

The recordings join ../shared/testdata clips (zh_dev: AISHELL speakers S0150 and S0252; en_dev: LJSpeech)
with pauses drawn from 0.3-1.5 s, so every sentence's text, speaker, language and place in the recording is
known. Kinds (all seeded, so every run builds the same audio):

- ``zh2``: two Mandarin speakers, alternating sentences;
- ``zh-en3``: S0150, S0252 and LJ in a random order (never the same speaker twice in a row), submitted as
  Mandarin (``zh-CN``), as a mixed conversation would be;
- ``en``: LJSpeech alone;
- ``zh-long``: two Mandarin speakers alternating for about 10 minutes (throughput).

The scored set can also be heard under a harder ``condition`` (:func:`degrade_recordings`): ``telephone``
(300-3400 Hz, 8 kHz, 8-bit mu-law, as a call recording arrives) or ``noise`` (ESC-10's rain, sea waves,
fire, helicopter and chainsaw recordings behind the speech at 10 dB SNR).

Each recording is scored for a hypothesis made of timed segments (our utterances, or the batched pipeline's
segments) and its whole text; see :func:`coverage` and :func:`score_recording`. This module holds the pure
logic (assembly, scoring, report); ``tingyin.eval.live`` talks to a server, ``tingyin.eval.reference`` runs
faster-whisper's batched pipeline and ``tingyin.eval.speechbench`` runs it all.
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

RATE = 16000
ZH_SPEAKERS = ("S0150", "S0252")
EN_SPEAKER = "LJ"
PAUSE_RANGE_S = (0.3, 1.5)
# A sentence counts as dropped below this share of its speech covered (time) or matched (text).
DROP_THRESHOLD = 0.3
# An utterance "spans two speakers" when it overlaps the speech of two speakers by at least this much each.
SPEAKER_OVERLAP_S = 0.5
# The fixed set of recordings: (kind, how many, sentences per recording low..high).
RECORDING_PLAN: tuple[tuple[str, int, tuple[int, int]], ...] = (
    ("zh2", 4, (10, 15)),
    ("zh-en3", 3, (9, 15)),
    ("en", 3, (8, 12)),
)
LONG_SECONDS = 600.0
CONDITIONS = ("clean", "telephone", "noise")
TELEPHONE_RATE = 8000
TELEPHONE_BAND_HZ = (300.0, 3400.0)
MU_LAW = 255.0
NOISE_SNR_DB = 10.0
NOISE_LABELS = ("rain", "sea_waves", "crackling_fire", "helicopter", "chainsaw")  # ESC-10 backgrounds


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Clip:
    """One dev clip: where it is, what is said, by whom, in which language."""

    id: str
    path: Path
    text: str
    speaker: str
    language: str  # "zh" or "en"
    duration_s: float  # from the manifest


@dataclass(frozen=True)
class Sentence:
    """A clip placed in a recording. ``start_s``/``end_s`` bound its speech (the clip with its leading and
    trailing silence trimmed); ``clip_start_s``/``clip_end_s`` bound the whole clip."""

    id: str
    text: str
    speaker: str
    language: str
    start_s: float
    end_s: float
    clip_start_s: float
    clip_end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Recording:
    """A built recording: what is in it and where its audio is."""

    name: str
    kind: str
    language: str  # what the systems are asked for: "zh" (also for zh-en3) or "en"
    metric: str  # "CER" or "WER"
    duration_s: float
    sentences: tuple[Sentence, ...]
    path: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "language": self.language,
            "metric": self.metric,
            "duration_s": round(self.duration_s, 3),
            "path": str(self.path) if self.path else None,
            "sentences": [asdict(s) for s in self.sentences],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recording:
        return cls(
            name=data["name"],
            kind=data["kind"],
            language=data["language"],
            metric=data["metric"],
            duration_s=float(data["duration_s"]),
            sentences=tuple(Sentence(**s) for s in data["sentences"]),
            path=Path(data["path"]) if data.get("path") else None,
        )


@dataclass(frozen=True)
class Segment:
    """A timed piece of a hypothesis: one of our utterances or one batched-pipeline segment."""

    start_s: float
    end_s: float
    text: str
    speaker: str | None = None


# ---------------------------------------------------------------- building


def load_clips(testdata: Path) -> dict[str, list[Clip]]:
    """The dev clips by speaker: ``S0150``, ``S0252`` (zh_dev) and ``LJ`` (en_dev), in manifest order."""
    pools: dict[str, list[Clip]] = {name: [] for name in (*ZH_SPEAKERS, EN_SPEAKER)}
    for set_name, language in (("zh_dev", "zh"), ("en_dev", "en")):
        manifest = testdata / set_name / "manifest.csv"
        with manifest.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                speaker = EN_SPEAKER if language == "en" else row["id"][6:11]
                if speaker in pools:
                    pools[speaker].append(
                        Clip(
                            row["id"],
                            manifest.parent / row["path"],
                            row["text"],
                            speaker,
                            language,
                            float(row.get("duration_s") or 0.0),
                        )
                    )
    return pools


def speaker_order(kind: str, count: int, rng: random.Random) -> list[str]:
    """Who says each sentence: alternating for ``zh2``/``zh-long`` (random first speaker), one speaker for
    ``en``, and for ``zh-en3`` a random order without the same speaker twice in a row in which each of the
    three speaks at least twice (when ``count`` allows)."""
    if kind in ("zh2", "zh-long"):
        first = rng.randrange(2)
        return [ZH_SPEAKERS[(first + i) % 2] for i in range(count)]
    if kind == "en":
        return [EN_SPEAKER] * count
    if kind != "zh-en3":
        raise ValueError(f"unknown recording kind {kind!r}")
    speakers = (*ZH_SPEAKERS, EN_SPEAKER)
    while True:
        order: list[str] = []
        for _ in range(count):
            order.append(rng.choice([s for s in speakers if not order or s != order[-1]]))
        if all(order.count(s) >= min(2, count // 3) for s in speakers):
            return order


class ClipPicker:
    """Draws clips per speaker without repeating one until that speaker's clips are used up."""

    def __init__(self, pools: dict[str, list[Clip]], rng: random.Random) -> None:
        self._pools = pools
        self._rng = rng
        self._left: dict[str, list[Clip]] = {}

    def take(self, speaker: str) -> Clip:
        if not self._left.get(speaker):
            if not self._pools.get(speaker):
                raise ValueError(f"no clips of speaker {speaker}")
            shuffled = list(self._pools[speaker])
            self._rng.shuffle(shuffled)
            self._left[speaker] = shuffled
        return self._left[speaker].pop()


def speech_bounds(samples: np.ndarray, rate: int = RATE, frame_s: float = 0.02) -> tuple[float, float]:
    """Start and end (seconds) of the speech in a clip: the first and last 20 ms frame whose RMS is within
    35 dB of the clip's loudest frame (the whole clip when nothing stands out)."""
    frame = max(1, int(frame_s * rate))
    count = samples.shape[0] // frame
    if count == 0:
        return 0.0, samples.shape[0] / rate
    frames = samples[: count * frame].reshape(count, frame).astype(np.float64)
    rms = np.sqrt((frames**2).mean(axis=1))
    loud = np.flatnonzero(rms >= max(float(rms.max()) * 10 ** (-35 / 20), 1e-4))
    if loud.size == 0:
        return 0.0, samples.shape[0] / rate
    return float(loud[0] * frame / rate), float(min(samples.shape[0], (loud[-1] + 1) * frame) / rate)


def assemble(
    clips: Sequence[Clip],
    pauses_s: Sequence[float],
    load: Callable[[Path], np.ndarray],
    *,
    lead_s: float = 0.5,
    tail_s: float = 0.5,
) -> tuple[np.ndarray, list[Sentence]]:
    """Join ``clips`` with ``pauses_s[i]`` of silence after clip i (one fewer pause than clips), with
    ``lead_s``/``tail_s`` of silence around; returns the samples and every sentence's place."""
    if len(pauses_s) != max(0, len(clips) - 1):
        raise ValueError("one pause between each two clips")
    pieces = [np.zeros(round(lead_s * RATE), dtype=np.float32)]
    sentences: list[Sentence] = []
    position = pieces[0].shape[0]
    for index, clip in enumerate(clips):
        samples = np.asarray(load(clip.path), dtype=np.float32)
        start_in, end_in = speech_bounds(samples)
        begin = position / RATE
        sentences.append(
            Sentence(
                id=clip.id,
                text=clip.text,
                speaker=clip.speaker,
                language=clip.language,
                start_s=round(begin + start_in, 3),
                end_s=round(begin + end_in, 3),
                clip_start_s=round(begin, 3),
                clip_end_s=round(begin + samples.shape[0] / RATE, 3),
            )
        )
        pieces.append(samples)
        position += samples.shape[0]
        gap = pauses_s[index] if index < len(pauses_s) else tail_s
        pieces.append(np.zeros(round(gap * RATE), dtype=np.float32))
        position += pieces[-1].shape[0]
    return np.concatenate(pieces), sentences


def recording_spec(seed: int) -> list[tuple[str, str, int]]:
    """(name, kind, sentence count) of the benchmark recordings for ``seed``."""
    rng = random.Random(seed)
    specs: list[tuple[str, str, int]] = []
    for kind, count, (low, high) in RECORDING_PLAN:
        for number in range(1, count + 1):
            specs.append((f"{kind}-{number}", kind, rng.randint(low, high)))
    return specs


def plan_recording(
    kind: str,
    picker: ClipPicker,
    rng: random.Random,
    *,
    sentences: int | None = None,
    min_seconds: float | None = None,
) -> tuple[list[Clip], list[float]]:
    """The clips of one recording of ``kind`` and the pauses between them: ``sentences`` clips, or (for
    ``zh-long``) alternating clips until their manifest durations and pauses reach ``min_seconds``."""
    if (sentences is None) == (min_seconds is None):
        raise ValueError("give sentences or min_seconds")
    clips: list[Clip] = []
    pauses: list[float] = []
    if sentences is not None:
        for speaker in speaker_order(kind, sentences, rng):
            if clips:
                pauses.append(round(rng.uniform(*PAUSE_RANGE_S), 2))
            clips.append(picker.take(speaker))
        return clips, pauses
    total = 0.0
    for speaker in itertools.cycle(speaker_order(kind, 2, rng)):
        if total >= (min_seconds or 0.0):
            break
        if clips:
            pauses.append(round(rng.uniform(*PAUSE_RANGE_S), 2))
            total += pauses[-1]
        clips.append(picker.take(speaker))
        total += clips[-1].duration_s
    return clips, pauses


def decode_mono(path: Path) -> np.ndarray:
    """A file's audio as 16 kHz mono float32."""
    from tingyin.audio import decode

    return decode(path).mono()


def write_recording(
    name: str,
    kind: str,
    clips: Sequence[Clip],
    pauses_s: Sequence[float],
    out_dir: Path,
    load: Callable[[Path], np.ndarray] = decode_mono,
) -> Recording:
    """Assemble ``clips`` (see :func:`assemble`) into ``out_dir/<name>.wav``."""
    from tingyin.audio import encode_wav

    samples, placed = assemble(clips, pauses_s, load)
    path = out_dir / f"{name}.wav"
    path.write_bytes(encode_wav(samples))
    language = "en" if kind == "en" else "zh"
    return Recording(
        name=name,
        kind=kind,
        language=language,
        metric="WER" if language == "en" else "CER",
        duration_s=samples.shape[0] / RATE,
        sentences=tuple(placed),
        path=path,
    )


def build_recordings(
    testdata: Path,
    out_dir: Path,
    *,
    seed: int = 11,
    include: Sequence[str] = ("set", "long"),
    limit: int | None = None,
    long_seconds: float = LONG_SECONDS,
    load: Callable[[Path], np.ndarray] = decode_mono,
) -> list[Recording]:
    """Build the benchmark recordings as WAV files in ``out_dir``, with ``recordings.json`` describing them.
    ``include``: ``set`` (the 10 scored recordings; the first ``limit`` only when given) and/or ``long``
    (about ``long_seconds``). The choice of clips and pauses depends on ``seed`` alone, so a subset or a
    second run builds the same audio; files already there with the same content are kept."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pools = load_clips(testdata)
    rng = random.Random(seed)
    picker = ClipPicker(pools, rng)  # one picker for the set: no clip repeats across its recordings
    plans: list[tuple[str, str, list[Clip], list[float]]] = []
    for name, kind, count in recording_spec(seed):
        clips, pauses = plan_recording(kind, picker, rng, sentences=count)
        plans.append((name, kind, clips, pauses))
    wanted = plans[:limit] if "set" in include else []
    if "long" in include:
        long_rng = random.Random(f"{seed}:long")
        clips, pauses = plan_recording(
            "zh-long", ClipPicker(pools, long_rng), long_rng, min_seconds=long_seconds
        )
        wanted.append(("zh-long", "zh-long", clips, pauses))
    index_path = out_dir / "recordings.json"
    known: dict[str, Recording] = {}
    if index_path.is_file():
        known = {
            r["name"]: Recording.from_dict(r)
            for r in json.loads(index_path.read_text(encoding="utf-8"))["recordings"]
        }
    built: list[Recording] = []
    for name, kind, clips, pauses in wanted:
        previous = known.get(name)
        if (
            previous is not None
            and previous.path is not None
            and previous.path.is_file()
            and [s.id for s in previous.sentences] == [c.id for c in clips]
        ):
            built.append(previous)
            continue
        built.append(write_recording(name, kind, clips, pauses, out_dir, load))
    merged = {**known, **{r.name: r for r in built}}
    index_path.write_text(
        json.dumps({"recordings": [r.as_dict() for r in merged.values()]}, ensure_ascii=False, indent=1),
        encoding="utf-8",
    )
    return built


# ---------------------------------------------------------------- conditions


def telephone_band(samples: np.ndarray) -> np.ndarray:
    """16 kHz audio as a telephone line carries it: a 300-3400 Hz band-pass (6th-order Butterworth: a
    line's band edges roll off, they are no brick wall), 8 kHz, 8-bit mu-law (G.711)."""
    from scipy.signal import butter, resample_poly, sosfilt

    low, high = TELEPHONE_BAND_HZ
    sections = butter(6, [low, high], btype="band", fs=RATE, output="sos")
    band = resample_poly(sosfilt(sections, samples.astype(np.float64)), TELEPHONE_RATE, RATE)
    clipped = np.clip(band, -1.0, 1.0)
    compressed = np.sign(clipped) * np.log1p(MU_LAW * np.abs(clipped)) / np.log1p(MU_LAW)
    quantised = np.round(compressed * 127.0) / 127.0
    return (np.sign(quantised) * np.expm1(np.abs(quantised) * np.log1p(MU_LAW)) / MU_LAW).astype(np.float32)


def load_noises(testdata: Path) -> list[np.ndarray]:
    """ESC-10's clips of the :data:`NOISE_LABELS` classes, 16 kHz mono, in manifest order."""
    manifest = testdata / "esc10" / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"the noise condition needs ESC-10: {manifest} is missing")
    with manifest.open(encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["label"] in NOISE_LABELS]
    return [decode_mono(manifest.parent / row["path"]) for row in rows]


def with_noise(
    samples: np.ndarray, noises: Sequence[np.ndarray], rng: random.Random, snr_db: float = NOISE_SNR_DB
) -> np.ndarray:
    """``samples`` with noise clips (shuffled, one after another, repeated as needed) behind them, at
    ``snr_db`` below the speech's level (RMS of the samples that are not silence)."""
    order = list(noises)
    rng.shuffle(order)
    background = np.concatenate(order)
    repeats = -(-samples.shape[0] // background.shape[0])
    background = np.tile(background, repeats)[: samples.shape[0]].astype(np.float64)
    speech = samples[np.abs(samples) > 1e-3].astype(np.float64)
    speech_rms = float(np.sqrt(np.mean(speech**2))) if speech.size else 0.0
    noise_rms = float(np.sqrt(np.mean(background**2))) or 1.0
    mixed = samples + background * (speech_rms / noise_rms) / 10 ** (snr_db / 20)
    return (mixed / max(1.0, float(np.abs(mixed).max()))).astype(np.float32)


def degrade_recordings(
    recordings: Sequence[Recording], condition: str, testdata: Path, out_dir: Path, seed: int
) -> list[Recording]:
    """Copies of ``recordings`` heard under ``condition`` (one of :data:`CONDITIONS`), written to
    ``out_dir/<condition>/``; the sentences and their times are those of the originals."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; one of {', '.join(CONDITIONS)}")
    if condition == "clean" or not recordings:
        return list(recordings)
    from tingyin.audio import encode_wav

    target = out_dir / condition
    target.mkdir(parents=True, exist_ok=True)
    noises = load_noises(testdata) if condition == "noise" else []
    degraded = []
    for recording in recordings:
        assert recording.path is not None
        samples = decode_mono(recording.path)
        path = target / f"{recording.name}.wav"
        if condition == "telephone":
            path.write_bytes(encode_wav(telephone_band(samples), TELEPHONE_RATE))
        else:
            rng = random.Random(f"{seed}:{recording.name}:noise")
            path.write_bytes(encode_wav(with_noise(samples, noises, rng)))
        degraded.append(replace(recording, path=path))
    return degraded


# ---------------------------------------------------------------- scoring


def coverage(sentence: Sentence, segments: Sequence[Segment]) -> float:
    """The share of the sentence's speech span covered by segments that hold text.

    A segment ``[a, b]`` with non-blank text covers ``[max(a, s), min(b, e)]`` of the sentence ``[s, e]``
    (its speech, silence trimmed: :func:`speech_bounds`); the covered length is the length of the *union* of
    these intervals, so a sentence split over two utterances counts once, and the result is that length over
    ``e - s`` (0..1). A sentence is dropped when this is below :data:`DROP_THRESHOLD` (0.3). The union is
    more lenient than "one utterance covers 30%" only where a sentence was cut into pieces of < 30% each.
    Segments of the batched pipeline span whole VAD chunks (it has no timestamps inside them), so for it
    this only tells that the region was decoded to some text; :func:`sentence_matches` checks the words.
    """
    if sentence.end_s <= sentence.start_s:
        return 1.0
    pieces = sorted(
        (max(seg.start_s, sentence.start_s), min(seg.end_s, sentence.end_s))
        for seg in segments
        if seg.text.strip() and seg.end_s > sentence.start_s and seg.start_s < sentence.end_s
    )
    covered = 0.0
    reach = sentence.start_s
    for start, end in pieces:
        if end <= reach:
            continue
        covered += end - max(start, reach)
        reach = end
    return min(1.0, covered / (sentence.end_s - sentence.start_s))


def speakers_spanned(segment: Segment, sentences: Sequence[Sentence]) -> set[str]:
    """The reference speakers whose speech this segment overlaps by ≥ :data:`SPEAKER_OVERLAP_S` each."""
    overlap: dict[str, float] = {}
    for sentence in sentences:
        shared = min(segment.end_s, sentence.end_s) - max(segment.start_s, sentence.start_s)
        if shared > 0:
            overlap[sentence.speaker] = overlap.get(sentence.speaker, 0.0) + shared
    return {speaker for speaker, seconds in overlap.items() if seconds >= SPEAKER_OVERLAP_S}


class Normaliser:
    """Text → scoring units, with the normalisation of ``../shared/eval/score.py`` when it is present
    (``zh_norm``: Traditional → Simplified, NFKC, no punctuation or spaces, numbers in one form;
    ``en_norm``: Whisper's English normaliser), else ``tingyin.eval.text``'s.

    Units: Mandarin and mixed recordings (CER) count characters; Latin runs inside them go through the
    English normaliser first and are lower-cased, so ``S A M S U N G`` and ``Samsung`` agree. English
    recordings (WER) count words.
    """

    def __init__(self, scorer: Path | None = None) -> None:
        module = _load_scorer(scorer) if scorer is not None and scorer.is_file() else None
        self.source = str(scorer) if module is not None else "tingyin.eval.text"
        if module is not None:
            self._zh: Callable[[str], str] = module.zh_norm
            self._en: Callable[[str], str] = module.en_norm
        else:
            from tingyin.eval.text import normalize_en, normalize_zh

            self._zh, self._en = normalize_zh, normalize_en

    def units(self, text: str, metric: str) -> list[str]:
        if metric == "WER":
            return self._en(text).split()
        latin = _LATIN_RUN.sub(lambda m: " " + self._en(m.group()) + " ", text)
        return list(self._zh(latin).lower())


_LATIN_RUN = re.compile(r"[A-Za-z][A-Za-z0-9'’\- ]*[A-Za-z0-9]|[A-Za-z]")


def _load_scorer(path: Path) -> ModuleType | None:
    spec = importlib.util.spec_from_file_location("tingyin_shared_score", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not (hasattr(module, "zh_norm") and hasattr(module, "en_norm")):
        return None
    try:  # its normalisers import cn2an / opencc / whisper_normalizer lazily: fail here, not mid-run
        module.zh_norm("二十")
        module.en_norm("twenty")
    except ImportError as exc:
        raise RuntimeError(
            f"{path} needs cn2an, opencc-python-reimplemented and whisper-normalizer "
            "(pip install 'tingyin[eval]'): " + str(exc)
        ) from exc
    return module


class Alignment(NamedTuple):
    """A minimum-edit alignment of a hypothesis to a reference, seen from the reference's units."""

    errors: int  # substitutions + deletions + insertions
    matched: list[bool]  # per reference unit: aligned to an equal hypothesis unit
    heard: list[bool]  # per reference unit: aligned to some hypothesis unit (a match or a substitution)


def align(reference: Sequence[str], hypothesis: Sequence[str]) -> Alignment:
    """Minimum-edit alignment (one of the cheapest; ties prefer a diagonal step, then a deletion)."""
    n, m = len(reference), len(hypothesis)
    cost = np.zeros((n + 1, m + 1), dtype=np.int32)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    hyp = list(hypothesis)
    for i in range(1, n + 1):
        row, above = cost[i], cost[i - 1]
        unit = reference[i - 1]
        diagonal = above[:-1] + np.fromiter((unit != h for h in hyp), dtype=np.int32, count=m)
        best = np.minimum(diagonal, above[1:] + 1)
        # Insertions run along the row: a running minimum of best[j] - j, plus j.
        row[1:] = np.minimum.accumulate(np.concatenate(([row[0]], best)) - np.arange(m + 1))[1:] + np.arange(
            1, m + 1
        )
    matched = [False] * n
    heard = [False] * n
    i, j = n, m
    while i > 0 and j > 0:
        same = reference[i - 1] == hypothesis[j - 1]
        if cost[i, j] == cost[i - 1, j - 1] + (0 if same else 1):
            matched[i - 1] = same
            heard[i - 1] = True
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return Alignment(int(cost[n, m]), matched, heard)


@dataclass(frozen=True)
class SentenceScore:
    id: str
    speaker: str
    language: str
    start_s: float
    end_s: float
    coverage: float  # share of the speech span covered by segments with text (time-based)
    matched: float  # share of the reference units matched in the whole-text alignment (text-based)
    heard: float  # share of the reference units aligned to any hypothesis unit (matched or substituted)

    @property
    def dropped(self) -> bool:
        return self.coverage < DROP_THRESHOLD

    @property
    def text_dropped(self) -> bool:
        """Too little of it came out right (lost, or misheard: a 2-character name read wrong counts)."""
        return self.matched < DROP_THRESHOLD

    @property
    def lost(self) -> bool:
        """Nothing came out in its place: its units are deletions in the whole-text alignment."""
        return self.heard < DROP_THRESHOLD


@dataclass(frozen=True)
class RecordingScore:
    system: str
    recording: str
    metric: str
    errors: int
    reference_units: int
    sentences: tuple[SentenceScore, ...]
    multi_speaker_segments: int  # segments spanning two reference speakers (SPEAKER_OVERLAP_S each)
    segments: int
    wall_s: float | None = None
    failure: str | None = None
    hypothesis: str = ""
    timeline: tuple[Segment, ...] = ()  # the segments themselves, kept in the report for a later look

    @property
    def error_rate(self) -> float:
        return self.errors / max(1, self.reference_units)

    @property
    def dropped(self) -> list[str]:
        return [s.id for s in self.sentences if s.dropped]

    @property
    def text_dropped(self) -> list[str]:
        return [s.id for s in self.sentences if s.text_dropped]

    @property
    def lost(self) -> list[str]:
        return [s.id for s in self.sentences if s.lost]

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "recording": self.recording,
            "metric": self.metric,
            "error_rate": round(self.error_rate, 4),
            "errors": self.errors,
            "reference_units": self.reference_units,
            "dropped": self.dropped,
            "text_dropped": self.text_dropped,
            "lost": self.lost,
            "multi_speaker_segments": self.multi_speaker_segments,
            "segments": self.segments,
            "wall_s": None if self.wall_s is None else round(self.wall_s, 2),
            "failure": self.failure,
            "hypothesis": self.hypothesis,
            "timeline": [[round(g.start_s, 2), round(g.end_s, 2), g.speaker, g.text] for g in self.timeline],
            "sentences": [
                {
                    **asdict(s),
                    "coverage": round(s.coverage, 3),
                    "matched": round(s.matched, 3),
                    "heard": round(s.heard, 3),
                }
                for s in self.sentences
            ],
        }


def score_recording(
    system: str,
    recording: Recording,
    segments: Sequence[Segment],
    text: str,
    normaliser: Normaliser,
    *,
    wall_s: float | None = None,
    failure: str | None = None,
) -> RecordingScore:
    """Score one system on one recording: per sentence :func:`coverage`, and the shares of its reference
    units matched / aligned to anything when ``text`` (the whole hypothesis) is aligned to all references
    in order (:func:`align`); whole-text CER/WER (edits over reference units); segments spanning two
    speakers."""
    per_sentence = [normaliser.units(s.text, recording.metric) for s in recording.sentences]
    reference = [unit for units in per_sentence for unit in units]
    alignment = align(reference, normaliser.units(text, recording.metric))
    scores: list[SentenceScore] = []
    offset = 0
    for sentence, units in zip(recording.sentences, per_sentence, strict=True):
        hits = sum(alignment.matched[offset : offset + len(units)])
        heard = sum(alignment.heard[offset : offset + len(units)])
        offset += len(units)
        scores.append(
            SentenceScore(
                id=sentence.id,
                speaker=sentence.speaker,
                language=sentence.language,
                start_s=sentence.start_s,
                end_s=sentence.end_s,
                coverage=coverage(sentence, segments),
                matched=hits / len(units) if units else 1.0,
                heard=heard / len(units) if units else 1.0,
            )
        )
    spanning = sum(len(speakers_spanned(seg, recording.sentences)) > 1 for seg in segments)
    return RecordingScore(
        system=system,
        recording=recording.name,
        metric=recording.metric,
        errors=alignment.errors,
        reference_units=len(reference),
        sentences=tuple(scores),
        multi_speaker_segments=spanning,
        segments=len(segments),
        wall_s=wall_s,
        failure=failure,
        hypothesis=text,
        timeline=tuple(segments),
    )


def format_drops_table(
    recordings: Sequence[Recording], ours: dict[str, RecordingScore], batched: dict[str, RecordingScore]
) -> str:
    """One line per recording, ours against the batched pipeline; ``<<`` marks where ours is worse or
    drops a sentence (time- or text-based)."""
    header = (
        f"{'recording':<10} {'dur s':>6} {'sent':>4} {'metric':>6} | "
        f"{'ours err':>8} {'drop':>4} {'tdrop':>5} {'lost':>4} {'2spk':>4} | "
        f"{'batch err':>9} {'drop':>4} {'tdrop':>5} {'lost':>4} {'2spk':>4} |"
    )
    lines = [header, "-" * len(header)]
    totals: dict[str, list[int]] = {"ours": [0, 0, 0, 0, 0], "batched": [0, 0, 0, 0, 0]}
    for recording in recordings:
        cells = [f"{recording.name:<10} {recording.duration_s:>6.1f} {len(recording.sentences):>4} "]
        cells[0] += f"{recording.metric:>6} |"
        flagged = False
        for key, scores in (("ours", ours), ("batched", batched)):
            score = scores.get(recording.name)
            if score is None:
                cells.append(f" {'-':>8} {'-':>4} {'-':>5} {'-':>4} {'-':>4} |")
                continue
            totals[key][0] += score.errors
            totals[key][1] += score.reference_units
            totals[key][2] += len(score.dropped)
            totals[key][3] += len(score.text_dropped)
            totals[key][4] += len(score.lost)
            width = 8 if key == "ours" else 9
            rate = "failed" if score.failure else f"{score.error_rate * 100:.2f}%"
            cells.append(
                f" {rate:>{width}} {len(score.dropped):>4} {len(score.text_dropped):>5} "
                f"{len(score.lost):>4} {score.multi_speaker_segments:>4} |"
            )
        mine, theirs = ours.get(recording.name), batched.get(recording.name)
        if mine is not None:
            flagged = bool(mine.failure or mine.dropped or mine.text_dropped)
            if theirs is not None and mine.error_rate > theirs.error_rate:
                flagged = True
        lines.append("".join(cells) + (" <<" if flagged else ""))
    lines.append("-" * len(header))
    summary = []
    for key in ("ours", "batched"):
        errors, units, drops, text_drops, lost = totals[key]
        if units:
            summary.append(
                f"{key}: pooled error {errors / units * 100:.2f}% ({errors}/{units}), "
                f"{drops} dropped (time), {text_drops} dropped (text), {lost} lost"
            )
    lines += summary
    lines.append(
        "err: whole-text CER/WER; drop: sentences < 30% of their speech covered by segments with text; "
        "tdrop: < 30% of their units matched in the whole-text alignment; lost: < 30% aligned to any "
        "hypothesis unit (nothing came out in their place); 2spk: segments spanning two speakers; "
        "<< ours worse or drops"
    )
    return "\n".join(lines)


def dropped_details(recordings: Sequence[Recording], scores: dict[str, RecordingScore]) -> list[str]:
    """One line per dropped sentence (either variant): recording, id, span, coverage, matched, text."""
    lines = []
    for recording in recordings:
        score = scores.get(recording.name)
        if score is None:
            continue
        for sentence, result in zip(recording.sentences, score.sentences, strict=True):
            if result.dropped or result.text_dropped:
                lines.append(
                    f"  {score.system} {recording.name} {sentence.id} [{sentence.start_s:.1f}-"
                    f"{sentence.end_s:.1f} s] {sentence.speaker} covered {result.coverage:.0%} "
                    f"matched {result.matched:.0%} heard {result.heard:.0%}: {sentence.text}"
                )
    return lines


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _shared(*parts: str) -> Path:
    """``../shared/<parts>`` beside the checkout, else beside the working directory."""
    for base in (Path(__file__).resolve().parents[3], Path.cwd().resolve().parent):
        candidate = base.joinpath("shared", *parts)
        if candidate.exists():
            return candidate
    return Path(__file__).resolve().parents[3].joinpath("shared", *parts)


def default_testdata() -> Path:
    """``../shared/testdata`` (or ``$TINGYIN_TESTDATA``)."""
    import os

    if os.environ.get("TINGYIN_TESTDATA"):
        return Path(os.environ["TINGYIN_TESTDATA"])
    return _shared("testdata")


def default_scorer() -> Path:
    """``../shared/eval/score.py``, the scorer the project's figures are judged with."""
    return _shared("eval", "score.py")
