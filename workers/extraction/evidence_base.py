"""What the evidence checks share: comparing text with a document, notes, a field's kind."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from qfleet.workers.extraction.fields import copy_kind
from qfleet.workers.extraction.items import Reading


def norm_text(text: str) -> str:
    """`text` as compared with a document: NFKC, whitespace collapsed, trimmed, case-folded."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()


def add_note(reading: Reading, key: str, note: str) -> None:
    """Append `note` to what `reading` says about `key`."""
    reading.notes[key] = "; ".join(filter(None, [reading.notes.get(key), note]))


def repair(reading: Reading, key: str, value: Any, note: str) -> None:
    """`key` takes `value`, chosen by code (`repaired`), with `note` saying why."""
    reading.values[key] = value
    reading.provenance[key] = "repaired"
    add_note(reading, key, note)


def branches(node: dict[str, Any]) -> list[dict[str, Any]]:
    """A node's non-null `anyOf` branches, or the node itself."""
    return [o for o in node.get("anyOf", [node]) if o.get("type") != "null"]


def value_kind(node: dict[str, Any]) -> str | None:
    """`date`, `number`, `integer` or `enum` when a branch of `node` is copied as text."""
    return next((k for o in branches(node) if (k := copy_kind(o)) is not None), None)


def copied_text(reading: Reading, key: str) -> str:
    """The text the model copied for a scalar field ('' when none or not text)."""
    raw = reading.raw.get(key)
    if not isinstance(raw, str) or reading.values.get(key) is None:
        return ""
    return norm_text(raw)


def written_text(reading: Reading, key: str) -> str:
    """The text the model wrote for a scalar field: its copy, or a bare number's digits."""
    raw = reading.raw.get(key)
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return norm_text(repr(raw))
    return copied_text(reading, key)


def enum_options(node: dict[str, Any]) -> list[str]:
    """A node's string enum options, across its `anyOf` branches."""
    return [v for o in branches(node) for v in o.get("enum", []) if isinstance(v, str)]
