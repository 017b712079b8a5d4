"""Speaker diarization: who spoke when, with the number of speakers found automatically.

Pipeline: Silero VAD finds speech; the d-vector encoder embeds 0.8 s windows of speech every 0.1 s;
window embeddings are pooled into ~1.5 s segments and clustered (agglomerative, average linkage on
cosine distance, stopping at a distance threshold, so the speaker count needs no hint); every
window is then re-scored against the speaker centroids and a Viterbi pass with a switching
penalty turns the per-frame scores into turns (resegmentation), which fixes segment edges that
straddle a speaker change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from tingyin.errors import InvalidRequest
from tingyin.speech.speaker_embedding import (
    FRAME_MS,
    N_FFT,
    SAMPLE_RATE,
    WINDOW_FRAMES,
    SpeakerEncoder,
    l2_normalise,
    speaker_encoder,
)
from tingyin.speech.types import Utterance, Word
from tingyin.speech.vad import FRAME_SAMPLES, regions_from_probabilities
from tingyin.speech.vad import speech_probabilities as vad_probabilities


class SpeakerTurn(NamedTuple):
    """A stretch of speech by one speaker; speakers are numbered 1.. in order of first appearance."""

    start_ms: int
    end_ms: int
    speaker: int


@dataclass(frozen=True)
class DiarizationConfig:
    """Tunables of :func:`diarize`; the defaults were chosen on the pyannote/AMI clips and dev mixtures."""

    vad_threshold: float = 0.25
    vad_min_silence_ms: int = 500
    vad_min_speech_ms: int = 200
    vad_pad_ms: int = 100
    speech_rms: float = 0.1  # speech is brought to this level before embedding
    window_stride_frames: int = 20  # one window embedding every 200 ms (100 ms: same DER, twice the time)
    segment_frames: int = 150  # clustering unit: 1.5 s of speech
    segment_step_frames: int = 75
    distance_threshold: float = 0.55  # cosine distance at which agglomerative clustering stops merging
    min_speaker_ms: int = 1000  # a cluster with less speech is absorbed by its nearest speaker
    switch_penalty: float = 0.5  # Viterbi log-score cost of a speaker change (per change)
    score_temperature: float = 0.05  # cosine similarities are divided by this before softmax scoring
    min_turn_ms: int = 200
    merge_gap_ms: int = 300  # same-speaker turns closer than this are joined
    overlap_threshold: float | None = None  # runner-up frame score that marks overlapped speech
    min_overlap_ms: int = 500


DEFAULT_CONFIG = DiarizationConfig()
_MAX_SEGMENTS = 3000  # about 40 minutes of speech at the default 0.75 s step


class _Windows(NamedTuple):
    """Window embeddings of the speech: absolute first feature frame per frame of the window."""

    frames: np.ndarray  # (n, WINDOW_FRAMES) absolute feature-frame index of each window frame
    embeddings: np.ndarray  # (n, 256), unit length
    region: np.ndarray  # (n,) index of the speech region the window belongs to


def _speech_windows(
    encoder: SpeakerEncoder, features: np.ndarray, regions: list[tuple[int, int]], stride: int
) -> _Windows:
    """Windows over speech only: within each VAD region, 80-frame windows every ``stride`` frames;
    a region shorter than a window is repeated to fill one (keeps pauses out of the embeddings)."""
    frame_lists: list[np.ndarray] = []
    region_ids: list[int] = []
    for index, (start, end) in enumerate(regions):
        length = end - start
        if length <= 0:
            continue
        if length < WINDOW_FRAMES:
            frame_lists.append(start + np.resize(np.arange(length), WINDOW_FRAMES))
            region_ids.append(index)
            continue
        starts = list(range(start, end - WINDOW_FRAMES + 1, stride))
        if starts[-1] != end - WINDOW_FRAMES:
            starts.append(end - WINDOW_FRAMES)
        for first in starts:
            frame_lists.append(np.arange(first, first + WINDOW_FRAMES))
            region_ids.append(index)
    if not frame_lists:
        return _Windows(
            np.zeros((0, WINDOW_FRAMES), dtype=np.int64),
            np.zeros((0, 256), dtype=np.float32),
            np.zeros(0, dtype=np.int64),
        )
    frames = np.stack(frame_lists)
    # In batches: gathering every window's features at once would copy the audio 8 times over.
    embeddings = np.concatenate(
        [encoder.embed_windows(features[frames[i : i + 512]]) for i in range(0, frames.shape[0], 512)]
    )
    return _Windows(frames, embeddings, np.array(region_ids))


def _segments(
    windows: _Windows, regions: list[tuple[int, int]], config: DiarizationConfig
) -> list[np.ndarray]:
    """Groups of window indices forming the clustering segments (about ``segment_frames`` of speech each)."""
    groups: list[np.ndarray] = []
    for index, (start, end) in enumerate(regions):
        members = np.flatnonzero(windows.region == index)
        if members.size == 0:
            continue
        if end - start <= config.segment_frames:
            groups.append(members)
            continue
        firsts = windows.frames[members, 0]
        seg_start = start
        while True:
            seg_end = min(seg_start + config.segment_frames, end)
            inside = members[(firsts >= seg_start) & (firsts + WINDOW_FRAMES <= seg_end)]
            if inside.size == 0:  # segment narrower than a window: take the window nearest its middle
                middle = (seg_start + seg_end) / 2
                inside = members[[int(np.argmin(np.abs(firsts + WINDOW_FRAMES / 2 - middle)))]]
            groups.append(inside)
            if seg_end >= end:
                break
            seg_start += config.segment_step_frames
            if end - seg_start < config.segment_frames // 2:  # fold a short tail into the last segment
                break
    return groups


def _agglomerative(
    embeddings: np.ndarray, threshold: float, num_clusters: int | None, min_clusters: int = 1
) -> np.ndarray:
    """Average-linkage clustering on cosine distance; stops at ``threshold`` or at ``num_clusters``.
    Stopping at the threshold with fewer than ``min_clusters`` clusters, the tree is cut at
    ``min_clusters`` instead (the caller knows there are at least that many speakers)."""
    if embeddings.shape[0] == 1:
        return np.zeros(1, dtype=np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(embeddings, method="average", metric="cosine")
    if num_clusters is not None:
        labels = fcluster(tree, t=num_clusters, criterion="maxclust")
    else:
        labels = fcluster(tree, t=threshold, criterion="distance")
        if np.unique(labels).size < min_clusters:
            labels = fcluster(tree, t=min(min_clusters, embeddings.shape[0]), criterion="maxclust")
    return np.asarray(labels, dtype=np.int64) - 1


def _viterbi(scores: np.ndarray, switch_penalty: float) -> np.ndarray:
    """Best label path through (frames, speakers) log-scores with a cost per speaker change."""
    frames, speakers = scores.shape
    backpointer = np.zeros((frames, speakers), dtype=np.int64)
    total = scores[0].copy()
    for t in range(1, frames):
        stay = total
        best_other = int(np.argmax(total))
        switch = total[best_other] - switch_penalty
        choose_switch = switch > stay
        backpointer[t] = np.where(choose_switch, best_other, np.arange(speakers))
        total = np.where(choose_switch, switch, stay) + scores[t]
    path = np.zeros(frames, dtype=np.int64)
    path[-1] = int(np.argmax(total))
    for t in range(frames - 1, 0, -1):
        path[t - 1] = backpointer[t, path[t]]
    return path


def _frames_to_turns(
    labels: np.ndarray, speech: np.ndarray, config: DiarizationConfig, total_ms: int
) -> list[SpeakerTurn]:
    """Runs of equal labels on speech frames → turns (short turns absorbed, small gaps bridged)."""
    runs: list[list[int]] = []  # [start_frame, end_frame, label]
    for frame in np.flatnonzero(speech).tolist():
        label = int(labels[frame])
        if runs and runs[-1][1] == frame and runs[-1][2] == label:
            runs[-1][1] = frame + 1
        else:
            runs.append([frame, frame + 1, label])
    # A run shorter than min_turn_ms sandwiched in speech goes to its longer neighbour.
    min_frames = max(1, config.min_turn_ms // FRAME_MS)
    changed = True
    while changed and len(runs) > 1:
        changed = False
        for index, run in enumerate(runs):
            if run[1] - run[0] >= min_frames:
                continue
            neighbours = [
                n
                for n in (index - 1, index + 1)
                if 0 <= n < len(runs) and (runs[n][1] == run[0] or runs[n][0] == run[1])
            ]
            if not neighbours:
                continue
            target = max(neighbours, key=lambda n: runs[n][1] - runs[n][0])
            run[2] = runs[target][2]
            changed = True
        merged: list[list[int]] = []
        for run in runs:
            if merged and merged[-1][2] == run[2] and merged[-1][1] == run[0]:
                merged[-1][1] = run[1]
            else:
                merged.append(run)
        runs = merged
    gap_frames = config.merge_gap_ms // FRAME_MS
    joined: list[list[int]] = []
    for run in runs:
        if joined and joined[-1][2] == run[2] and run[0] - joined[-1][1] <= gap_frames:
            joined[-1][1] = run[1]
        else:
            joined.append(run)
    return [
        SpeakerTurn(start * FRAME_MS, min(end * FRAME_MS, total_ms), label) for start, end, label in joined
    ]


def diarize(
    audio: np.ndarray,
    sample_rate: int = 16000,
    *,
    num_speakers: int | None = None,
    min_speakers: int = 1,
    max_speakers: int = 8,
    config: DiarizationConfig = DEFAULT_CONFIG,
    speech_probabilities: np.ndarray | None = None,
) -> list[SpeakerTurn]:
    """Speaker turns of mono ``audio``; ``num_speakers`` fixes the count, otherwise it is found between
    ``min_speakers`` and ``max_speakers`` (fewer when the speech is too short to hold that many).
    ``speech_probabilities``: Silero's per-frame scores of 16 kHz ``audio`` where the caller has them
    (the recogniser's speech map), so the VAD does not run twice."""
    if audio.ndim != 1:
        raise InvalidRequest("diarization expects mono audio (a 1-D array); split channels first")
    if num_speakers is not None and num_speakers < 1:
        raise InvalidRequest("num_speakers must be at least 1")
    if max_speakers < 1 or min_speakers < 1:
        raise InvalidRequest("min_speakers and max_speakers must be at least 1")
    if min_speakers > max_speakers:
        raise InvalidRequest("min_speakers is larger than max_speakers")
    if sample_rate != SAMPLE_RATE:
        from tingyin.audio import resample

        audio = resample(audio.astype(np.float32, copy=False), sample_rate, SAMPLE_RATE)
    audio = np.asarray(audio, dtype=np.float32)
    total_ms = audio.shape[0] * 1000 // SAMPLE_RATE
    if audio.shape[0] < N_FFT:
        return []

    if speech_probabilities is None or sample_rate != SAMPLE_RATE:
        speech_probabilities = vad_probabilities(audio, SAMPLE_RATE)
    vad_ms = regions_from_probabilities(
        speech_probabilities,
        threshold=config.vad_threshold,
        min_silence_ms=config.vad_min_silence_ms,
        min_speech_ms=config.vad_min_speech_ms,
        pad_ms=config.vad_pad_ms,
        frame_ms=FRAME_SAMPLES * 1000 / SAMPLE_RATE,
    )
    with speaker_encoder() as encoder:
        features = encoder.features(audio)
        features += _level_offset(audio, vad_ms, config.speech_rms)
        frame_count = features.shape[0]
        # Feature frame i starts at sample i*160; map VAD milliseconds onto frames.
        regions = [(max(0, round(s / FRAME_MS)), min(frame_count, round(e / FRAME_MS))) for s, e in vad_ms]
        regions = [(s, e) for s, e in regions if e > s]
        if not regions:
            return []
        windows = _speech_windows(encoder, features, regions, config.window_stride_frames)
    # Long recordings get longer segments so that clustering (quadratic in segments) stays bounded.
    speech_frames = sum(end - start for start, end in regions)
    step = max(config.segment_step_frames, -(-speech_frames // _MAX_SEGMENTS))
    groups = _segments(
        windows,
        regions,
        replace(config, segment_step_frames=step, segment_frames=max(config.segment_frames, 2 * step)),
    )
    segment_embeddings = l2_normalise(np.stack([windows.embeddings[g].mean(axis=0) for g in groups]))
    segment_speech = np.array(
        [len(np.unique(windows.frames[g])) for g in groups], dtype=np.float64
    )  # frames of speech each segment covers

    wanted = None if num_speakers is None else min(num_speakers, segment_embeddings.shape[0])
    labels = _agglomerative(segment_embeddings, config.distance_threshold, wanted, min_speakers)
    labels = _absorb_small_clusters(
        labels, segment_embeddings, segment_speech, config, wanted, min_speakers, max_speakers
    )

    speakers = np.unique(labels)
    centroids = l2_normalise(np.stack([segment_embeddings[labels == k].mean(axis=0) for k in speakers]))
    speech = np.zeros(frame_count, dtype=bool)
    for start, end in regions:
        speech[start:end] = True
    if speakers.size == 1:
        return turns_from_labels(
            _frames_to_turns(np.zeros(frame_count, dtype=np.int64), speech, config, total_ms)
        )
    frame_labels, frame_scores = _resegment(windows, centroids, frame_count, config)
    turns = _frames_to_turns(frame_labels, speech, config, total_ms)
    if config.overlap_threshold is not None:
        turns += _overlap_turns(frame_labels, frame_scores, speech, config, total_ms)
    return turns_from_labels(turns)


def _overlap_turns(
    labels: np.ndarray, scores: np.ndarray, speech: np.ndarray, config: DiarizationConfig, total_ms: int
) -> list[SpeakerTurn]:
    """Second speakers where the runner-up speaker scores nearly as well as the chosen one for a while."""
    from scipy.ndimage import median_filter

    threshold = config.overlap_threshold if config.overlap_threshold is not None else 1.0
    masked = scores.copy()
    masked[np.arange(labels.shape[0]), labels] = -np.inf
    runner_up = np.argmax(masked, axis=1)
    strong = masked[np.arange(labels.shape[0]), runner_up] >= threshold
    smooth = median_filter(strong.astype(np.uint8), size=max(1, config.min_overlap_ms // FRAME_MS) | 1) > 0
    mask = smooth & speech
    turns = []
    for start, end, label in _runs(np.where(mask, runner_up, -1)):
        if label >= 0 and (end - start) * FRAME_MS >= config.min_overlap_ms:
            turns.append(SpeakerTurn(start * FRAME_MS, min(end * FRAME_MS, total_ms), label))
    return turns


def _runs(values: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end, value) of each run of equal values."""
    if values.size == 0:
        return []
    changes = np.flatnonzero(np.diff(values)) + 1
    starts = np.concatenate([[0], changes])
    ends = np.concatenate([changes, [values.size]])
    return [(int(a), int(b), int(values[a])) for a, b in zip(starts, ends, strict=True)]


def _level_offset(audio: np.ndarray, regions_ms: list[tuple[float, float]], target_rms: float) -> float:
    """Log-mel offset that brings the speech to ``target_rms``: the embedder is level-sensitive and
    far-field recordings are quiet; scaling audio by g shifts log10 power features by 2·log10(g)."""
    pieces = [audio[int(s * SAMPLE_RATE / 1000) : int(e * SAMPLE_RATE / 1000)] for s, e in regions_ms]
    speech = np.concatenate(pieces) if pieces else audio
    rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64)))) if speech.size else 0.0
    if rms < 1e-5:
        return 0.0
    return float(2.0 * np.log10(target_rms / rms))


def _absorb_small_clusters(
    labels: np.ndarray,
    embeddings: np.ndarray,
    speech_frames: np.ndarray,
    config: DiarizationConfig,
    wanted: int | None,
    min_speakers: int,
    max_speakers: int,
) -> np.ndarray:
    """Merge clusters with too little speech (or beyond ``max_speakers``) into their nearest cluster,
    keeping at least ``min_speakers``."""
    labels = labels.copy()
    min_frames = config.min_speaker_ms / FRAME_MS
    while True:
        clusters = np.unique(labels)
        if clusters.size <= 1:
            break
        sizes = np.array([speech_frames[labels == k].sum() for k in clusters])
        smallest = int(np.argmin(sizes))
        too_many = clusters.size > (wanted if wanted is not None else max_speakers)
        enough = wanted is not None or clusters.size <= min_speakers
        if not too_many and (enough or sizes[smallest] >= min_frames):
            break
        centroids = l2_normalise(np.stack([embeddings[labels == k].mean(axis=0) for k in clusters]))
        similarity = centroids @ centroids[smallest]
        similarity[smallest] = -np.inf
        labels[labels == clusters[smallest]] = clusters[int(np.argmax(similarity))]
    _, labels = np.unique(labels, return_inverse=True)
    return labels


def _resegment(
    windows: _Windows, centroids: np.ndarray, frame_count: int, config: DiarizationConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame speaker scores from every window covering the frame, then Viterbi smoothing."""
    similarity = windows.embeddings @ centroids.T  # (windows, speakers)
    log_scores = similarity / config.score_temperature
    log_scores -= log_scores.max(axis=1, keepdims=True)
    posteriors = np.exp(log_scores)
    posteriors /= posteriors.sum(axis=1, keepdims=True)
    accumulated = np.zeros((frame_count, centroids.shape[0]))
    counts = np.zeros(frame_count)
    for index in range(windows.frames.shape[0]):
        unique_frames = np.unique(windows.frames[index])
        accumulated[unique_frames] += posteriors[index]
        counts[unique_frames] += 1
    covered = counts > 0
    frame_scores = np.full_like(accumulated, 1.0 / centroids.shape[0])
    frame_scores[covered] = accumulated[covered] / counts[covered, None]
    return _viterbi(np.log(frame_scores + 1e-6), config.switch_penalty), frame_scores


def turns_from_labels(labels: Sequence[tuple[int, int, int]]) -> list[SpeakerTurn]:
    """``(start_ms, end_ms, label)`` triples → turns with speakers renumbered by first appearance."""
    order: dict[int, int] = {}
    turns = []
    for start, end, label in sorted(labels):
        turns.append(SpeakerTurn(start, end, order.setdefault(label, len(order) + 1)))
    return turns


def _speaker_at(turns: Sequence[SpeakerTurn], start_ms: int, end_ms: int) -> int | None:
    """The speaker with the most overlap with [start_ms, end_ms); the nearest turn when none overlaps."""
    if not turns:
        return None
    overlap: dict[int, int] = {}
    for turn in turns:
        amount = min(end_ms, turn.end_ms) - max(start_ms, turn.start_ms)
        if amount > 0:
            overlap[turn.speaker] = overlap.get(turn.speaker, 0) + amount
    if overlap:
        return max(overlap, key=lambda speaker: (overlap[speaker], -speaker))
    middle = (start_ms + end_ms) / 2
    nearest = min(
        turns,
        key=lambda t: (
            0 if t.start_ms <= middle <= t.end_ms else min(abs(t.start_ms - middle), abs(t.end_ms - middle))
        ),
    )
    return nearest.speaker


def _join_text(words: Sequence[Word]) -> str:
    """Words back into text: no spaces between CJK characters, single spaces between other words."""
    text = ""
    for word in words:
        token = word.text
        if not text:
            text = token.strip()
        elif token.startswith(" ") or (not _is_cjk(text[-1]) and not _is_cjk(token.strip()[:1] or " ")):
            text += " " + token.strip()
        else:
            text += token.strip()
    return text.strip()


def _is_cjk(character: str) -> bool:
    return bool(character) and (
        "\u4e00" <= character <= "\u9fff"
        or "\u3400" <= character <= "\u4dbf"
        or "\u3000" <= character <= "\u303f"
        or "\uff00" <= character <= "\uffef"
    )


def assign_speakers(utterances: list[Utterance], turns: list[SpeakerTurn]) -> list[Utterance]:
    """Give each utterance the speaker it overlaps most; an utterance whose words fall under different
    speakers is split where the speaker changes (words go to the speaker overlapping them most)."""
    result: list[Utterance] = []
    for utterance in utterances:
        if not utterance.words:
            speaker = _speaker_at(turns, utterance.start_ms, utterance.end_ms)
            result.append(utterance._replace(speaker=speaker))
            continue
        word_speakers = [
            _speaker_at(turns, w.start_ms, max(w.end_ms, w.start_ms + 1)) for w in utterance.words
        ]
        groups: list[tuple[int | None, list[Word]]] = []
        for word, speaker in zip(utterance.words, word_speakers, strict=True):
            if groups and groups[-1][0] == speaker:
                groups[-1][1].append(word)
            else:
                groups.append((speaker, [word]))
        groups = _absorb_instants(_absorb_single_words(groups))
        if len(groups) == 1:
            result.append(utterance._replace(speaker=groups[0][0]))
            continue
        for index, (speaker, words) in enumerate(groups):
            start = utterance.start_ms if index == 0 else words[0].start_ms
            end = utterance.end_ms if index == len(groups) - 1 else words[-1].end_ms
            result.append(
                utterance._replace(
                    text=_join_text(words), start_ms=start, end_ms=end, words=words, speaker=speaker
                )
            )
    return result


def _absorb_instants(groups: list[tuple[int | None, list[Word]]]) -> list[tuple[int | None, list[Word]]]:
    """Words without duration (times clamped together after a rewrite) cannot show a speaker change: they
    join the run before them (or after, at the start), so no split utterance is empty in time."""
    cleaned: list[tuple[int | None, list[Word]]] = []
    pending: list[Word] = []  # instants before the first run with a duration
    for speaker, words in groups:
        if words[-1].end_ms <= words[0].start_ms:
            if cleaned:
                cleaned[-1] = (cleaned[-1][0], cleaned[-1][1] + words)
            else:
                pending += words
            continue
        if cleaned and cleaned[-1][0] == speaker:
            cleaned[-1] = (speaker, cleaned[-1][1] + words)
        else:
            cleaned.append((speaker, pending + words))
        pending = []
    if pending:  # nothing had a duration: keep the groups as they were
        return groups
    return cleaned


def _absorb_single_words(groups: list[tuple[int | None, list[Word]]]) -> list[tuple[int | None, list[Word]]]:
    """A lone word between two runs of the same speaker is a boundary blur, not a speaker change."""
    if len(groups) < 3:
        return groups
    cleaned: list[tuple[int | None, list[Word]]] = []
    index = 0
    while index < len(groups):
        speaker, words = groups[index]
        if cleaned and index + 1 < len(groups) and len(words) == 1 and cleaned[-1][0] == groups[index + 1][0]:
            previous_speaker, previous_words = cleaned[-1]
            cleaned[-1] = (previous_speaker, previous_words + words + groups[index + 1][1])
            index += 2
            continue
        if cleaned and cleaned[-1][0] == speaker:
            cleaned[-1] = (speaker, cleaned[-1][1] + words)
        else:
            cleaned.append((speaker, list(words)))
        index += 1
    return cleaned


__all__ = ["DEFAULT_CONFIG", "DiarizationConfig", "SpeakerTurn", "assign_speakers", "diarize"]
