"""The music tagging core behind the SAMI ``MusicTagging`` adapter: audio in, the inner payload out.

``analyse_music`` runs the taggers once per model, refuses non-music, and scores each requested task type;
``MusicAnalysis.to_payload()`` builds the inner ``payload`` JSON object of seed 004 so the HTTP adapter only
decodes the request and wraps this dict (``json.dumps``) in ``{task_id, namespace, payload, data, status_code,
status_text}``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tingyin.audio.decode import AudioTooLong, AudioTooShort
from tingyin.config import get_settings
from tingyin.errors import InvalidRequest
from tingyin.music import features, taxonomy
from tingyin.music.detector import DETECTOR_MODELS, MusicDecision, is_music
from tingyin.music.tagger import EMBED_DIM, TaggerOutput, TagScores, run_patches

MAX_SECONDS = 600.0  # SAMI: 音频时长限制小于等于10分钟
MIN_SECONDS = 0.5
DEFAULT_TOP_NUM = 1  # seed 004: extra.top_num, "默认值 1"
SAMPLE_RATE = features.SAMPLE_RATE
log = logging.getLogger(__name__)
LANGUAGE_ID_PATCHES = 10  # at most 30 s of the most vocal patches go to Whisper (its window)


class NotMusic(InvalidRequest):
    """The audio is not music (speech, noise or silence); MusicTagging does not support it."""

    code = "not_music"

    def __init__(self, message: str | None = None, *, decision: MusicDecision | None = None) -> None:
        super().__init__(message)
        self.decision = decision


@dataclass(frozen=True)
class TaskResult:
    """One SAMI task's answer: ``tags``, their probabilities ``pred`` in the same order, its embedding, and
    which of the answered tags no model can score (always 0)."""

    task_type: str
    tags: tuple[str, ...]
    pred: np.ndarray
    embed: np.ndarray | None
    unscored: tuple[str, ...] = ()

    @property
    def pred_dim(self) -> int:
        return len(self.tags)

    @property
    def embed_dim(self) -> int:
        return 0 if self.embed is None else len(self.embed)


@dataclass(frozen=True)
class MusicAnalysis:
    """Everything the SAMI inner payload needs, plus the evidence behind it."""

    results: tuple[TaskResult, ...]
    enable_tag: bool
    enable_embed: bool
    decision: MusicDecision
    duration_s: float
    vocal_probability: float
    language: str | None  # Whisper's top language on the vocal parts; None for instrumental tracks

    @property
    def pred(self) -> np.ndarray:
        """All tasks' probabilities, concatenated in task order (each task's slice is ``pred_dim`` long)."""
        return np.concatenate([r.pred for r in self.results]) if self.results else np.zeros(0, np.float32)

    @property
    def embed(self) -> np.ndarray | None:
        """All tasks' embeddings, concatenated in task order, when ``enable_embed``."""
        if not self.enable_embed:
            return None
        return np.concatenate([r.embed for r in self.results if r.embed is not None])

    def to_payload(self) -> dict[str, Any]:
        """The inner payload object of seed 004: ``pred``, optional ``embed``, ``task_flow.result[...]``."""
        payload: dict[str, Any] = {"pred": _floats(self.pred)}
        embed = self.embed
        if embed is not None:
            payload["embed"] = _floats(embed)
        results = []
        for result in self.results:
            item: dict[str, Any] = {"task_type": result.task_type, "pred_dim": result.pred_dim}
            if self.enable_embed:
                item["embed_dim"] = result.embed_dim
            output: dict[str, Any] = {}
            if self.enable_tag:
                output["tags"] = list(result.tags)
                if result.unscored:
                    output["unscored_tags"] = list(result.unscored)
            item["task_output"] = output
            results.append(item)
        payload["task_flow"] = {"result": results}
        return payload


def _floats(values: np.ndarray) -> list[float]:
    return [round(float(v), 8) for v in values]


