"""Values as documents write them, read into what the schema asks for.

The decoder lets the model copy a date, a number or an enum value the way the document spells it
(`March 12, 2024`, `2024年7月10日`, `2,943.50`, `1.2万`, `¥`, `US dollars`); the functions here
turn that spelling into the schema's form (ISO date, JSON number, enum code). A spelling that can
be read more than one way is read one way *and* said so in a note; one that cannot be read
raises `UnreadableError`, and the field goes back to the decoder under the schema's own constraint.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

MONTHS = {
    name: n
    for n, names in enumerate(
        [
            ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"),
            ("may",), ("june", "jun"), ("july", "jul"), ("august", "aug"),
            ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"),
            ("december", "dec"),
        ],
        1,
    )
    for name in names
}  # fmt: skip
ZH_DIGITS = {c: n for n, c in enumerate("〇一二三四五六七八九")} | {"零": 0, "两": 2}
ZH_UNITS = {"十": 10, "百": 100, "千": 1000}
EN_NUMBERS = {
    w: n
    for n, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
} | {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "a": 1, "an": 1}
# Scale words after a number: "3.5 million", "1.2万", "3亿".
SCALES = {
    "thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "mn": 1e6, "billion": 1e9, "bn": 1e9,
    "千": 1e3, "万": 1e4, "萬": 1e4, "百万": 1e6, "千万": 1e7, "亿": 1e8, "億": 1e8,
}  # fmt: skip
# Currency spellings -> ISO 4217 codes; "¥" is yuan or yen, and which is said in a note.
CURRENCY_WORDS = {
    "$": "USD", "us$": "USD", "usd": "USD", "dollar": "USD", "dollars": "USD",
    "us dollar": "USD", "us dollars": "USD", "美元": "USD", "美金": "USD",
    "¥": "CNY", "￥": "CNY", "元": "CNY", "人民币": "CNY", "人民币元": "CNY", "rmb": "CNY",
    "yuan": "CNY", "cny": "CNY", "renminbi": "CNY",
    "€": "EUR", "eur": "EUR", "euro": "EUR", "euros": "EUR", "欧元": "EUR",
    "£": "GBP", "gbp": "GBP", "pound": "GBP", "pounds": "GBP", "pounds sterling": "GBP",
    "sterling": "GBP", "英镑": "GBP",
    "jpy": "JPY", "yen": "JPY", "日元": "JPY", "円": "JPY",
}  # fmt: skip
_MARKS = sorted(CURRENCY_WORDS, key=len, reverse=True)
# How close (characters) a currency mark must stand to a figure to be the figure's currency:
# `15 million US dollars`, `人民币15,000,000元`.
_NEAR = 12
_NUMBER = re.compile(r"[-+]?\d[\d,.'\s]*")
_NUMERIC_DATE = re.compile(r"^(\d{1,4})\s*[/.\-]\s*(\d{1,2})\s*[/.\-]\s*(\d{1,4})$")
_ZH_DATE = re.compile(r"^([\d〇零一二三四五六七八九]{2,4})年([\d〇一二三四五六七八九十]{1,3})月"
                      r"([\d〇一二三四五六七八九十]{1,3})[日号]?$")  # fmt: skip
_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
# Date spellings as they stand in running text, for counting how often a document states a date.
DATE_MENTION = re.compile(
    r"\d{1,4}\s*[/.\-]\s*\d{1,2}\s*[/.\-]\s*\d{1,4}"
    r"|[\d〇零一二三四五六七八九]{2,4}年[\d〇一二三四五六七八九十]{1,3}月[\d〇一二三四五六七八九十]{1,3}"
    rf"|(?:the\s+)?\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTH})\b\.?,?\s+\d{{4}}"
    rf"|\b(?:{_MONTH})\b\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}",
    re.IGNORECASE,
)


def currency_marks(text: str) -> set[str]:
    """The ISO codes of the currency marks and words in `text` (longest spelling first)."""
    return {code for code, _ in _currency_mentions(text)}


def amount_currencies(text: str) -> set[str]:
    """The ISO codes of the currency marks and words written next to a figure in `text`."""
    return {code for code, near in _currency_mentions(text) if re.search(r"\d", near)}


def _currency_mentions(text: str) -> Iterator[tuple[str, str]]:
    """Each currency mark or word in `text` as (ISO code, the text around it), longest first."""
    rest = unicodedata.normalize("NFKC", text).casefold()
    for code, (start, end) in currency_spans(text):
        yield code, rest[max(0, start - _NEAR) : end + _NEAR]


def currency_spans(text: str) -> Iterator[tuple[str, tuple[int, int]]]:
    """Each currency mark or word in `text` (NFKC) as (ISO code, its span), longest first."""
    rest = unicodedata.normalize("NFKC", text).casefold()
    for mark in _MARKS:
        pattern = re.escape(mark)
        if mark[0].isascii() and mark[0].isalpha():
            pattern = rf"(?<![a-z]){pattern}(?![a-z])"
        for match in list(re.finditer(pattern, rest)):
            yield CURRENCY_WORDS[mark], match.span()
        # Blanked, not removed: `元` inside `人民币元` is not counted again, positions stay.
        rest = re.sub(pattern, lambda m: " " * len(m.group()), rest)


def is_currency_enum(values: Iterable[Any]) -> bool:
    """Whether an enum's options (null aside) are all currency codes `CURRENCY_WORDS` knows."""
    codes = set(values) - {None}
    return bool(codes) and codes <= set(CURRENCY_WORDS.values())


