"""Checking read values against the document they came from.

The model copies values; these checks hold the copies to the document and to each other:

- A nullable string (a plain string field, not a date, number or enum) whose text does not occur
  in the document was not stated there: it becomes null, and its provenance is `repaired` (code
  chose the value). Small models fill such fields with plausible inventions (an e-mail address
  built from the name, an employer the profile never names).
- A list item that holds several items as the document wrote them is split: one that contains the
  enumeration comma `、`, or one that ends a comma list the document writes as `A, B and C`
  (the model split at the commas and kept "B and C"). Provenance `normalised`, with a note.
- A currency field (an enum of ISO codes) agrees with the mark the model copied with the
  object's amounts (`¥44,086.19`): one mark among them wins, `normalised`. Else, where the
  document writes its amounts in one currency only (`人民币15,000,000元`), a field saying another,
  or null beside a read amount, takes it; a nullable currency the document shows no sign of
  becomes null (`USD` for an article with no amount). Both `repaired`.
- A free-text string (or list item) that does not occur in the document but is within an edit or
  two of exactly one passage of it takes that passage's spelling (`nearest.py`), `repaired`.
- One occurrence, one field: a nullable field holding the value a non-nullable field holds, where
  the document states that value once (a date in any spelling; other values by the copied
  text), becomes null, `repaired`: the issue date copied again as the due date.
- `X and Y` / `X和Y` in one list item is split when the document also names X and Y apart, or
  when it is the list's only item and joins two capitalised names with the word "and".
- A total that is one part of a sum the document writes (subtotal + tax = total) takes the sum.
- A date the document states only as its own (printed, published, e-mailed on) gives way to the
  one reported date no other date field holds; with none, a nullable date becomes null.
- A count field named in a unit (`term_months`) takes the one count the document writes in it.
- A nullable string naming what another field holds (a party as the governing city), which the
  document states once, becomes null.
- A string enum answered with its first option, which the document never names, takes the one
  other option the document does name (`lease` → `employment`), `repaired`.
- A number the document never writes (copied text or a bare number), a power of ten off the
  one figure it does write (the model converted `1.2 million` itself), takes the document's
  figure, `repaired`.
- A date the document never states takes the one stated date a single part off it; with none,
  a nullable date becomes null. `repaired`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from qfleet.workers.extraction.fields import copy_kind, node_types, nullable, properties
from qfleet.workers.extraction.items import Reading
from qfleet.workers.extraction.nearest import nearest_passage
from qfleet.workers.extraction.values import (
    UNITS,
    UnreadableError,
    amount_currencies,
    currency_marks,
    date_mentions,
    document_dates,
    is_currency_enum,
    match_enum,
    number_mentions,
    unit_mentions,
)

_AND = re.compile(r"^(.+?),?\s+(?:and|&)\s+(.+)$")
# One conjunction joining two parts of a list item: "X and Y", "X & Y", "X 和 Y", "X与Y".
# A date field that asks for the document's own date (when it was printed, published, sent).
_OWN_DATE_FIELD = re.compile(r"(?i)print|publi|sent|post|updat|dispatch")
# A number field asking for a total, by its name or description.
_TOTAL = re.compile(r"(?i)\b(?:total|grand total|amount due|tax included)\b|合计|总计|总额|含税")
# Two capitalised names joined by the word "and" (not `&`, which names use: "AT&T").
_NAMES_AND = re.compile(r"^([A-Z0-9][^,]*?)\s+and\s+([A-Z0-9][^,]*)$")
_JOINED = re.compile(r"^(.+?)(?:,?\s+(?:and|&)\s+|\s*(?:以及|和|与|及)\s*)(.+)$")


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()


def check_evidence(reading: Reading, schema: dict[str, Any], document: str) -> None:
    """Hold `reading`'s values to `document` (see the module docstring); changes it in place."""
    props = properties(schema)
    doc = _norm(document)
    for key, node in props.items():
        if key not in reading.values:
            continue
        _respell(reading, key, node, document)
        if _plain_nullable_string(node):
            _ground(reading, key, doc)
        elif _string_array(node):
            _split_items(reading, key, node, doc)
    _agree_currency(reading, props)
    _ground_currencies(reading, props, document)
    stated = date_mentions(document)
    for key, node in props.items():
        if _kind(node) in ("number", "integer") and _written(reading, key) not in doc:
            _rescale(reading, key, document)
        elif _kind(node) == "date" and _copied(reading, key) not in doc:
            _unstated_date(reading, key, node, stated)
    for key, node in props.items():
        if _kind(node) in ("number", "integer") and (unit := _unit(key)) is not None:
            _counted_in(reading, key, unit, document)
        if _kind(node) in ("number", "integer") and _asks_total(key, node):
            _whole_amount(reading, key, document)
    _document_own_dates(reading, props, document)
    _money_or_count(reading, props, document)
    _one_occurrence_one_field(reading, props, document)
    _held_elsewhere(reading, props, doc)
    for key, node in props.items():
        if key in reading.values and key not in reading.unreadable:
            _named_option(reading, key, node, doc)


