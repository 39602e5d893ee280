"""How documents of the development set write dates, amounts and currencies.

Every spelling here is one a real document uses; the gold is always the normalised value, so a
model (or decoder) that cannot read `2024年7月10日` or `1.2万` loses the field.
"""

from __future__ import annotations

import random
from datetime import date

MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
_ZH_DIGITS = "〇一二三四五六七八九"


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _zh_number(n: int) -> str:
    """1..31 in Chinese numerals, as dates write them (十, 十二, 二十一)."""
    tens, ones = divmod(n, 10)
    text = ("" if tens < 2 else _ZH_DIGITS[tens]) + ("十" if tens else "")
    return text + (_ZH_DIGITS[ones] if ones else "")


def en_date(day: date, rng: random.Random) -> str:
    """An English spelling of `day`; slashes only when the day cannot be read as a month."""
    month = MONTHS[day.month - 1]
    spellings = [
        f"{month} {day.day}, {day.year}",
        f"{day.day} {month} {day.year}",
        f"{month[:3]}{'.' if len(month) > 3 else ''} {day.day}, {day.year}",
        f"the {_ordinal(day.day)} of {month} {day.year}",
        day.isoformat(),
    ]
    if day.day > 12:
        spellings.append(f"{day.month}/{day.day}/{day.year}")
    return rng.choice(spellings)


def zh_date(day: date, rng: random.Random) -> str:
    """A Chinese spelling of `day`."""
    year = "".join(_ZH_DIGITS[int(c)] for c in str(day.year))
    spellings = [
        f"{day.year}年{day.month}月{day.day}日",
        f"{day.year}年{day.month:02d}月{day.day:02d}日",
        f"{day.year}/{day.month}/{day.day}",
        f"{day.year}.{day.month:02d}.{day.day:02d}",
        f"{year}年{_zh_number(day.month)}月{_zh_number(day.day)}日",
        day.isoformat(),
    ]
    return rng.choice(spellings)


EN_CURRENCY = {
    "USD": ["$", "US$", "USD ", "US dollars"],
    "EUR": ["€", "EUR ", "euros"],
    "GBP": ["£", "GBP ", "pounds sterling"],
    "JPY": ["JPY ", "yen"],
    "CNY": ["CNY ", "RMB ", "yuan"],
}
ZH_CURRENCY = {
    "CNY": ["¥", "人民币", "元", "RMB"],
    "USD": ["美元", "US$"],
    "EUR": ["欧元"],
    "JPY": ["日元"],
    "GBP": ["英镑"],
}


def _grouped(amount: float) -> str:
    return f"{amount:,.2f}" if amount != int(amount) else f"{int(amount):,}"


def en_amount(amount: float, currency: str, rng: random.Random) -> str:
    """`amount` in `currency`, written as English business text does."""
    mark = rng.choice(EN_CURRENCY[currency])
    if amount >= 1_000_000 and amount % 100_000 == 0 and rng.random() < 0.6:
        number = f"{amount / 1_000_000:g} million"
    else:
        number = _grouped(amount)
    if mark.endswith(" ") or len(mark) <= 3:
        return f"{mark}{number}"
    return f"{number} {mark}"


def zh_amount(amount: float, currency: str, rng: random.Random) -> str:
    """`amount` in `currency`, written as Chinese business text does (万, 亿, 元)."""
    mark = rng.choice(ZH_CURRENCY[currency])
    if amount >= 100_000_000 and amount % 10_000_000 == 0:
        number = f"{amount / 100_000_000:g}亿"
    elif amount >= 10_000 and amount % 1_000 == 0 and rng.random() < 0.7:
        number = f"{amount / 10_000:g}万"
    else:
        number = _grouped(amount)
    if mark in ("¥", "US$"):
        return f"{mark}{number}"
    if mark == "元":
        return f"{number}元"
    if mark == "人民币":
        return f"人民币{number}元"
    return f"{number}{mark}"
