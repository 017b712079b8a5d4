"""SAMI MusicTagging task types, and which of their tags our models can honestly score.

A client reads ``pred`` by position against a task's documented tag list, so a task is either answered with
its whole documented vocabulary in the documented order, or refused as not supported (``TaskNotSupported``):
never a shorter list that shifts the labels. A SAMI tag is scored only when a model output means the same
thing (``TAG_SOURCES``); the tags no model knows score 0 and are named in the answer. Where both taggers know
a tag (e.g. MTT "rock" and MSD "rock") the larger probability is used. Language tags come from Whisper's
language identification on the vocal parts of the track; a track without vocals has no language.
docs/music.md lists what is scored and what is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tingyin.errors import InvalidRequest
from tingyin.music.tagger import MSD_LABELS, MTT_LABELS, TaggerOutput, TagScores

# The SAMI vocabularies, in the vendor's order (seed 004, appendix, and the payload example).
SAMI_VOCAL = ("vocal", "non_vocal")
SAMI_MOOD10 = (
    "cute",
    "dynamic",
    "tense",
    "weird",
    "sorrow",
    "chill",
    "excited",
    "happy",
    "angry",
    "romantic",
)
SAMI_MOOD6 = ("sorrow", "chill", "excited", "happy", "angry", "romantic")  # "MusicTaggingMood" in the example
SAMI_GENRE34 = (
    "pop", "rock", "electronic", "hiphop_rap", "reggae", "mb_soul", "Metal", "Jazz", "Blues", "Country",
    "Folk", "Indie", "K_pop", "Indie_Pop", "Muslim", "Indo_Christian", "Bollywood", "Bollywood_Retro",
    "Urban_Punjabi_Pop", "Tamil_Film_Music", "Kannada_Film_Music", "Telugu_Film_Music",
    "Indian_Independent", "Malayalam_Film_Music", "Sertanejo", "Baile_Funk", "Gospel", "Samba", "Pagode",
    "MPB", "Forro", "Axe", "Reggaeton", "Brazilian_Punk",
)  # fmt: skip
SAMI_THEME24 = (
    "kadian", "DIY", "family", "sound_effect", "campus", "ACG", "game", "pet", "Beauty_fashion", "travel",
    "Chinese_Style", "cool", "disco_dance", "vlog", "dance", "dj", "food", "love", "rainy", "sport",
    "spring", "summer", "sunny", "funny",
)  # fmt: skip
SAMI_THEME14 = (
    "kadian", "DIY", "family", "sound_effect", "campus", "ACG", "game", "pet", "Beauty_fashion", "travel",
    "Chinese_Style", "cool", "dancale", "vlog",
)  # fmt: skip
SAMI_LANG30 = (
    "en", "es", "fr", "pt", "it", "de", "cmn", "id", "ja", "hi", "pa", "tl", "ru", "tr", "ms", "th", "ko",
    "pl", "ar", "ta", "te", "ml", "kn", "bn", "gu", "mr", "bho", "yue", "minnan", "other",
)  # fmt: skip

# SAMI tag -> (model, model tag) outputs meaning the same thing; the tag's probability is their maximum.
TAG_SOURCES: dict[str, tuple[tuple[str, str], ...]] = {
    # moods
    "weird": (("MTT_musicnn", "weird"),),
    "sorrow": (("MSD_musicnn", "sad"),),
    "chill": (("MSD_musicnn", "chill"), ("MSD_musicnn", "chillout")),
    "happy": (("MSD_musicnn", "happy"),),
    # genres
    "pop": (("MTT_musicnn", "pop"), ("MSD_musicnn", "pop")),
    "rock": (("MTT_musicnn", "rock"), ("MSD_musicnn", "rock")),
    "electronic": (
        ("MTT_musicnn", "electronic"),
        ("MSD_musicnn", "electronic"),
        ("MSD_musicnn", "electronica"),
    ),
    "hiphop_rap": (("MSD_musicnn", "Hip-Hop"),),
    "mb_soul": (("MSD_musicnn", "rnb"), ("MSD_musicnn", "soul")),
    "Metal": (("MTT_musicnn", "metal"), ("MSD_musicnn", "metal"), ("MSD_musicnn", "heavy metal")),
    "Jazz": (("MSD_musicnn", "jazz"),),
    "Blues": (("MSD_musicnn", "blues"),),
    "Country": (("MTT_musicnn", "country"), ("MSD_musicnn", "country")),
    "Folk": (("MSD_musicnn", "folk"),),
    "Indie": (("MSD_musicnn", "indie"),),
    "Indie_Pop": (("MSD_musicnn", "indie pop"),),
    # themes
    "dance": (("MTT_musicnn", "dance"), ("MSD_musicnn", "dance")),
}

# MTT tags that say "there is a voice" and those that say "there is none" (MusicTaggingVocal).
VOCAL_TAGS = (
    "vocal", "vocals", "singing", "voice", "male vocal", "female vocal", "male voice", "female voice",
    "male", "female", "man", "woman", "choir", "choral", "opera",
)  # fmt: skip
NO_VOCAL_TAGS = ("no vocal", "no vocals", "no voice")

# Whisper language code -> SAMI code, where they differ.
WHISPER_TO_SAMI_LANG = {"zh": "cmn", "jw": "other"}


# A task is served when at least this share of its documented tags can be scored; below it, a client would
# get mostly zeros, so the task is refused as not supported instead.
MIN_SCORED_SHARE = 1 / 3


@dataclass(frozen=True)
class TaskSpec:
    """A SAMI task type: its full vendor vocabulary (``pred`` order), and which of its tags we can score.

    A served task always answers its whole documented vocabulary in the documented order (``pred_dim`` = the
    documented size) when the client asks for every tag; the tags no model can score are 0 and named in
    ``unscored``. ``not_supported`` says why a task is refused instead (no published vocabulary, or too few
    of its tags scorable)."""

    task_type: str
    vocabulary: tuple[str, ...]
    kind: str  # "vocal", "tags", "language", "mtt", "msd"
    not_supported: str | None = None

    def scored(self, language_codes: Sequence[str] = ()) -> tuple[bool, ...]:
        """Per tag of ``vocabulary``: can a model score it? (Language: the Whisper model's own codes.)"""
        if self.kind in ("vocal", "mtt", "msd"):
            return tuple(True for _ in self.vocabulary)
        if self.kind == "language":
            known = {WHISPER_TO_SAMI_LANG.get(code, code) for code in language_codes}
            return tuple(tag in known or tag == "other" for tag in self.vocabulary)
        return tuple(tag in TAG_SOURCES for tag in self.vocabulary)

    def unscored(self, language_codes: Sequence[str] = ()) -> tuple[str, ...]:
        flags = self.scored(language_codes)
        return tuple(tag for tag, ok in zip(self.vocabulary, flags, strict=True) if not ok)


class TaskNotSupported(InvalidRequest):
    """A known SAMI task type this server does not answer (rather than answering it with shifted labels)."""

    code = "task_not_supported"


def _tags_task(task_type: str, vocabulary: tuple[str, ...]) -> TaskSpec:
    scorable = sum(tag in TAG_SOURCES for tag in vocabulary)
    reason = None
    if scorable < MIN_SCORED_SHARE * len(vocabulary):
        reason = (
            f"only {scorable} of its {len(vocabulary)} tags can be scored by this server's models"
            if scorable
            else f"none of its {len(vocabulary)} tags can be scored by this server's models"
        )
    return TaskSpec(task_type, vocabulary, "tags", reason)


NO_VOCABULARY = "the vendor publishes no tag list for it, so its tags and their order are unknown"
TASKS: dict[str, TaskSpec] = {
    spec.task_type: spec
    for spec in (
        TaskSpec("MusicTaggingVocal", SAMI_VOCAL, "vocal"),
        _tags_task("MusicTaggingMood10", SAMI_MOOD10),
        _tags_task("MusicTaggingMood", SAMI_MOOD6),  # the 6-tag list of the seed's payload example
        _tags_task("MusicTaggingGenre34", SAMI_GENRE34),
        _tags_task("MusicTaggingTheme24", SAMI_THEME24),
        _tags_task("MusicTaggingTheme", SAMI_THEME14),  # the 14-tag list of the seed's payload example
        TaskSpec("MusicTaggingLang30", SAMI_LANG30, "language"),
        # Genre17 and Lang24 appear only in the vendor's request example, without a tag list.
        TaskSpec("MusicTaggingGenre17", (), "tags", NO_VOCABULARY),
        TaskSpec("MusicTaggingLang24", (), "language", NO_VOCABULARY),
        # The raw 50 tags of each tagger: MusicTaggingMTT is in the vendor's example request; MSD is ours.
        TaskSpec("MusicTaggingMTT", MTT_LABELS, "mtt"),
        TaskSpec("MusicTaggingMSD", MSD_LABELS, "msd"),
    )
}


def task_spec(task_type: str) -> TaskSpec:
    """The spec of a task type this server answers; ``InvalidRequest`` for an unknown one and
    ``TaskNotSupported`` for a known one it does not answer."""
    spec = TASKS.get(task_type)
    if spec is None:
        supported = [name for name, task in TASKS.items() if task.not_supported is None]
        raise InvalidRequest(
            f"unknown MusicTagging task_type {task_type!r}; supported: {', '.join(supported)}"
        )
    if spec.not_supported is not None:
        raise TaskNotSupported(f"MusicTagging task_type {task_type} is not supported: {spec.not_supported}")
    return spec


def check_task_types(task_types: Sequence[str]) -> None:
    """Refuse a request naming an unknown task type (``InvalidRequest``) or any task this server does not
    answer (one ``TaskNotSupported`` naming all of them, so a client learns every problem at once)."""
    refused = []
    for task_type in task_types:
        spec = TASKS.get(task_type)
        if spec is None:
            task_spec(task_type)  # raises "unknown task_type"
        elif spec.not_supported is not None:
            refused.append(f"{task_type} ({spec.not_supported})")
    if refused:
        raise TaskNotSupported(f"MusicTagging task_type not supported: {'; '.join(refused)}")


def models_needed(task_types: Sequence[str]) -> set[str]:
    """Which taggers the task types read (MTT always: the music detector and the vocal decision use it)."""
    needed = {"MTT_musicnn"}
    for task_type in task_types:
        spec = task_spec(task_type)
        if spec.kind in ("tags", "msd"):
            needed.add("MSD_musicnn")
    return needed


def vocal_probability(mtt: TagScores) -> float:
    """P(vocal) from MTT_musicnn: the strongest voice tag against the mean of the "no vocal" tags."""
    voice = max(mtt[tag] for tag in VOCAL_TAGS)
    no_voice = float(np.mean([mtt[tag] for tag in NO_VOCAL_TAGS]))
    return voice / (voice + no_voice + 1e-9)


def vocal_patches(mtt: TaggerOutput) -> np.ndarray:
    """Per 3 s patch P(vocal), same rule as :func:`vocal_probability`."""
    labels = list(mtt.labels)
    voice = mtt.taggram[:, [labels.index(t) for t in VOCAL_TAGS]].max(axis=1)
    no_voice = mtt.taggram[:, [labels.index(t) for t in NO_VOCAL_TAGS]].mean(axis=1)
    return np.asarray(voice / (voice + no_voice + 1e-9))


def tag_probability(tag: str, scores: dict[str, TagScores]) -> float:
    return max(scores[model][model_tag] for model, model_tag in TAG_SOURCES[tag])


def sami_language_probs(whisper_probs: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Whisper's language distribution folded onto SAMI codes; languages SAMI does not list go to "other"."""
    sami = set(SAMI_LANG30)
    folded: dict[str, float] = {}
    for code, probability in whisper_probs:
        target = WHISPER_TO_SAMI_LANG.get(code, code)
        if target not in sami:
            target = "other"
        folded[target] = folded.get(target, 0.0) + float(probability)
    return folded