def _note(reading: Reading, key: str, note: str) -> None:
    reading.notes[key] = "; ".join(filter(None, [reading.notes.get(key), note]))


def _options(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in node.get("anyOf", [node]) if o.get("type") != "null"]


def _plain_string(node: dict[str, Any]) -> bool:
    """Free text: a string with no format, pattern, enum or const (a name, a title)."""
    return all(
        "string" in node_types(o) and copy_kind(o) is None
        and not {"enum", "const", "format", "pattern"} & set(o)
        for o in _options(node)
    )  # fmt: skip


def _respell(reading: Reading, key: str, node: dict[str, Any], document: str) -> None:
    """A copy a character or two off the document's spelling takes the document's."""
    value = reading.values[key]
    if isinstance(value, str) and _plain_string(node):
        fixed: Any = nearest_passage(value, document) or value
    elif isinstance(value, list) and _string_array(node) and _plain_string(node["items"]):
        fixed = [(nearest_passage(v, document) or v) if isinstance(v, str) else v for v in value]
    else:
        return
    if fixed != value:
        reading.values[key] = fixed
        reading.provenance[key] = "repaired"
        _note(reading, key, "a misspelt copy takes the document's spelling")


def _plain_nullable_string(node: dict[str, Any]) -> bool:
    options = _options(node)
    return nullable(node) and all(
        "string" in node_types(o) and copy_kind(o) is None and "enum" not in o and "const" not in o
        for o in options
    )


def _ground(reading: Reading, key: str, doc: str) -> None:
    value = reading.values[key]
    if isinstance(value, str) and value.strip() and _norm(value) not in doc:
        reading.values[key] = None
        reading.provenance[key] = "repaired"
        _note(reading, key, f"{value!r} does not occur in the document; null")


def _string_array(node: dict[str, Any]) -> bool:
    items = node.get("items")
    return (
        node.get("type") == "array"
        and isinstance(items, dict)
        and items.get("type") == "string"
        and "enum" not in items
    )


def _split_items(reading: Reading, key: str, node: dict[str, Any], doc: str) -> None:
    items = reading.values[key]
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        return
    out: list[str] = []
    for n, item in enumerate(items):
        parts = [p.strip() for p in item.split("、") if p.strip()]
        tail = n > 0 and f"{_norm(items[n - 1])}, {_norm(item)}" in doc
        if len(parts) == 1 and tail and (match := _AND.match(item.strip())):
            # "B and C" after "A", where the document writes "A, B and C": the list's tail.
            parts = [match.group(1).strip(), match.group(2).strip()]
        elif len(parts) == 1:
            parts = _named_apart(item, doc, alone=len(items) == 1)
        out.extend(parts)
    out = list(dict.fromkeys(out))
    if out != items and len(out) <= node.get("maxItems", len(out)):
        reading.values[key] = out
        if reading.provenance.get(key) == "model":
            reading.provenance[key] = "normalised"
        split = len(out) > len(items)
        _note(reading, key, "items listed together split" if split else "items trimmed")


