"""Text post-processing of recognised speech: script (Traditional → Simplified), number form (ITN on/off),
punctuation (keep, insert at pauses, or strip).

Whisper writes Mandarin in either script and numbers mostly as digits, whatever the caller wants. These
functions bring its text to one form: Simplified Chinese always; digits with ITN on (wetext ITN); numbers in
words with ITN off (wetext TN: Chinese numerals for zh, English words for en).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from tingyin.speech.zh_numerals import written_form

_lock = threading.Lock()

# Chinese digit names when a number is read digit by digit (phone numbers, IDs, codes).
_ZH_DIGITS = dict(zip("0123456789", "零一二三四五六七八九", strict=True))
# Digit runs this long are codes or phone numbers, read digit by digit; shorter ones are quantities.
_DIGIT_BY_DIGIT_MIN = 7
_LONG_DIGITS = re.compile(r"(?<![0-9.])[0-9](?:[0-9 ]*[0-9])?(?![0-9.])")
_THOUSANDS = re.compile(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")
# A year: four digits before 年 (also "1990年代", "2015年后"), read digit by digit.
_YEAR = re.compile(r"(?<![0-9.])([12][0-9]{3})(?=年)")
# Full-width digits and signs (０-９, ％, ．) as ASCII, so number rules and wetext see them.
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF10, 0xFF1A)} | {0xFF05: ord("%"), 0xFF0E: ord(".")}
# English unit words wetext's ITN would abbreviate ("nineteen feet" -> "19 ft", "thirty inches" -> '30 "',
# "fifteen minutes" -> "15 min"): a transcript keeps them as spoken ("19 feet", as references and vendors
# write), so they are hidden from the grammar behind a mark it does not parse. "second" alone is mostly an
# ordinal.
_EN_UNIT = re.compile(
    r"\b(?:feet|foot|inch(?:es)?|miles?|yards?|(?:centi|milli|kilo)?met(?:er|re)s?|(?:kilo)?grams?|ounces?"
    r"|hours?|minutes?|seconds|(?<=\bone )second|(?:kilo|mega|giga)?hertz|(?:kilo|mega|giga|tera)?bytes?"
    r"|(?:kilo|mega)?watts?|volts?|square)\b",
    re.IGNORECASE,
)
# Chinese currency words likewise: wetext writes 五万元 as ¥50000 and 人民币五百元 as 人民币¥500; Chinese
# transcripts (and the vendors' ITN) keep the word after the digits: 50000元, 人民币500元, 50000美元.
_ZH_CURRENCY = re.compile("美元|欧元|英镑|日元|港元|港币|元")
# English ordinals below ten stay words ("the first time", "wait a second"), as English prose writes them,
# except for a day of a month ("May first" -> "May 1st", "the third of October" -> "the 3rd of October");
# wetext alone writes every ordinal in figures ("wait a 2nd"). After a tens word they are part of a larger
# ordinal ("twenty first" -> "21st").
_EN_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_EN_ONES = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_EN_SMALL_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth")
_EN_SMALL_ORDINAL = re.compile(rf"(?<![\w-])(?<!ty )(?:{'|'.join(_EN_SMALL_ORDINALS)})\b", re.IGNORECASE)
_EN_MONTH_BEFORE = re.compile(rf"\b(?:{_EN_MONTHS}) (?:the )?$", re.IGNORECASE)
_EN_MONTH_AFTER = re.compile(rf" of (?:{_EN_MONTHS})\b", re.IGNORECASE)
# wetext reads "twenty five" but not "twenty-five" (Whisper writes both).
_EN_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_EN_TENS_HYPHEN = re.compile(
    rf"\b({'|'.join(_EN_TENS)})-"
    rf"(?=(?:{'|'.join(_EN_ONES + _EN_SMALL_ORDINALS)})\b)",
    re.IGNORECASE,
)
# A clock time said as hour and minutes after a word that introduces one ("at ten thirty", "by eleven
# fifteen", "at nine oh five") is written 10:30; wetext reads the pair as one number (1030, 1115, 1005). Not
# before am/pm, which wetext reads as a time itself, nor before a unit or a count word ("at ten twenty
# dollars" is a price).
_EN_HOURS = (*_EN_ONES, "ten", "eleven", "twelve")
_EN_TEENS = (
    *_EN_HOURS[9:],
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
_EN_SMALL_NUMBER_BEFORE = re.compile(rf"\b(?:{'|'.join(_EN_HOURS)}) $", re.IGNORECASE)
_EN_MINUTE_TENS = _EN_TENS[:4]  # twenty to fifty
_EN_CLOCK = re.compile(
    rf"\b(at|by|until|till|around|before|after|from|since) ({'|'.join(_EN_HOURS)}) "
    rf"(oh ({'|'.join(_EN_ONES)})|({'|'.join(_EN_TEENS)})"
    rf"|({'|'.join(_EN_MINUTE_TENS)})(?:[ -]({'|'.join(_EN_ONES)}))?)\b"
    r"(?! (?:a\.?m\b|p\.?m\b|am\b|pm\b|o'clock|hundred|thousand|million|percent|dollars?|pounds?|cents?"
    r"|euros?|years?|times|people|feet|foot|inch|miles?|yards?|meters?|metres?|kilo|grams?))",
    re.IGNORECASE,
)
# "a quarter past ten" is the time 10:15: without the article, which wetext leaves ("a 10:15").
_EN_QUARTER_ARTICLE = re.compile(r"\ba (?=quarter (?:past|to|after) )", re.IGNORECASE)
# wetext writes "pm" as "p.m." and keeps the full stop after it: "at seven pm." -> "7:00 p.m.."
_DOUBLED_STOP = re.compile(r"(?<=\b[ap]\.m\.)\.", re.IGNORECASE)
_SPACE_BEFORE_MARK = re.compile(r"(?<=\S) +(?=[,.;:?!])")
_ZERO_PADDED_HOUR = re.compile(r"(?<![\d:])0(\d:\d\d)")  # wetext writes "five o'clock" as 05:00
# wetext's tagged text: ``kind { key: "value" ... }`` per token.
_TAG = re.compile(r'(\w+) \{((?:\s*\w+: "(?:[^"\\]|\\.)*")*)\s*\}')
_TAG_FIELD = re.compile(r'(\w+): "((?:[^"\\]|\\.)*)"')
_UNIT_MARK = "\u2063"  # INVISIBLE SEPARATOR: never in recognised text, a word character to no grammar
_SPACED_PERCENT = re.compile(r"(?<=[0-9]) %")
_ZH_DIGIT_GAP = re.compile(r"(?<=[0-9]) (?=[0-9])")
_CJK_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK = re.compile(f"[{_CJK_RANGES}]")
# A Chinese character, or a word of another script.
_COMPARED_UNIT = re.compile(f"[{_CJK_RANGES}]|[^\\W_{_CJK_RANGES}]+")
_CJK_GAP = re.compile(f"(?<=[{_CJK_RANGES}])\\s+(?=[{_CJK_RANGES}])")
_ASCII_PUNCT_TO_ZH = {",": "，", "?": "？", "!": "！", ";": "；", ":": "："}
SENTENCE_END = "。？！.?!"


@lru_cache(maxsize=1)
def _opencc() -> Any:
    from opencc import OpenCC

    return OpenCC("t2s")


@lru_cache(maxsize=8)
def _normalizer(lang: str, operator: str) -> Any:
    from wetext import Normalizer

    return Normalizer(lang=lang, operator=operator)


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


_FULL_WIDTH_ALNUM = {
    code: code - 0xFEE0 for code in [*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B)]
}


# Whisper sometimes writes the "small form variants" of punctuation (﹐﹑﹒﹖…, U+FE50-FE6B, meant for
# vertical text): their ordinary forms (NFKC) instead, which the punctuation rules below know.
_SMALL_FORMS = {
    code: unicodedata.normalize("NFKC", chr(code))
    for code in range(0xFE50, 0xFE6C)
    if unicodedata.normalize("NFKC", chr(code)) != chr(code)
}


def units(text: str) -> list[str]:
    """``text`` as compared unit by unit: each Chinese character and each word of another script, Simplified
    and lower case, without punctuation."""
    return _COMPARED_UNIT.findall(to_simplified(text).lower())


def clean(text: str) -> str:
    """Drop broken characters (a multi-byte character cut by a length cap) and write full-width Latin
    letters and digits, and small punctuation forms, as their ordinary forms."""
    return text.replace("\ufffd", "").translate(_FULL_WIDTH_ALNUM).translate(_SMALL_FORMS)


def to_simplified(text: str) -> str:
    """Traditional → Simplified Chinese (other scripts pass through unchanged)."""
    if not has_cjk(text):
        return text
    return _converted_to_simplified(text)


# The second pass asks about the same candidate texts again and again (pooling, guards, scoring): on a 601 s
# recording 10,000 conversions of 3,400 texts, 0.16 s in the converter (pure Python) without this cache.
@lru_cache(maxsize=8192)
def _converted_to_simplified(text: str) -> str:
    with _lock:  # the converter keeps internal state
        return str(_opencc().convert(text))


def _read_digit_runs(text: str) -> str:
    """Read long digit runs (phone numbers, codes; spaces between groups allowed) digit by digit."""

    def replace(match: re.Match[str]) -> str:
        digits = match.group(0).replace(" ", "")
        if len(digits) < _DIGIT_BY_DIGIT_MIN and " " not in match.group(0).strip():
            return match.group(0)
        if len(digits) < 4:
            return match.group(0)
        return "".join(_ZH_DIGITS[d] for d in digits)

    text = _YEAR.sub(lambda m: "".join(_ZH_DIGITS[d] for d in m.group(1)), text)
    return _LONG_DIGITS.sub(replace, text)


def _between_quotes(text: str, normalize: Callable[[str], str]) -> str:
    """``normalize`` applied to the pieces of ``text`` between ASCII double quotes, each with the spaces
    around it kept. wetext cannot take the quote itself: its English grammar then fails on the whole text
    (a transcript with "chummage" in quotes kept every number in words) and its Mandarin one writes it
    escaped (他说\\"你好\\")."""
    pieces = []
    for piece in text.split('"'):
        core = piece.strip()
        start = len(piece) - len(piece.lstrip())
        pieces.append(piece[:start] + (normalize(core) if core else "") + piece[start + len(core) :])
    return '"'.join(pieces)


def _normalize(text: str, lang: str, operator: str) -> str:
    """wetext TN/ITN; on text its grammar cannot parse (it asserts on some inputs) the text stays as is."""
    if '"' in text:
        return _between_quotes(text, lambda piece: _normalize(piece, lang, operator))
    try:
        with _lock:
            return str(_normalizer(lang, operator).normalize(text))
    except Exception:  # a normalisation failure must not lose the transcript
        return text


@lru_cache(maxsize=1024)
def _zh_itn(text: str) -> str:
    """wetext's Mandarin ITN, token by token, each token written as Chinese transcripts write it
    (:func:`tingyin.speech.zh_numerals.written_form`: 2024年3月15号, 下午3点15分, 48小时 where wetext alone
    writes 2024/03/15, 3:15p.m., 48h)."""
    if '"' in text:
        return _between_quotes(text, _zh_itn)
    try:
        with _lock:
            from wetext import utils as wetext

            tagged = wetext.tag(text.strip(), "zh", "itn")
            tokens = [(m.group(1), m.group(0), _TAG_FIELD.findall(m.group(2))) for m in _TAG.finditer(tagged)]
            said = [
                "".join(value for key, value in fields if key != "preserve_order") for _, _, fields in tokens
            ]
            if "".join(said) != text.strip():
                # Tokens that do not spell the text (a form this parser does not know): wetext's own output.
                return str(_normalizer("zh", "itn").normalize(text))
            out: list[str] = []
            for (kind, token, _), spoken in zip(tokens, said, strict=True):
                if kind == "char":
                    out.append(spoken)
                    continue
                wetext_form = wetext.verbalize(wetext.reorder(token, "zh", "itn"), "zh", "itn")
                out.append(written_form(kind, spoken, wetext_form))
            return "".join(out)
    except Exception:  # a normalisation failure must not lose the transcript
        return text


def numbers_to_words(text: str, language: str) -> str:
    """ITN off: numbers written as words (Chinese numerals for zh/yue, English words for en)."""
    text = text.translate(_FULL_WIDTH)
    if not any("0" <= ch <= "9" for ch in text):
        return text
    lang = "zh" if language in ("zh", "yue", "zh-en") or has_cjk(text) else "en"
    text = _THOUSANDS.sub("", text)
    if lang == "zh":
        text = _read_digit_runs(text)
        if not any("0" <= ch <= "9" for ch in text):
            return text
    result = _normalize(text, lang, "tn")
    return result.replace("幺", "一") if lang == "zh" else result


def numbers_to_digits(text: str, language: str) -> str:
    """ITN on: numbers, dates, money, percentages as digits and symbols; units and currencies stay words
    ("19 feet", "15 minutes", "50000元"), a percentage is "25%"."""
    lang = "zh" if language in ("zh", "yue", "zh-en") or has_cjk(text) else "en"
    text = text.replace(_UNIT_MARK, "")
    if lang == "zh":
        shielded = _ZH_CURRENCY.sub(lambda match: _UNIT_MARK + match.group(), text)
        digits = _zh_itn(shielded).replace(_UNIT_MARK, "")
        # wetext splits a number read digit by digit into groups at places no speaker paused (七五六五六零零八
        # -> 7565 6008, 九三五七五六五三 -> 93575 653); Chinese transcripts write it whole, as the vendors do.
        return _ZH_DIGIT_GAP.sub("", digits) if not _ZH_DIGIT_GAP.search(text) else digits
    shielded = _EN_CLOCK.sub(_clock_time, _EN_QUARTER_ARTICLE.sub("", text))
    shielded = _EN_TENS_HYPHEN.sub(_unhyphenated, shielded)
    shielded = _EN_UNIT.sub(lambda match: _UNIT_MARK + match.group(), shielded)
    shielded = _EN_SMALL_ORDINAL.sub(_shield_unless_date, shielded)
    digits = _normalize(shielded, lang, "itn").replace(_UNIT_MARK, "")
    if not _SPACE_BEFORE_MARK.search(text):
        digits = _SPACE_BEFORE_MARK.sub("", digits)  # wetext leaves a space before the mark after a number
    digits = _ZERO_PADDED_HOUR.sub(r"\1", digits)
    if not _DOUBLED_STOP.search(text):
        digits = _DOUBLED_STOP.sub("", digits)
    return _SPACED_PERCENT.sub("%", digits)


def _clock_time(match: re.Match[str]) -> str:
    """ "at ten thirty" as "at 10:30" (``_EN_CLOCK``'s groups: the word before, hour, minutes, and which
    form the minutes took)."""
    before, hour, _, oh_ones, teens, tens, ones = match.groups()
    if oh_ones:
        minutes = _EN_ONES.index(oh_ones.lower()) + 1
    elif teens:
        minutes = 10 + _EN_TEENS.index(teens.lower())
    else:
        minutes = 20 + 10 * _EN_MINUTE_TENS.index(tens.lower())
        minutes += _EN_ONES.index(ones.lower()) + 1 if ones else 0
    return f"{before} {_EN_HOURS.index(hour.lower()) + 1}:{minutes:02d}"


def _unhyphenated(match: re.Match[str]) -> str:
    """ "twenty-five" as "twenty five", which wetext reads; not after a number up to twelve ("one
    thirty-six feet" is two numbers, which wetext would take for the time 1:36)."""
    if _EN_SMALL_NUMBER_BEFORE.search(match.string[: match.start()]):
        return match.group()
    return match.group(1) + " "


def _shield_unless_date(match: re.Match[str]) -> str:
    """A small ordinal, hidden from wetext unless it is a day of a month ("May first", "the third of
    October")."""
    before = match.string[: match.start()]
    after = match.string[match.end() :]
    if _EN_MONTH_BEFORE.search(before) or _EN_MONTH_AFTER.match(after):
        return match.group()
    return _UNIT_MARK + match.group()


def is_punctuation(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


def strip_punctuation(text: str) -> str:
    """Remove punctuation; in Chinese text the spaces it leaves are removed too, English keeps word spaces.

    An apostrophe inside a word ("don't") and a decimal point or colon between digits stay."""
    out = []
    for i, ch in enumerate(text):
        if is_punctuation(ch):
            prev = text[i - 1] if i else ""
            nxt = text[i + 1] if i + 1 < len(text) else ""
            inside_word = ch in "'’" and prev.isalpha() and nxt.isalpha()
            inside_number = ch in ".:" and prev.isdigit() and nxt.isdigit()
            # 114,300 stays one number (a thousands separator), never "114 300".
            inside_number = inside_number or (ch == "," and _THOUSANDS.match(text, i) is not None)
            if inside_word or inside_number:
                out.append(ch)
            elif ch in "-" and prev.isalnum() and nxt.isalnum() and not has_cjk(prev + nxt):
                out.append(" ")
            else:
                out.append(" ")
        else:
            out.append(ch)
    return join_tokens("".join(out).split())


def join_tokens(tokens: list[str]) -> str:
    """Join pieces with a space only between two non-CJK pieces (Chinese is written without spaces)."""
    result = ""
    for token in tokens:
        if not token:
            continue
        if result and not _CJK.match(result[-1]) and not _CJK.match(token[0]):
            result += " "
        result += token
    return result


def to_chinese_punctuation(text: str) -> str:
    """Chinese text's punctuation: ASCII marks after Chinese characters become full-width ('.' becomes '。'),
    and so do those ending a number or Latin word when Chinese, a space or the end follows (42589945. →
    42589945。, 3.5%, 达到 → 3.5%，达到; a '.' only after a digit: U.S. keeps its points); no space stays
    between two Chinese characters (Whisper writes 火鸟 爱 概念车 for 火鸟II概念车)."""
    text = _CJK_GAP.sub("", text)
    out = []
    for i, ch in enumerate(text):
        prev = text[i - 1] if i else ""
        nxt = text[i + 1] if i + 1 < len(text) else ""
        after_chinese = bool(prev) and bool(_CJK.match(prev))
        ends_latin = prev.isascii() and (prev.isalnum() or prev in "%)]")
        closes_latin = ends_latin and (not nxt or nxt.isspace() or bool(_CJK.match(nxt)))
        if ch == "." and (after_chinese or (closes_latin and prev.isdigit())):
            out.append("。")
            continue
        if ch in _ASCII_PUNCT_TO_ZH and (after_chinese or closes_latin):
            out.append(_ASCII_PUNCT_TO_ZH[ch])
            continue
        out.append(ch)
    return "".join(out).replace("。 ", "。").replace("， ", "，").replace("？ ", "？").replace("！ ", "！")


def ends_sentence(text: str) -> bool:
    return bool(text) and text.rstrip()[-1:] in SENTENCE_END


def end_with(text: str, mark: str) -> str:
    """Append ``mark`` unless the text already ends with punctuation."""
    stripped = text.rstrip()
    if not stripped or is_punctuation(stripped[-1]):
        return stripped
    return stripped + mark
