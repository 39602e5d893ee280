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
- Money is written with a currency, a count is not: a nullable count holding a figure written
  only as money, or a nullable amount holding the count's figure written only bare, is null.
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

import re
from typing import Any

from qfleet.workers.extraction.evidence_base import (
    add_note,
    branches,
    copied_text,
    enum_options,
    norm_text,
    repair,
    value_kind,
    written_text,
)
from qfleet.workers.extraction.evidence_figures import (
    asks_total,
    count_unit,
    counted_in,
    document_own_dates,
    money_or_count,
    rescale,
    unstated_date,
    whole_amount,
)
from qfleet.workers.extraction.fields import copy_kind, node_types, nullable, properties
from qfleet.workers.extraction.items import Reading
from qfleet.workers.extraction.nearest import nearest_passage
from qfleet.workers.extraction.values import (
    UnreadableError,
    amount_currencies,
    currency_marks,
    date_mentions,
    is_currency_enum,
    match_enum,
)

_AND = re.compile(r"^(.+?),?\s+(?:and|&)\s+(.+)$")
# Two capitalised names joined by the word "and" (not `&`, which names use: "AT&T").
_NAMES_AND = re.compile(r"^([A-Z0-9][^,]*?)\s+and\s+([A-Z0-9][^,]*)$")
# One conjunction joining two parts of a list item: "X and Y", "X & Y", "X 和 Y", "X与Y".
_JOINED = re.compile(r"^(.+?)(?:,?\s+(?:and|&)\s+|\s*(?:以及|和|与|及)\s*)(.+)$")


def check_evidence(reading: Reading, schema: dict[str, Any], document: str) -> None:
    """Hold `reading`'s values to `document` (see the module docstring); changes it in place."""
    props = properties(schema)
    doc = norm_text(document)
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
        kind = value_kind(node)
        if kind == "date" and copied_text(reading, key) not in doc:
            unstated_date(reading, key, node, stated)
        if kind not in ("number", "integer"):
            continue
        if written_text(reading, key) not in doc:
            rescale(reading, key, document)
        if (unit := count_unit(key)) is not None:
            counted_in(reading, key, unit, document)
        if asks_total(key, node):
            whole_amount(reading, key, document)
    document_own_dates(reading, props, document)
    money_or_count(reading, props, document)
    _one_occurrence_one_field(reading, props, document)
    _held_elsewhere(reading, props, doc)
    for key, node in props.items():
        if key in reading.values and key not in reading.unreadable:
            _named_option(reading, key, node, doc)