def _named_apart(item: str, doc: str, alone: bool = False) -> list[str]:
    """`X and Y` as two items when the document also names X and Y apart, else `[item]`.

    "Marks and Spencer" stays whole unless the document writes "Spencer" on its own too, or
    (`alone`) it is the list's only item and both sides are capitalised names joined by the word
    "and": a list answered with one entry that joins two names is the document's "X and Y"
    copied whole (`Port of Rotterdam and Vestas`), which the prompt's rule asks to split. A
    single "Marks and Spencer" is split too: the price of that rule.
    """
    match = _JOINED.match(item.strip())
    if match is None or _norm(item) not in doc:
        return [item]
    rest = doc.replace(_norm(item), " ")
    parts = [match.group(1).strip(), match.group(2).strip()]
    if all(len(_norm(p)) >= 2 and _norm(p) in rest for p in parts):
        return parts
    names = _NAMES_AND.match(item.strip())
    if alone and names and _norm(names.group(1)) != _norm(names.group(2)):
        return [names.group(1).strip(), names.group(2).strip()]
    return [item]


def _agree_currency(reading: Reading, props: dict[str, dict[str, Any]]) -> None:
    currency = [k for k, node in props.items() if _is_currency(node)]
    amounts = [k for k, node in props.items() if _is_amount(node)]
    if len(currency) != 1 or not amounts:
        return
    key = currency[0]
    marks: set[str] = set()
    for amount in amounts:
        raw = reading.raw.get(amount)
        if isinstance(raw, str) and amount in reading.values:
            marks |= currency_marks(raw)
    if len(marks) != 1 or key in reading.unreadable:
        return
    options = _enum_options(props[key])
    try:
        code, _ = match_enum(next(iter(marks)), options)
    except UnreadableError:
        return
    if reading.values.get(key, code) != code:
        reading.values[key] = code
        reading.provenance[key] = "normalised"
        _note(reading, key, f"{code}, as the amount is written")


def _ground_currencies(reading: Reading, props: dict[str, dict[str, Any]], document: str) -> None:
    """A currency the document does not show is not its currency.

    Where the document writes its amounts in one currency only (a mark, word or code next to a
    figure: `人民币15,000,000元`, `10,390.25 pounds sterling`), a currency field saying another
    one (the model tends to write the first option listed), or null beside a stated amount,
    takes that one. Otherwise a nullable currency the document shows no mark, word or code of
    was not stated: null.
    """
    stated = currency_marks(document)
    yen_sign = re.search("[¥￥]", document) is not None
    if "CNY" in stated and yen_sign:
        stated.add("JPY")  # ¥ is yuan or yen
    by_amounts = amount_currencies(document)
    amount_given = any(
        reading.values.get(k) is not None for k, node in props.items() if _is_amount(node)
    )
    for key, node in props.items():
        if not _is_currency(node) or key not in reading.values or key in reading.unreadable:
            continue
        value = reading.values[key]
        options = _enum_options(node)
        sole = next(iter(by_amounts)) if len(by_amounts) == 1 else None
        if value == "JPY" and sole == "CNY" and yen_sign:
            continue  # ¥ alone: yuan or yen, the model's reading stands
        if sole in options and value != sole and (value is not None or amount_given):
            reading.values[key] = sole
            reading.provenance[key] = "repaired"
            _note(reading, key, f"the document writes its amounts in {sole} only")
        elif nullable(node) and value is not None and value not in stated:
            reading.values[key] = None
            reading.provenance[key] = "repaired"
            _note(reading, key, f"the document shows no {value} amount; null")


def _enum_options(node: dict[str, Any]) -> list[str]:
    """A node's string enum options, across its `anyOf` branches."""
    return [v for o in _options(node) for v in o.get("enum", []) if isinstance(v, str)]


def _is_currency(node: dict[str, Any]) -> bool:
    return is_currency_enum(_enum_options(node))


def _is_amount(node: dict[str, Any]) -> bool:
    return any(copy_kind(o) == "number" for o in _options(node))


def _copied(reading: Reading, key: str) -> str:
    """The text the model copied for a scalar field ('' when none or not text)."""
    raw = reading.raw.get(key)
    if not isinstance(raw, str) or reading.values.get(key) is None:
        return ""
    return _norm(raw)


def _written(reading: Reading, key: str) -> str:
    """The text the model wrote for a scalar field: its copy, or a bare number's digits."""
    raw = reading.raw.get(key)
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return _norm(repr(raw))
    return _copied(reading, key)


