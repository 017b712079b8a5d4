"""Scoring of transcripts: normalisation (as ../shared/testdata/README.md says) and edit distances.

Chinese: CER over characters after removing punctuation and spaces, Traditional → Simplified, numbers in
Chinese numerals on both sides (the references write them so; "幺" and "一" count as the same digit).
English: WER over words after lower-casing, numbers as words, and removing punctuation.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from tingyin.speech.textnorm import numbers_to_words, strip_punctuation, to_simplified

_NUMBER_AND = re.compile(
    r"\b(hundred|thousand|million|billion) and (?=(one|two|three|four|five|six|seven|eight|nine|ten|eleven|"
    r"twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|"
    r"seventy|eighty|ninety)\b)"
)


class EditCounts(NamedTuple):
    """Levenshtein alignment counts of a hypothesis against a reference."""

    substitutions: int
    deletions: int
    insertions: int
    reference_length: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions


def normalize_zh(text: str) -> str:
    """Characters that count for Chinese CER (no punctuation, no spaces, Simplified, numbers in hanzi)."""
    text = to_simplified(text)
    text = numbers_to_words(text, "zh")
    text = strip_punctuation(text).replace(" ", "").lower()
    return text.replace("幺", "一")


def normalize_en(text: str) -> str:
    """Words that count for English WER, space separated (lower case, numbers as words, no punctuation)."""
    text = text.replace("’", "'")
    text = numbers_to_words(text, "en")
    text = strip_punctuation(text.replace("-", " ")).lower()
    # "six hundred and twenty nine" and "six hundred twenty nine" are the same number.
    text = _NUMBER_AND.sub(r"\1 ", text)
    return " ".join(text.split())


def scoring_units(text: str, metric: str) -> list[str]:
    """The units an error rate counts: characters without spaces (CER; a Latin word counts letter by letter,
    so "S A M S U N G" and "Samsung" agree) or words (WER)."""
    if metric == "WER":
        return normalize_en(text).split()
    return list(normalize_zh(text))


def edit_counts(reference: list[str], hypothesis: list[str]) -> EditCounts:
    """Minimum-edit alignment counts (substitutions, deletions, insertions)."""
    n, m = len(reference), len(hypothesis)
    # Each cell: (total errors, substitutions, deletions, insertions); ties prefer substitutions.
    previous = [(j, 0, 0, j) for j in range(m + 1)]
    for i in range(1, n + 1):
        current = [(i, 0, i, 0)]
        for j in range(1, m + 1):
            if reference[i - 1] == hypothesis[j - 1]:
                best = previous[j - 1]
            else:
                sub = previous[j - 1]
                dele = previous[j]
                ins = current[j - 1]
                options = (
                    (sub[0] + 1, sub[1] + 1, sub[2], sub[3]),
                    (dele[0] + 1, dele[1], dele[2] + 1, dele[3]),
                    (ins[0] + 1, ins[1], ins[2], ins[3] + 1),
                )
                best = min(options, key=lambda cell: cell[0])
            current.append(best)
        previous = current
    _, subs, dels, inserted = previous[m]
    return EditCounts(subs, dels, inserted, n)


def error_rate(references: list[str], hypotheses: list[str], metric: str) -> float:
    """Corpus-level CER or WER: total edits over total reference units."""
    errors = 0
    length = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        counts = edit_counts(scoring_units(reference, metric), scoring_units(hypothesis, metric))
        errors += counts.errors
        length += counts.reference_length
    return errors / max(1, length)
