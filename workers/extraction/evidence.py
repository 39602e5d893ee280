"""Checking read values against the document they came from.

The model copies values; these checks hold the copies to the document and to each other:

- A nullable string (a plain string field, not a date, number or enum) whose text does not occur
  in the document was not stated there: it becomes null, and its provenance is `repaired` (code
  chose the value). Small models fill such fields with plausible inventions (an e-mail address
  built from the name, an employer the profile never names).
- A list item that holds several items as the document wrote them is split: one that contains the
  enumeration comma `、`, or one that ends a comma list the document writes as `A, B and C`
  (the model split at the commas and kept "B and C"). Provenance `normalised`, with a note.
- A currency field (an enum of ISO codes) agrees with the currency mark the model copied with the
  amounts of the same object (`¥44,086.19`, `10,390.25 pounds sterling`): when every amount says
  one currency and the field says another (or null), the amount's mark wins; `normalised`, with
  a note. A nullable currency the document shows no sign of (no mark, word or code: the model
  wrote `USD` for an article with no amount) becomes null, `repaired`.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from qfleet.workers.extraction.fields import copy_kind, node_types, nullable, properties
from qfleet.workers.extraction.items import Reading
from qfleet.workers.extraction.values import CURRENCY_WORDS, UnreadableError, match_enum

_AND = re.compile(r"^(.+?),?\s+(?:and|&)\s+(.+)$")
_MARKS = sorted(CURRENCY_WORDS, key=len, reverse=True)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()


def check_evidence(reading: Reading, schema: dict[str, Any], document: str) -> None:
    """Hold `reading`'s values to `document` (see the module docstring); changes it in place."""
    props = properties(schema)
    doc = _norm(document)
    for key, node in props.items():
        if key not in reading.values:
            continue
        if _plain_nullable_string(node):
            _ground(reading, key, doc)
        elif _string_array(node):
            _split_items(reading, key, node, doc)
    _agree_currency(reading, props)
    _ground_currencies(reading, props, document)


def _note(reading: Reading, key: str, note: str) -> None:
    reading.notes[key] = "; ".join(filter(None, [reading.notes.get(key), note]))


def _options(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in node.get("anyOf", [node]) if o.get("type") != "null"]


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
        out.extend(parts)
    out = list(dict.fromkeys(out))
    if out != items and len(out) <= node.get("maxItems", len(out)):
        reading.values[key] = out
        if reading.provenance.get(key) == "model":
            reading.provenance[key] = "normalised"
        split = len(out) > len(items)
        _note(reading, key, "items listed together split" if split else "items trimmed")


def currency_marks(text: str) -> set[str]:
    """The ISO codes of the currency marks and words in `text` (longest spelling first)."""
    rest = unicodedata.normalize("NFKC", text).casefold()
    found: set[str] = set()
    for mark in _MARKS:
        pattern = re.escape(mark)
        if mark[0].isascii() and mark[0].isalpha():
            pattern = rf"(?<![a-z]){pattern}(?![a-z])"
        if re.search(pattern, rest):
            found.add(CURRENCY_WORDS[mark])
            rest = re.sub(pattern, " ", rest)
    return found


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
    options = [v for o in _options(props[key]) for v in o.get("enum", []) if isinstance(v, str)]
    try:
        code, _ = match_enum(next(iter(marks)), options)
    except UnreadableError:
        return
    if reading.values.get(key, code) != code:
        reading.values[key] = code
        reading.provenance[key] = "normalised"
        _note(reading, key, f"{code}, as the amount is written")


def _ground_currencies(reading: Reading, props: dict[str, dict[str, Any]], document: str) -> None:
    """A nullable currency the document shows no mark, word or code of was not stated: null."""
    stated = currency_marks(document)
    if "CNY" in stated and re.search("[¥￥]", document):
        stated.add("JPY")  # ¥ is yuan or yen
    for key, node in props.items():
        value = reading.values.get(key)
        if _is_currency(node) and nullable(node) and value is not None and value not in stated:
            reading.values[key] = None
            reading.provenance[key] = "repaired"
            _note(reading, key, f"the document shows no {value} amount; null")


def _is_currency(node: dict[str, Any]) -> bool:
    enums = [v for o in _options(node) for v in o.get("enum", []) if v is not None]
    return bool(enums) and set(enums) <= set(CURRENCY_WORDS.values())


def _is_amount(node: dict[str, Any]) -> bool:
    return any(copy_kind(o) == "number" for o in _options(node))