def _check_request(audio: np.ndarray, task_types: Sequence[str], top_num: int | None) -> np.ndarray:
    if isinstance(task_types, str) or not task_types:
        raise InvalidRequest("task_flow.task must list at least one task_type")
    taxonomy.check_task_types(task_types)
    if top_num is not None and (isinstance(top_num, bool) or not isinstance(top_num, int) or top_num < 1):
        raise InvalidRequest(f"extra.top_num must be a positive integer, got {top_num!r}")
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim == 2 and 1 in samples.shape:
        samples = samples.reshape(-1)
    if samples.ndim != 1:
        raise InvalidRequest(f"music audio must be mono 16 kHz samples, got shape {samples.shape}")
    duration = len(samples) / SAMPLE_RATE
    if duration > MAX_SECONDS + 0.05:
        raise AudioTooLong(f"audio lasts {duration:.1f} s, more than the limit of {MAX_SECONDS:g} s")
    if duration < MIN_SECONDS:
        raise AudioTooShort(f"audio lasts {duration:.2f} s; music tagging needs at least {MIN_SECONDS:g} s")
    if not np.all(np.isfinite(samples)):
        raise InvalidRequest("audio samples contain NaN or infinity")
    return samples


def _language(
    samples: np.ndarray, mtt: TaggerOutput, patch_index: np.ndarray
) -> tuple[str, dict[str, float]]:
    """Whisper language ID on the most vocal 3 s patches (in time order), folded onto SAMI codes;
    ``patch_index``: which patch of the track each row of ``mtt`` is."""
    from tingyin.speech.models import speech_models

    per_patch = taxonomy.vocal_patches(mtt)
    vocal = np.flatnonzero(per_patch >= 0.5)
    if len(vocal) == 0:
        vocal = np.array([int(np.argmax(per_patch))])
    chosen = np.sort(patch_index[vocal[np.argsort(-per_patch[vocal])][:LANGUAGE_ID_PATCHES]])
    hop = features.PATCH_FRAMES * features.HOP
    clip = np.concatenate([samples[i * hop : (i + 1) * hop] for i in chosen])
    with speech_models().use() as recognizer:
        language, _probability, all_probs = recognizer.detect_language(clip)
    return language, taxonomy.sami_language_probs(all_probs)


def whisper_languages() -> list[str]:
    """The language codes the configured Whisper model can answer (whisper-base: 99, no Cantonese)."""
    from tingyin.speech.models import speech_models

    with speech_models().use() as recognizer:
        return recognizer.runner.languages()


def _select(
    tags: Sequence[str], probs: Sequence[float], known: Sequence[bool], top_num: int
) -> tuple[tuple[str, ...], np.ndarray]:
    """The answered tags and their probabilities.

    ``top_num`` at least the task's size: every tag in the vendor's order, so ``pred`` reads by position.
    Smaller: at most ``top_num`` tags with evidence (``known``), most probable first; a tag nothing scored
    (or the language of an instrumental track) is never offered as the best one."""
    values = np.asarray(probs, dtype=np.float32)
    if top_num >= len(tags):
        return tuple(tags), values
    candidates = np.flatnonzero(np.asarray(known, dtype=bool))
    order = candidates[np.argsort(-values[candidates], kind="stable")][:top_num]
    return tuple(tags[i] for i in order), values[order]


