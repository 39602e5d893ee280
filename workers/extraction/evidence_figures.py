"""Evidence checks on figures and dates: the document's numbers and dates against the model's.

Part of `evidence.py`'s checks (its docstring lists them all): a figure a power of ten off the
document's one figure, a total that is a part of a written sum, a count in the field's unit,
money against counts, a date the document never states, a date it states only as its own.
"""

from __future__ import annotations

import math
import re
from typing import Any

from qfleet.workers.extraction.evidence_base import branches, repair, value_kind
from qfleet.workers.extraction.fields import nullable
from qfleet.workers.extraction.items import Reading
from qfleet.workers.extraction.mentions import (
    UNITS,
    document_dates,
    number_mentions,
    unit_mentions,
)
from qfleet.workers.extraction.values import date_mentions

# A date field that asks for the document's own date (when it was printed, published, sent).
_OWN_DATE_FIELD = re.compile(r"(?i)print|publi|sent|post|updat|dispatch")
# A number field asking for a total, by its name or description.
_TOTAL = re.compile(r"(?i)\b(?:total|grand total|amount due|tax included)\b|合计|总计|总额|含税")


def rescale(reading: Reading, key: str, document: str) -> None:
    """A number the document never writes, a power of ten off the one amount it does write.

    The model converted a scale word itself (`1.2 million` → `1200000000`); the document's
    own figure, read by code, wins.
    """
    value = reading.values[key]
    if not isinstance(value, int | float) or isinstance(value, bool) or value == 0:
        return
    written = number_mentions(document)
    near = {n for n in written if n > 0 and math.log10(value / n) == round(math.log10(value / n))}
    if len(near) == 1 and value not in near:
        number = near.pop()
        note = f"the document writes {number:g}, not {value:g}; read from it"
        repair(reading, key, _figure(number), note)


def asks_total(key: str, node: dict[str, Any]) -> bool:
    """Whether a number field asks for a total (its name or description says so)."""
    words = " ".join([key, *(str(o.get("description", "")) for o in [node, *branches(node)])])
    return _TOTAL.search(re.sub(r"[_-]+", " ", words)) is not None


def count_unit(key: str) -> str | None:
    """The unit a number field's name counts in (`term_months`, `years_experience`), if any."""
    words = set(re.split(r"[_\W]+", key.casefold()))
    return next((u for u in UNITS if u in words or u.rstrip("s") in words), None)


def counted_in(reading: Reading, key: str, unit: str, document: str) -> None:
    """A count field takes the one count the document writes in the field's unit.

    `term_months` left null, or `years_experience` written as a figure the document never gives
    in years, where the document writes exactly one count in that unit (`runs for 24 months`,
    `工作经验十一年`): that count, `repaired`.
    """
    if key in reading.unreadable:
        return
    value = reading.values.get(key)
    counts = set(unit_mentions(document, unit))
    if len(counts) != 1 or value in counts:
        return
    count = counts.pop()
    repair(reading, key, count, f"the document writes one count in {unit}: {count:g}")


def whole_amount(reading: Reading, key: str, document: str) -> None:
    """A total that is one part of a sum the document writes takes the sum.

    Where the document writes amounts a, b and a + b (subtotal, tax, total: `3,090.76`,
    `401.80`, `3,492.56`), a field asking for a total that holds a or b holds a part; the one
    sum it belongs to is the total. A small model copies the first amount it meets.
    """
    value = reading.values.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return
    written = set(number_mentions(document))
    if value not in written:
        return
    by_cent = {round(w * 100): w for w in written}  # one pass, not every pair of figures
    sums = {
        whole
        for part in written
        if part > 0
        for cent in (round((value + part) * 100) + d for d in (-1, 0, 1))
        if (whole := by_cent.get(cent)) is not None
        and part < whole
        and abs(value + part - whole) <= 0.005
    }
    if len(sums) == 1:
        whole = sums.pop()
        note = f"{value:g} is a part of the document's sum {whole:g}; the total"
        repair(reading, key, _figure(whole), note)


def money_or_count(reading: Reading, props: dict[str, dict[str, Any]], document: str) -> None:
    """Money is written with a currency; a count is not.

    In an object with both an amount (a number field) and a count (an integer field), a
    nullable count holding a figure the document writes only as money (`120,000 euros`) is not
    a count, and a nullable amount holding the figure a count holds, which the document writes
    only without a currency (`参与人数: 60`), is not an amount: null, `repaired`. A small model
    copies the one figure it finds into both.
    """
    amounts = [k for k, node in props.items() if value_kind(node) == "number"]
    counts = [k for k, node in props.items() if value_kind(node) == "integer"]
    if not amounts or not counts:
        return
    money = set(number_mentions(document, money=True))
    bare = set(number_mentions(document, money=False))
    for key in counts:
        value = reading.values.get(key)
        if nullable(props[key]) and value is not None and value in money - bare:
            repair(reading, key, None, f"the document writes {value:g} only as money; null")
    for key in amounts:
        value = reading.values.get(key)
        held = value is not None and any(reading.values.get(c) == value for c in counts)
        if nullable(props[key]) and held and value in bare - money:
            repair(reading, key, None, f"the document writes {value:g} only as a count; null")


def document_own_dates(reading: Reading, props: dict[str, dict[str, Any]], document: str) -> None:
    """A date the document states only as its own (printed, published, sent on) is not a fact.

    A small model answers a date field with the first date it meets, often the e-mail's `Date:`
    line or "This copy was printed on ...". Unless the field asks for such a date (its name says
    printed, published, sent), it takes the one reported date no other date field holds; with
    none, a nullable field becomes null. Both `repaired`.
    """
    own = document_dates(document)
    if not own:
        return
    dates = [k for k, node in props.items() if value_kind(node) == "date"]
    reported = set(date_mentions(document)) - own
    for key in dates:
        value = reading.values.get(key)
        if value not in own or _OWN_DATE_FIELD.search(key):
            continue
        held = {reading.values.get(other) for other in dates if other != key}
        free = reported - held
        if len(free) == 1:
            note = f"{value} is the document's own date; the one other stated"
            repair(reading, key, free.pop(), note)
        elif not free and nullable(props[key]):
            repair(reading, key, None, f"{value} is the document's own date; null")


def unstated_date(reading: Reading, key: str, node: dict[str, Any], stated: list[str]) -> None:
    """A date the document never states, in any spelling: the one a part off it, else null.

    The model slipped on a year, month or day (`2025-09-12` where the profile says
    `1994年09月12日`): the one stated date that differs from it in a single part is taken. With
    no such date (or several), a nullable date becomes null, as an ungrounded string does.
    """
    value = reading.values.get(key)
    parts = value.split("-") if isinstance(value, str) else []
    if len(parts) != 3 or value in stated:
        return
    near = {d for d in stated if sum(a != b for a, b in zip(d.split("-"), parts, strict=True)) == 1}
    if len(near) == 1:
        date = near.pop()
        repair(reading, key, date, f"{value} is not stated; the document's {date}")
    elif nullable(node):
        repair(reading, key, None, f"the document states no {value}; null")


def _figure(number: float) -> int | float:
    """A figure as JSON writes it: `3000`, not `3000.0`."""
    return int(number) if number.is_integer() else number