def _plain_string(node: dict[str, Any]) -> bool:
    """Free text: a string with no format, pattern, enum or const (a name, a title)."""
    return all(
        "string" in node_types(o) and copy_kind(o) is None
        and not {"enum", "const", "format", "pattern"} & set(o)
        for o in branches(node)
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
        repair(reading, key, fixed, "a misspelt copy takes the document's spelling")


def _plain_nullable_string(node: dict[str, Any]) -> bool:
    options = branches(node)
    return nullable(node) and all(
        "string" in node_types(o) and copy_kind(o) is None and "enum" not in o and "const" not in o
        for o in options
    )


def _ground(reading: Reading, key: str, doc: str) -> None:
    value = reading.values[key]
    if isinstance(value, str) and value.strip() and norm_text(value) not in doc:
        repair(reading, key, None, f"{value!r} does not occur in the document; null")


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
        tail = n > 0 and f"{norm_text(items[n - 1])}, {norm_text(item)}" in doc
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
        add_note(reading, key, "items listed together split" if split else "items trimmed")


def _named_apart(item: str, doc: str, alone: bool = False) -> list[str]:
    """`X and Y` as two items when the document also names X and Y apart, else `[item]`.

    "Marks and Spencer" stays whole unless the document writes "Spencer" on its own too, or
    (`alone`) it is the list's only item and both sides are capitalised names joined by the word
    "and": a list answered with one entry that joins two names is the document's "X and Y"
    copied whole (`Port of Rotterdam and Vestas`), which the prompt's rule asks to split. A
    single "Marks and Spencer" is split too: the price of that rule.
    """
    match = _JOINED.match(item.strip())
    if match is None or norm_text(item) not in doc:
        return [item]
    rest = doc.replace(norm_text(item), " ")
    parts = [match.group(1).strip(), match.group(2).strip()]
    if all(len(norm_text(p)) >= 2 and norm_text(p) in rest for p in parts):
        return parts
    names = _NAMES_AND.match(item.strip())
    if alone and names and norm_text(names.group(1)) != norm_text(names.group(2)):
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
    options = enum_options(props[key])
    try:
        code, _ = match_enum(next(iter(marks)), options)
    except UnreadableError:
        return
    if reading.values.get(key, code) != code:
        reading.values[key] = code
        reading.provenance[key] = "normalised"
        add_note(reading, key, f"{code}, as the amount is written")


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
        options = enum_options(node)
        sole = next(iter(by_amounts)) if len(by_amounts) == 1 else None
        if value == "JPY" and sole == "CNY" and yen_sign:
            continue  # ¥ alone: yuan or yen, the model's reading stands
        if sole in options and value != sole and (value is not None or amount_given):
            repair(reading, key, sole, f"the document writes its amounts in {sole} only")
        elif nullable(node) and value is not None and value not in stated:
            repair(reading, key, None, f"the document shows no {value} amount; null")


def _is_currency(node: dict[str, Any]) -> bool:
    return is_currency_enum(enum_options(node))


def _is_amount(node: dict[str, Any]) -> bool:
    return any(copy_kind(o) == "number" for o in branches(node))


def _stated(reading: Reading, key: str, kind: str | None, document: str) -> int:
    """How often the document states `key`'s value: any spelling of a date, else its text."""
    if kind == "date":
        return date_mentions(document).count(reading.values[key])
    return norm_text(document).count(copied_text(reading, key))


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
        kind = value_kind(node)
        if not nullable(node) or not copied_text(reading, key):
            continue
        owners = [
            other
            for other, other_node in props.items()
            if other != key
            and not nullable(other_node)
            and value_kind(other_node) == kind
            and copied_text(reading, other)
            and (
                reading.values[other] == reading.values[key]
                if kind == "date"
                else copied_text(reading, other) == copied_text(reading, key)
            )
        ]
        if owners and _stated(reading, key, kind, document) <= 1:
            repair(reading, key, None, f"the document states this once, for {owners[0]}; null")


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
        mine = norm_text(value)
        owner = next(
            (
                other
                for other in props
                if other != key
                and any(_within(mine, norm_text(v)) for v in _strings_of(reading.values.get(other)))
            ),
            None,
        )
        if owner is not None and doc.count(mine) <= 1:
            repair(reading, key, None, f"{value!r} is what {owner} holds, stated once; null")


def _strings_of(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _within(part: str, whole: str) -> bool:
    """Whether `part` is `whole` or a run of its words (normalised texts)."""
    if part == whole:
        return True
    return bool(part) and re.search(rf"(?<!\w){re.escape(part)}(?!\w)", whole) is not None


def _names(option: str, doc: str) -> bool:
    """Whether `doc` (normalised) writes `option` as a word (a plural `s` allowed)."""
    words = re.escape(norm_text(re.sub(r"[_-]+", " ", option)))
    return re.search(rf"(?<!\w){words}(?:e?s)?(?!\w)", doc) is not None


def _named_option(reading: Reading, key: str, node: dict[str, Any], doc: str) -> None:
    """The first option, which the document never names, where it names exactly one other.

    A small model answers the first option listed when unsure (`lease` for every contract);
    the document's own word is better evidence then. Any other answer is the model's choice
    and stays (a category judged from the story need not be written). Currencies are left to
    the checks above.
    """
    options = enum_options(node)
    value = reading.values[key]
    if not options or value != options[0] or _is_currency(node) or _names(value, doc):
        return
    named = [o for o in options if o != value and _names(o, doc)]
    if len(named) == 1:
        repair(reading, key, named[0], f"the document names {named[0]!r}, never {value!r}")