def _kind(node: dict[str, Any]) -> str | None:
    return next((k for o in _options(node) if (k := copy_kind(o)) is not None), None)


def _stated(reading: Reading, key: str, kind: str | None, document: str) -> int:
    """How often the document states `key`'s value: any spelling of a date, else its text."""
    if kind == "date":
        return date_mentions(document).count(reading.values[key])
    return _norm(document).count(_copied(reading, key))


def _one_occurrence_one_field(
    reading: Reading, props: dict[str, dict[str, Any]], document: str
) -> None:
    """A nullable field holding the value a non-nullable field holds, stated once: null.

    The document states that value once, so it answers one field; the one that must have a
    value keeps it (a due date that is the issue date, an end date that is the signing date,
    where the document gives none). Dates compare as read, in any spelling; other values by
    the text the model copied.
    """
    for key, node in props.items():
        kind = _kind(node)
        if not nullable(node) or not _copied(reading, key):
            continue
        owners = [
            other
            for other, other_node in props.items()
            if other != key
            and not nullable(other_node)
            and _kind(other_node) == kind
            and _copied(reading, other)
            and (
                reading.values[other] == reading.values[key]
                if kind == "date"
                else _copied(reading, other) == _copied(reading, key)
            )
        ]
        if owners and _stated(reading, key, kind, document) <= 1:
            reading.values[key] = None
            reading.provenance[key] = "repaired"
            _note(reading, key, f"the document states this once, for {owners[0]}; null")


def _document_own_dates(
    reading: Reading, props: dict[str, dict[str, Any]], document: str
) -> None:
    """A date the document states only as its own (printed, published, sent on) is not a fact.

    A small model answers a date field with the first date it meets, often the e-mail's `Date:`
    line or "This copy was printed on ...". Unless the field asks for such a date (its name says
    printed, published, sent), it takes the one reported date no other date field holds; with
    none, a nullable field becomes null. Both `repaired`.
    """
    own = document_dates(document)
    if not own:
        return
    dates = [k for k, node in props.items() if _kind(node) == "date"]
    reported = set(date_mentions(document)) - own
    for key in dates:
        value = reading.values.get(key)
        if value not in own or _OWN_DATE_FIELD.search(key):
            continue
        held = {reading.values.get(other) for other in dates if other != key}
        free = reported - held
        if len(free) == 1:
            reading.values[key] = free.pop()
            _note(reading, key, f"{value} is the document's own date; the one other stated")
        elif not free and nullable(props[key]):
            reading.values[key] = None
            _note(reading, key, f"{value} is the document's own date; null")
        else:
            continue
        reading.provenance[key] = "repaired"


def _money_or_count(reading: Reading, props: dict[str, dict[str, Any]], document: str) -> None:
    """Money is written with a currency; a count is not.

    In an object with both an amount (a number field) and a count (an integer field), a
    nullable count holding a figure the document writes only as money (`120,000 euros`) is not
    a count, and a nullable amount holding the figure a count holds, which the document writes
    only without a currency (`参与人数: 60`), is not an amount: null, `repaired`. A small model
    copies the one figure it finds into both.
    """
    amounts = [k for k, node in props.items() if _kind(node) == "number"]
    counts = [k for k, node in props.items() if _kind(node) == "integer"]
    if not amounts or not counts:
        return
    money = set(number_mentions(document, money=True))
    bare = set(number_mentions(document, money=False))
    for key in counts:
        value = reading.values.get(key)
        if nullable(props[key]) and value is not None and value in money - bare:
            _nulled(reading, key, f"the document writes {value:g} only as money; null")
    for key in amounts:
        value = reading.values.get(key)
        held = value is not None and any(reading.values.get(c) == value for c in counts)
        if nullable(props[key]) and held and value in bare - money:
            _nulled(reading, key, f"the document writes {value:g} only as a count; null")


def _nulled(reading: Reading, key: str, note: str) -> None:
    reading.values[key] = None
    reading.provenance[key] = "repaired"
    _note(reading, key, note)