def analyse_music(
    audio: np.ndarray,
    *,
    task_types: Sequence[str],
    enable_tag: bool = True,
    enable_embed: bool = False,
    top_num: int | None = None,
    refuse_non_music: bool | None = None,
) -> MusicAnalysis:
    """Tag 16 kHz mono float32 ``audio`` for the SAMI ``task_types``.

    ``top_num`` (default 1, as the seed): tags per task; at least a task's size gives its whole vocabulary
    in the vendor's order. ``refuse_non_music`` (default: the ``music_non_music`` setting) refuses speech,
    noise and silence with ``NotMusic``; otherwise they are tagged like music.

    Raises ``InvalidRequest`` for an unknown task type, ``TaskNotSupported`` for one this server does not
    answer, a bad ``top_num`` or audio outside 0.5 s – 10 min (``AudioTooLong``/``AudioTooShort``), and
    ``NotMusic`` when the detector finds speech, noise or silence.
    """
    samples = _check_request(audio, task_types, top_num)
    top = DEFAULT_TOP_NUM if top_num is None else top_num
    if refuse_non_music is None:
        refuse_non_music = get_settings().music_non_music == "refuse"
    patch_index = features.spread_patches(len(samples), get_settings().music_max_patches)
    patch_input = features.log_mel_patches(samples, patch_index)
    outputs: dict[str, TaggerOutput] = {}
    for model in taxonomy.models_needed(task_types) | set(DETECTOR_MODELS):
        outputs[model] = run_patches(patch_input, model)
    del patch_input
    decision = is_music(samples, taggers=outputs)
    if not decision.is_music:
        if refuse_non_music:
            raise NotMusic(f"the audio is not music: {decision.reason}", decision=decision)
        log.info("tagging audio the music detector refused (%s): music_non_music=tag", decision.reason)
    scores: dict[str, TagScores] = {model: output.tag_scores() for model, output in outputs.items()}
    vocal = taxonomy.vocal_probability(scores["MTT_musicnn"])

    language: str | None = None
    language_probs: dict[str, float] | None = None
    results: list[TaskResult] = []
    for task_type in task_types:
        spec = taxonomy.task_spec(task_type)
        embedding_model = "MSD_musicnn" if spec.kind == "msd" else "MTT_musicnn"
        embed = outputs[embedding_model].embedding.astype(np.float32) if enable_embed else None
        known: Sequence[bool] = spec.scored()
        if spec.kind == "vocal":
            probs: list[float] = [vocal, 1.0 - vocal]
        elif spec.kind in ("mtt", "msd"):
            probs = [float(v) for v in scores["MTT_musicnn" if spec.kind == "mtt" else "MSD_musicnn"].scores]
        elif spec.kind == "language":
            if vocal >= 0.5 and language_probs is None:
                language, language_probs = _language(samples, outputs["MTT_musicnn"], patch_index)
            known = spec.scored(whisper_languages())
            # An instrumental track has no language: every language (and "other") scores 0, none is offered.
            probs = [language_probs.get(tag, 0.0) if language_probs else 0.0 for tag in spec.vocabulary]
            if language_probs is None:
                known = [False] * len(spec.vocabulary)
        else:
            probs = [
                taxonomy.tag_probability(tag, scores) if ok else 0.0
                for tag, ok in zip(spec.vocabulary, known, strict=True)
            ]
        chosen_tags, chosen_probs = _select(spec.vocabulary, probs, known, top)
        unscored = spec.unscored(whisper_languages() if spec.kind == "language" else ())
        answered_unscored = tuple(tag for tag in chosen_tags if tag in unscored)
        results.append(TaskResult(task_type, chosen_tags, chosen_probs, embed, answered_unscored))
    return MusicAnalysis(
        results=tuple(results),
        enable_tag=enable_tag,
        enable_embed=enable_embed,
        decision=decision,
        duration_s=len(samples) / SAMPLE_RATE,
        vocal_probability=vocal,
        language=language,
    )


def build_payload(
    audio: np.ndarray,
    *,
    task_types: Sequence[str],
    enable_tag: bool = True,
    enable_embed: bool = False,
    top_num: int | None = None,
) -> dict[str, Any]:
    """``analyse_music(...).to_payload()``: the inner SAMI payload dict for the adapter to ``json.dumps``."""
    return analyse_music(
        audio, task_types=task_types, enable_tag=enable_tag, enable_embed=enable_embed, top_num=top_num
    ).to_payload()


__all__ = [
    "EMBED_DIM",
    "MAX_SECONDS",
    "MusicAnalysis",
    "NotMusic",
    "TaskResult",
    "analyse_music",
    "build_payload",
]