class UnreadableError(ValueError):
    """The model's text cannot be read as the value the schema asks for."""


def _clean(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().strip(".").strip()


def zh_int(text: str) -> int:
    """An integer in Arabic or Chinese numerals (二〇二四, 十二, 二十一, 三百五十)."""
    if text.isdigit():
        return int(text)
    if all(c in ZH_DIGITS for c in text):  # digit by digit, as years are written
        return int("".join(str(ZH_DIGITS[c]) for c in text))
    total, digit = 0, 0
    for c in text:
        if c in ZH_DIGITS:
            digit = ZH_DIGITS[c]
        elif c in ZH_UNITS:
            total += (digit or 1) * ZH_UNITS[c]
            digit = 0
        else:
            raise UnreadableError(f"not a number: {text!r}")
    return total + digit


def parse_date(text: str) -> tuple[str, str | None]:
    """(ISO date, note) for a date as documents write it; raises `UnreadableError`."""
    raw = _clean(text)
    low = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", raw.lower()).replace(",", " ")
    low = re.sub(r"\b(the|of|on)\b", " ", low).replace(".", " ").strip() if re.search(
        "[a-z]", low) else low  # fmt: skip
    note = None
    if match := _ZH_DATE.match(raw.replace(" ", "")):
        year, month, day = (zh_int(g) for g in match.groups())
    elif match := _NUMERIC_DATE.match(raw):
        a, b, c = (int(g) for g in match.groups())
        if len(match.group(1)) == 4:
            year, month, day = a, b, c
        elif len(match.group(3)) == 4:
            year, month, day, note = _day_month(a, b, c, separator=raw[len(match.group(1))])
        else:
            raise UnreadableError(f"no four-digit year in {text!r}")
    else:
        year, month, day = _named_month_date(low, text)
    try:
        return date(year, month, day).isoformat(), note
    except ValueError as exc:
        raise UnreadableError(f"not a calendar date: {text!r}") from exc


def date_mentions(text: str) -> list[str]:
    """The ISO dates `text` states, one per mention, in any spelling `parse_date` reads."""
    found = []
    for match in DATE_MENTION.finditer(unicodedata.normalize("NFKC", text)):
        try:
            found.append(parse_date(match.group())[0])
        except UnreadableError:
            continue
    return found


def _day_month(a: int, b: int, year: int, separator: str) -> tuple[int, int, int, str | None]:
    if a > 12 >= b:
        return year, b, a, None
    if b > 12 >= a:
        return year, a, b, None
    if a == b:
        return year, a, b, None
    # Both readings are dates: slashes are read month-first (US), dots and dashes day-first.
    if separator == "/":
        return year, a, b, "ambiguous day/month order; read as month/day"
    return year, b, a, "ambiguous day/month order; read as day/month"


def _named_month_date(low: str, text: str) -> tuple[int, int, int]:
    words = re.findall(r"[a-z]+|\d+", low)
    months = [MONTHS[w] for w in words if w in MONTHS]
    numbers = [int(w) for w in words if w.isdigit()]
    years = [n for n in numbers if n >= 1000]
    days = [n for n in numbers if 1 <= n <= 31]
    if len(months) != 1 or len(years) != 1 or len(days) != 1:
        raise UnreadableError(f"not a date: {text!r}")
    return years[0], months[0], days[0]


def parse_number(text: str, *, integer: bool) -> tuple[int | float, bool]:
    """(number, whether its spelling changed) for a number as written; raises `UnreadableError`."""
    raw = _clean(text)
    low = raw.lower()
    if low in EN_NUMBERS or (raw and all(c in ZH_DIGITS or c in ZH_UNITS for c in raw)):
        value: float = EN_NUMBERS[low] if low in EN_NUMBERS else zh_int(raw)
        return _as_type(value, integer, text), True
    words = low.split()
    if words and words[0] in EN_NUMBERS and all(w.isalpha() for w in words):
        return _as_type(EN_NUMBERS[words[0]], integer, text), True  # "twelve years"
    if (zh := re.match(r"^([〇零一二两三四五六七八九十百千]+)", raw)) and not _NUMBER.search(raw):
        return _as_type(zh_int(zh.group(1).replace("两", "二")), integer, text), True
    match = _NUMBER.search(raw)
    if match is None:
        raise UnreadableError(f"no number in {text!r}")
    number = _separators(match.group().strip().rstrip(".,"))
    scale = _scale(raw[match.end() :])
    try:
        result = _as_type(float(number) * scale, integer, text)
    except ValueError as exc:
        raise UnreadableError(f"no number in {text!r}") from exc
    return result, raw != str(result)


def _separators(number: str) -> str:
    """`2,943.50` / `2.943,50` / `1 200` / `12'000` as plain digits with a decimal point."""
    digits = number.replace(" ", "").replace("'", "").replace("\u00a0", "")
    if "," in digits and "." in digits:
        decimal = "," if digits.rfind(",") > digits.rfind(".") else "."
        thousands = "." if decimal == "," else ","
        return digits.replace(thousands, "").replace(decimal, ".")
    if "," in digits:
        groups = digits.split(",")
        if all(len(g) == 3 for g in groups[1:]):
            return "".join(groups)
        if len(groups) == 2:
            return groups[0] + "." + groups[1]  # a decimal comma
        raise UnreadableError(f"cannot read separators in {number!r}")
    if digits.count(".") > 1:
        groups = digits.split(".")
        if all(len(g) == 3 for g in groups[1:]):
            return "".join(groups)
        raise UnreadableError(f"cannot read separators in {number!r}")
    return digits


def _scale(after: str) -> float:
    tail = after.strip().lower()
    for word in sorted(SCALES, key=len, reverse=True):
        rest = tail[len(word) : len(word) + 1]
        # An English word must end there ("3 m" is not "3 mm"); 万 and 亿 need no boundary.
        if tail.startswith(word) and (
            not word.isascii() or not rest.isascii() or not rest.isalpha()
        ):
            return SCALES[word]
    return 1.0


def _as_type(value: float, integer: bool, text: str) -> int | float:
    if integer:
        if value != int(value):
            raise UnreadableError(f"{text!r} is not a whole number")
        return int(value)
    return int(value) if value == int(value) and abs(value) < 2**53 else round(value, 10)


def match_enum(text: str, options: list[str]) -> tuple[str, str | None]:
    """(option, note) that `text` names: exact, by case, a currency spelling, or a unique part."""
    if text in options:
        return text, None
    key = _clean(text).casefold()
    by_fold = {o.casefold(): o for o in options}
    if key in by_fold:
        return by_fold[key], None
    code = CURRENCY_WORDS.get(key) or CURRENCY_WORDS.get(re.sub(r"[\d\s,.]", "", key))
    if code == "CNY" and key in ("¥", "￥") and "JPY" in options and "CNY" not in options:
        code = "JPY"
    if code is not None and code in options:
        note = "¥ is yuan or yen; read as yuan" if key in ("¥", "￥") and "JPY" in options else None
        return code, note
    inside = [o for fold, o in by_fold.items() if len(fold) > 2 and (fold in key or key in fold)]
    if len(inside) == 1 and key:
        return inside[0], f"{text!r} read as {inside[0]!r}"
    raise UnreadableError(f"{text!r} is none of {options}")