def _held_elsewhere(reading: Reading, props: dict[str, dict[str, Any]], doc: str) -> None:
    """A nullable string naming what another field holds, stated once, was not stated: null.

    A small model fills a field it cannot find with a name it has already written (a party of
    the contract as the city whose courts settle disputes). Where the document writes that
    name once, it answers the other field; this one becomes null, as an unstated value does.
    """
    for key, node in props.items():
        value = reading.values.get(key)
        if not _plain_nullable_string(node) or not isinstance(value, str) or not value.strip():
            continue
        mine = _norm(value)
        owner = next(
            (
                other
                for other in props
                if other != key
                and any(_within(mine, _norm(v)) for v in _strings_of(reading.values.get(other)))
            ),
            None,
        )
        if owner is not None and doc.count(mine) <= 1:
            reading.values[key] = None
            reading.provenance[key] = "repaired"
            _note(reading, key, f"{value!r} is what {owner} holds, stated once; null")


def _strings_of(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _within(part: str, whole: str) -> bool:
    """Whether `part` is `whole` or a run of its words (normalised texts)."""
    if part == whole:
        return True
    return bool(part) and re.search(rf"(?<!\w){re.escape(part)}(?!\w)", whole) is not None


def _rescale(reading: Reading, key: str, document: str) -> None:
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
        reading.values[key] = int(number) if number == int(number) else number
        reading.provenance[key] = "repaired"
        _note(reading, key, f"the document writes {number:g}, not {value:g}; read from it")


def _asks_total(key: str, node: dict[str, Any]) -> bool:
    """Whether a number field asks for a total (its name or description says so)."""
    words = " ".join([key, *(str(o.get("description", "")) for o in [node, *_options(node)])])
    return _TOTAL.search(re.sub(r"[_-]+", " ", words)) is not None


def _unit(key: str) -> str | None:
    """The unit a number field's name counts in (`term_months`, `years_experience`), if any."""
    words = set(re.split(r"[_\W]+", key.casefold()))
    return next((u for u in UNITS if u in words or u.rstrip("s") in words), None)


def _counted_in(reading: Reading, key: str, unit: str, document: str) -> None:
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
    reading.values[key] = count
    reading.provenance[key] = "repaired"
    _note(reading, key, f"the document writes one count in {unit}: {count:g}")


def _whole_amount(reading: Reading, key: str, document: str) -> None:
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
    sums = {
        whole
        for whole in written
        for part in written
        if 0 < part < whole and whole > value and abs(value + part - whole) <= 0.005
    }
    if len(sums) == 1:
        whole = sums.pop()
        reading.values[key] = int(whole) if whole == int(whole) else whole
        reading.provenance[key] = "repaired"
        _note(reading, key, f"{value:g} is a part of the document's sum {whole:g}; the total")


def _unstated_date(reading: Reading, key: str, node: dict[str, Any], stated: list[str]) -> None:
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
        reading.values[key] = near.pop()
        _note(reading, key, f"{value} is not stated; the document's {reading.values[key]}")
    elif nullable(node):
        reading.values[key] = None
        _note(reading, key, f"the document states no {value}; null")
    else:
        return
    reading.provenance[key] = "repaired"


def _names(option: str, doc: str) -> bool:
    """Whether `doc` (normalised) writes `option` as a word (a plural `s` allowed)."""
    words = re.escape(_norm(re.sub(r"[_-]+", " ", option)))
    return re.search(rf"(?<!\w){words}(?:e?s)?(?!\w)", doc) is not None


def _named_option(reading: Reading, key: str, node: dict[str, Any], doc: str) -> None:
    """The first option, which the document never names, where it names exactly one other.

    A small model answers the first option listed when unsure (`lease` for every contract);
    the document's own word is better evidence then. Any other answer is the model's choice
    and stays (a category judged from the story need not be written). Currencies are left to
    the checks above.
    """
    options = _enum_options(node)
    value = reading.values[key]
    if not options or value != options[0] or _is_currency(node) or _names(value, doc):
        return
    named = [o for o in options if o != value and _names(o, doc)]
    if len(named) == 1:
        reading.values[key] = named[0]
        reading.provenance[key] = "repaired"
        _note(reading, key, f"the document names {named[0]!r}, never {value!r}")
