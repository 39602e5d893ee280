"""Two views of one schema: what the model may write, and what the caller gets.

`decode_schema` relaxes the caller's schema where documents and schemas spell a value
differently: a `format: date` string, a number or integer, a string enum become strings the
model copies as written (bounded in length). `read_object` then reads what the model wrote back
into the caller's schema with `values.py`, field by field, and says where each value came from.
Every other keyword (objects, arrays, lengths, patterns, formats the grammar guarantees) stays
as it is, so the grammar still enforces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from qfleet.workers.engine.json_trail import NULL_LIKE
from qfleet.workers.extraction.values import UnreadableError, match_enum, parse_date, parse_number

# A value copied from a document: a long date or amount ("the 21st of September 2024", "人民币
# 1,234,567.89元") fits; a model that runs on is cut by the grammar.
COPY_MAX_CHARS = 48
# Where a value came from: as the model wrote it; read from its spelling by code; chosen or cut
# by code while decoding (a refused token replaced, a looping string cut); left out by code (the
# budget ran out, or no spelling could be read). Only the first two make a `succeeded` item.
Provenance = Literal["model", "normalised", "repaired", "closed"]
# Text meaning "no value" where the schema allows null: the model's null, spelled out.
NULL_WORDS = NULL_LIKE | {"not stated", "not given", "not specified", "unknown", "未知", "不详"}
_NUMBER_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def node_types(node: dict[str, Any]) -> set[str]:
    """The JSON types a schema node declares (`type` as a name or a list; none: empty)."""
    declared = node.get("type")
    if declared is None:
        return set()
    return set(declared) if isinstance(declared, list) else {declared}


def copy_kind(node: dict[str, Any]) -> str | None:
    """`date`, `number`, `integer` or `enum` when the model copies this value as text."""
    types = node_types(node)
    if "enum" in node:
        values = [v for v in node["enum"] if v is not None]
        return "enum" if values and all(isinstance(v, str) for v in values) else None
    if "string" in types and node.get("format") == "date" and "pattern" not in node:
        return "date"
    numeric = types & {"number", "integer"}
    if numeric and not types - {"number", "integer", "null"}:
        return "integer" if numeric == {"integer"} else "number"
    return None


def decode_schema(node: Any) -> Any:
    """The schema the decoder enforces: `node` with copyable values relaxed to bounded text."""
    if not isinstance(node, dict):
        return node
    out = dict(node)
    kind = copy_kind(node)
    if kind is not None:
        nullable = "null" in node_types(node) or None in node.get("enum", [])
        for key in ("enum", "format", *_NUMBER_KEYWORDS):
            out.pop(key, None)
        longest = max((len(v) for v in node.get("enum", []) if isinstance(v, str)), default=0)
        # Numbers may also come bare (`"total": 3492.56`): quoted-only cost a refusal, and so a
        # new engine call, each time the model wrote one; a bare number followed by more text
        # (`2,943.50`, `1.2万`) is quoted by the decoder (guided.py, `_requote`).
        types = ["string", "number"] if kind in ("number", "integer") else ["string"]
        out["type"] = [*types, "null"] if nullable else (types if len(types) > 1 else "string")
        out["maxLength"] = max(COPY_MAX_CHARS, longest + 16)
        return out
    if "anyOf" in node:
        out["anyOf"] = [decode_schema(option) for option in node["anyOf"]]
    if "properties" in node:
        out["properties"] = {k: decode_schema(v) for k, v in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        out["items"] = decode_schema(node["items"])
    return out


@dataclass
class Reading:
    """One value read back into the caller's schema."""

    value: Any
    changed: bool = False
    notes: list[str] = field(default_factory=list)


def nullable(node: dict[str, Any]) -> bool:
    """Whether `node` allows null (a type list, an enum or an `anyOf` option)."""
    return (
        "null" in node_types(node)
        or None in node.get("enum", [])
        or any(o.get("type") == "null" for o in node.get("anyOf", []))
    )


def read_value(value: Any, node: dict[str, Any]) -> Reading:
    """`value` (as decoded) in the form `node` asks for; raises `UnreadableError`."""
    if value is None:
        return Reading(None)
    if isinstance(value, str) and nullable(node) and value.strip().casefold() in NULL_WORDS:
        # "null" / "N/A" / "无" written as text where the schema allows null: the model's null.
        return Reading(None, True, [f"{value!r} read as null"])
    if "anyOf" in node:
        return _read_any_of(value, node["anyOf"])
    kind = copy_kind(node)
    if kind is not None:
        return _read_copy(value, node, kind)
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return _read_array(value, node)
    if isinstance(value, dict) and isinstance(node.get("properties"), dict):
        readings = {k: read_value(v, node["properties"].get(k, {})) for k, v in value.items()}
        return Reading(
            {k: r.value for k, r in readings.items()},
            any(r.changed for r in readings.values()),
            [n for r in readings.values() for n in r.notes],
        )
    return Reading(value)


def _read_any_of(value: Any, options: list[dict[str, Any]]) -> Reading:
    problems = []
    for option in options:
        if option.get("type") == "null":
            continue
        try:
            return read_value(value, option)
        except UnreadableError as exc:
            problems.append(str(exc))
    raise UnreadableError("; ".join(problems) or f"{value!r} fits no option")


def _read_copy(value: Any, node: dict[str, Any], kind: str) -> Reading:
    if kind == "enum":
        options = [v for v in node["enum"] if isinstance(v, str)]
        if not isinstance(value, str):
            raise UnreadableError(f"{value!r} is none of {options}")
        chosen, note = match_enum(value, options)
        return Reading(chosen, chosen != value, [note] if note else [])
    if not isinstance(value, str):
        return Reading(value)  # a JSON number already (from an example-shaped output)
    if kind == "date":
        iso, note = parse_date(value)
        return Reading(iso, iso != value, [note] if note else [])
    number, changed = parse_number(value, integer=kind == "integer")
    return Reading(number, True if changed else value != str(number))


def _read_array(value: list[Any], node: dict[str, Any]) -> Reading:
    readings = [read_value(item, node["items"]) for item in value]
    items = [r.value for r in readings]
    changed = any(r.changed for r in readings)
    notes = [n for r in readings for n in r.notes]
    if all(isinstance(i, str) for i in items):
        unique = list(dict.fromkeys(items))
        # Duplicates are dropped unless the schema needs them to reach minItems.
        if len(unique) < len(items) and len(unique) >= node.get("minItems", 0):
            items, changed = unique, True
            notes.append("repeated items dropped")
    return Reading(items, changed, notes)


def properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The root object's properties."""
    found: dict[str, dict[str, Any]] = schema.get("properties", {})
    return found


__all__ = ["Provenance", "Reading", "UnreadableError", "decode_schema", "properties", "read_value"]
