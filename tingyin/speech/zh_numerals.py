"""Chinese numerals written with Arabic digits, the way Chinese transcripts write them.

wetext's Mandarin ITN finds dates, times and measures well but writes them in a form no Chinese transcript
uses: 二零二四年三月十五号 → 2024/03/15, 下午三点十五分 → 3:15p.m., 四十八小时 → 48h, 三点五公斤 → 3.5kg, and
三点一刻 (a quarter past three) → 3.1刻, a score 一百一十七比一百一十六 → 117:116. The vendors' models
write the digits and keep the words (2024年3月15号, 下午3点15分, 48小时, 3.5公斤, 3点一刻, 117比116).
:func:`written_span` rewrites one such span that way: each run of numerals becomes digits, everything
else stays as said; :func:`written_form` decides per token which form a transcript uses.
"""

from __future__ import annotations

import re

DIGIT_VALUES = {
    "零": 0, "〇": 0, "一": 1, "幺": 1, "二": 2, "两": 2, "三": 3,
    "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9,
}  # fmt: skip
_SMALL_UNITS = {"十": 10, "百": 100, "千": 1000}
_LARGE_UNITS = (("亿", 10**8), ("万", 10**4))
_NUMERALS = "".join(DIGIT_VALUES) + "".join(_SMALL_UNITS) + "万亿"
_RUN = re.compile(f"[{_NUMERALS}]+")
# Tokens wetext tags as these kinds are written by ``written_span``; the others (cardinals, money,
# fractions) and percentages keep wetext's form, which is already the transcripts' (370万元, 1/3, 25%).
SPOKEN_FORM_KINDS = frozenset({"date", "time", "measure", "math"})


def cardinal(text: str) -> int | None:
    """The value of Chinese numerals (二十一 → 21, 一百零五 → 105, 一百五 → 150, 三万零五百 → 30500); None
    when ``text`` is not one number (三五 is a range, read as two)."""
    if not text:
        return None
    for mark, unit in _LARGE_UNITS:
        if mark in text:
            left, _, right = text.partition(mark)
            high = cardinal(left)
            low = cardinal(right) if right else 0
            if not high or low is None or low >= unit:
                return None
            return high * unit + low
    value = 0
    number: int | None = None  # the digit read since the last unit
    last_unit = 0
    after_zero = False  # 一百零五: the 零 says the five is units
    for ch in text:
        if ch in DIGIT_VALUES:
            if number not in (None, 0):
                return None
            after_zero = after_zero or number == 0
            number = DIGIT_VALUES[ch]
        elif ch in _SMALL_UNITS:
            unit = _SMALL_UNITS[ch]
            if number == 0 or (last_unit and unit >= last_unit):
                return None
            value += (1 if number is None else number) * unit
            number, last_unit, after_zero = None, unit, False
        else:
            return None
    if number:
        # 一百五 is 150 and 三千二 3200: a digit right after 百/千 (no 零 between) counts in the unit below.
        value += number * (last_unit // 10 if last_unit >= 100 and not after_zero else 1)
    return value


def _digit_string(text: str) -> str | None:
    """Numerals read digit by digit (二零二四 → 2024, 零五 → 05); None when ``text`` holds a unit."""
    if not all(ch in DIGIT_VALUES for ch in text):
        return None
    return "".join(str(DIGIT_VALUES[ch]) for ch in text)


def _written_number(run: str, *, digit_strings: bool) -> str | None:
    """One run of numerals as digits. ``digit_strings``: a run of two or more bare digits is read digit by
    digit (a year, the minutes of 三点零五分); else it is a range (三四线) and has no digit form."""
    digits = _digit_string(run)
    if len(run) > 1 and digits is not None:
        return digits if digit_strings else None
    value = cardinal(run)
    return None if value is None else str(value)


def written_form(kind: str, spoken: str, wetext_form: str) -> str:
    """How a transcript writes one token wetext tagged as ``kind``: ``spoken`` is what was said,
    ``wetext_form`` what wetext's verbalizer wrote. An approximate range (三五个 → 3~5个) stays as said;
    dates, times, measures and scores (三比二 → 3:2) get digits and keep their words, or stay as said when a
    numeral in them has no digit form; percentages and every other kind keep wetext's form."""
    if "~" in wetext_form:
        return spoken
    if kind in SPOKEN_FORM_KINDS and not spoken.startswith(("百分之", "千分之")):
        return written_span(spoken, kind) or spoken
    return wetext_form


def written_span(span: str, kind: str) -> str | None:
    """``span`` (a date, time, measure or score as wetext tags it) with its numerals as digits and its
    words kept; None when a run of numerals in it has no digit form (``written_form`` then keeps the span
    as said)."""
    digit_strings = kind in ("date", "time")
    out: list[str] = []
    position = 0
    for match in _RUN.finditer(span):
        if match.start() < position:
            continue  # the fraction of a decimal, written with its whole part
        run, after = match.group(), span[match.end() : match.end() + 1]
        out.append(span[position : match.start()])
        position = match.end()
        if after == "点" and kind == "measure":
            # A decimal point, unless a quarter follows (三点一刻 is a time): the fraction is the next run.
            rest = _RUN.match(span, match.end() + 1)
            if rest and span[rest.end() : rest.end() + 1] != "刻":
                whole = _written_number(run, digit_strings=False)
                fraction = _digit_string(rest.group())
                if whole is None or fraction is None:
                    return None
                out.append(f"{whole}.{fraction}")
                position = rest.end()
                continue
        if after == "刻" and run in ("一", "三"):
            out.append(run)  # 一刻, 三刻: quarters, said and written as words
            continue
        written = _written_number(run, digit_strings=digit_strings)
        if written is None:
            return None
        out.append(written)
    out.append(span[position:])
    return "".join(out)


__all__ = ["DIGIT_VALUES", "SPOKEN_FORM_KINDS", "cardinal", "written_form", "written_span"]
