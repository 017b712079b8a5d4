"""SAMI MusicTagging task types, and which of their tags our models can honestly score.

Each SAMI tag is produced only when a model output means the same thing (``TAG_SOURCES``); a tag no model
knows is left out of the task's ``tags`` and ``pred`` instead of being invented. Where both taggers know a tag
(e.g. MTT "rock" and MSD "rock") the larger probability is used. Language tags come from Whisper's language
identification on the vocal parts of the track; a track without vocals gets no language (every language
probability 0). docs/music.md lists what is produced and what is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tingyin.errors import InvalidRequest
from tingyin.music.tagger import TaggerOutput, TagScores

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


@dataclass(frozen=True)
class TaskSpec:
    """A SAMI task type: its full vendor vocabulary, and the part of it we produce."""

    task_type: str
    vocabulary: tuple[str, ...]
    kind: str  # "vocal", "tags", "language", "mtt", "msd"

    def produced(self, language_codes: Sequence[str] = ()) -> tuple[str, ...]:
        if self.kind == "vocal":
            return self.vocabulary
        if self.kind == "mtt":
            from tingyin.music.tagger import MTT_LABELS

            return MTT_LABELS
        if self.kind == "msd":
            from tingyin.music.tagger import MSD_LABELS

            return MSD_LABELS
        if self.kind == "language":
            known = {WHISPER_TO_SAMI_LANG.get(code, code) for code in language_codes}
            return tuple(tag for tag in self.vocabulary if tag in known or tag == "other")
        return tuple(tag for tag in self.vocabulary if tag in TAG_SOURCES)


TASKS: dict[str, TaskSpec] = {
    spec.task_type: spec
    for spec in (
        TaskSpec("MusicTaggingVocal", SAMI_VOCAL, "vocal"),
        TaskSpec("MusicTaggingMood10", SAMI_MOOD10, "tags"),
        TaskSpec("MusicTaggingMood", SAMI_MOOD6, "tags"),
        TaskSpec("MusicTaggingGenre34", SAMI_GENRE34, "tags"),
        # Genre17 and Lang24 appear in the vendor's request examples without a published vocabulary; we
        # answer them with the tags of Genre34 / Lang30 that we can score.
        TaskSpec("MusicTaggingGenre17", SAMI_GENRE34, "tags"),
        TaskSpec("MusicTaggingTheme24", SAMI_THEME24, "tags"),
        TaskSpec("MusicTaggingTheme", SAMI_THEME14, "tags"),
        TaskSpec("MusicTaggingLang30", SAMI_LANG30, "language"),
        TaskSpec("MusicTaggingLang24", SAMI_LANG30, "language"),
        # The raw 50 tags of each tagger: MusicTaggingMTT is in the vendor's example request; MSD is ours.
        TaskSpec("MusicTaggingMTT", (), "mtt"),
        TaskSpec("MusicTaggingMSD", (), "msd"),
    )
}


def task_spec(task_type: str) -> TaskSpec:
    spec = TASKS.get(task_type)
    if spec is None:
        raise InvalidRequest(f"unknown MusicTagging task_type {task_type!r}; supported: {', '.join(TASKS)}")
    return spec


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
