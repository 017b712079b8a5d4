"""What a caller can ask of the recognizer, validated once where the request enters.

``DecodeOptions`` is frozen and checked on construction: a bad value fails at the API's door with a clear
message, never halfway through a long job. Every API builds one (vendor adapters translate their own fields);
the recognizer echoes the options it used in its results. Hot words are parsed and checked here only.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from tingyin.errors import InvalidRequest
from tingyin.validation import FrozenModel

LANGUAGES = ("auto", "zh", "en", "yue", "zh-en")
Language = Literal["auto", "zh", "en", "yue", "zh-en"]
Accuracy = Literal["default", "accurate"]
Task = Literal["transcribe", "translate"]
MAX_HOT_WORD_CHARS = 50
MAX_HOT_WORDS = 1000
MAX_VOCABULARY = 10_000
MAX_PROMPT_CHARS = 1000  # Whisper keeps the last 223 tokens of the previous-text context anyway
DEFAULT_HOT_WORD_WEIGHT = 5.0


class HotWord(FrozenModel):
    """A phrase to favour (weight > 0) or suppress (weight < 0); weights run from -10 to 10 (Qiniu's
    factor)."""

    text: Annotated[str, Field(min_length=1, max_length=MAX_HOT_WORD_CHARS)]
    weight: Annotated[float, Field(ge=-10.0, le=10.0)] = DEFAULT_HOT_WORD_WEIGHT

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("a hot word is empty")
        return value

    @field_validator("weight")
    @classmethod
    def _weight(cls, value: float) -> float:
        if math.isnan(value):
            raise ValueError("a hot word weight is not a number")
        return value

    @classmethod
    def parse_list(cls, spec: str | None) -> tuple[HotWord, ...]:
        """``"phrase:weight,phrase"`` (weight optional, default 5) as hot words."""
        words = []
        for item in (spec or "").split(","):
            if not item.strip():
                continue
            text, _, weight = item.rpartition(":") if ":" in item else (item, "", "")
            try:
                value = float(weight) if weight.strip() else DEFAULT_HOT_WORD_WEIGHT
            except ValueError:
                raise InvalidRequest(f"hot word weight must be a number: {item.strip()!r}") from None
            words.append(cls.parse(text=text, weight=value))
        return tuple(words)


class DecodeOptions(FrozenModel):
    """Options of one recognition. Defaults are the tuned ones; every field is checked on construction.

    ``model`` names one of the ASR models the operator enabled (``TINGYIN_ASR_MODELS``); None is the default.
    ``vocabulary`` lists phrases that must come out exactly when spoken (Baidu's custom vocabulary: they
    act as
    hot words of weight 8)."""

    language: Language = "auto"
    itn: bool = Field(default=True, description="numbers, dates and money as digits (False: as words)")
    punctuation: bool = True
    hot_words: Annotated[tuple[HotWord, ...], Field(max_length=MAX_HOT_WORDS)] = ()
    vocabulary: Annotated[tuple[str, ...], Field(max_length=MAX_VOCABULARY)] = ()
    word_timestamps: bool = True
    model: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    beam_size: Annotated[int, Field(ge=1, le=10)] = 5
    batch_size: Annotated[int, Field(ge=1, le=64)] = 8
    second_pass: bool = Field(default=True, description="Mandarin: rescore n-best and sound-alike rewrites")
    # 4 n-best x 3 rewrites: zh_dev 13.08 -> 12.87% CER over 3 x 2 (5 x 3: the same; 3 x 3: 13.16%), about
    # +10% CPU on a 5 s clip when every candidate got a teacher-forced score (now the likeliest 4 a chunk do,
    # rescoring.SCORED_CANDIDATES)
    second_pass_nbest: Annotated[int, Field(ge=1, le=10)] = 4
    second_pass_rewrites: Annotated[int, Field(ge=0, le=20)] = 3
    accuracy: Accuracy | None = Field(
        default=None,
        description="Mandarin: 'accurate' adds a neural language model to the second pass (slower); "
        "None: the server's default (TINGYIN_ASR_ACCURACY)",
    )
    task: Task = Field(
        default="transcribe",
        description="transcribe (text in the spoken language) or translate (Whisper's English translation)",
    )
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        default=0.0, description="0: beam search; above 0: sampling at this temperature"
    )
    prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] | None = Field(
        default=None, description="text the speech follows on from: spelling, names, style"
    )

    @field_validator("vocabulary")
    @classmethod
    def _vocabulary(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = []
        for phrase in value:
            phrase = phrase.strip()
            if not phrase:
                raise ValueError("a vocabulary phrase is empty")
            if len(phrase) > MAX_HOT_WORD_CHARS:
                raise ValueError(f"vocabulary phrase {phrase[:20]!r}... is longer than {MAX_HOT_WORD_CHARS}")
            cleaned.append(phrase)
        return tuple(cleaned)

    def with_changes(self, **changes: Any) -> DecodeOptions:
        """A copy with ``changes`` applied and validated again."""
        return DecodeOptions.parse(self.model_dump(), **changes)

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, value: float) -> float:
        if math.isnan(value):
            raise ValueError("temperature is not a number")
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str | None) -> str | None:
        return (value or "").strip() or None

    @property
    def translating(self) -> bool:
        """English text whatever the spoken language: the Mandarin-only machinery stays off."""
        return self.task == "translate"


__all__ = ["LANGUAGES", "Accuracy", "DecodeOptions", "HotWord", "Language", "Task"]
