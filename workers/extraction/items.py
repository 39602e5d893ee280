"""From decoded text to a truthful item: read every field, say where each came from.

A field's provenance is `model` (as the model wrote it), `normalised` (read from the model's
spelling by code: a date, a number, an enum code, a repeated list item dropped), `repaired` (the
decoder chose part of the value because the model's own token broke the schema, or cut a looping
string) or `closed` (left out: the budget ran out inside or before it, or no spelling could be
read). Only an object whose every field is `model` or `normalised` is `succeeded`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from qfleet.tasks.schemas import ExtractItem, FieldSource
from qfleet.workers.engine.guided import GuidedOutput
from qfleet.workers.extraction.fields import UnreadableError, properties, read_value


@dataclass
class FieldSpan:
    """Where one root property sits in the decoded text."""

    key: str
    start: int  # offset of the key's opening quote
    end: int | None  # offset after the value (None: the value was cut off)


@dataclass
class Reading:
    """What one decoded row says, field by field."""

    values: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)  # each field as the model wrote it
    provenance: dict[str, FieldSource] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    spans: list[FieldSpan] = field(default_factory=list)
    parsed: bool = True


def field_spans(text: str) -> list[FieldSpan]:
    """The root object's properties in order, with where each starts and ends."""
    spans: list[FieldSpan] = []
    depth, inside, escaped, key_start = 0, False, False, -1
    for n, char in enumerate(text):
        if inside:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                inside = False
            continue
        if char == '"':
            inside = True
            if depth == 1 and key_start < 0:
                key_start = n
        elif char in "{[":
            depth += 1
        elif char in "}]" or (char == "," and depth == 1):
            if char != ",":
                depth -= 1
            if depth <= 1 and key_start >= 0 and (char == "," or depth == 0):
                spans.append(_span(text, key_start, n))
                key_start = -1
    if key_start >= 0:
        spans.append(FieldSpan(_key(text, key_start), key_start, None))
    return spans


def _key(text: str, start: int) -> str:
    end = text.find('"', start + 1)
    try:
        key: str = json.loads(text[start : end + 1]) if end > 0 else ""
    except json.JSONDecodeError:
        return ""
    return key


def _span(text: str, start: int, end: int) -> FieldSpan:
    return FieldSpan(_key(text, start), start, end)


def read_output(output: GuidedOutput, schema: dict[str, Any]) -> Reading:
    """Every complete root field of `output`, read into `schema`'s form."""
    reading = Reading(spans=field_spans(output.text))
    raw: dict[str, Any] = {}
    for span in reading.spans:
        if span.end is None:
            continue
        try:
            raw.update(json.loads("{" + output.text[span.start : span.end] + "}"))
        except json.JSONDecodeError:
            reading.unreadable[span.key] = "not JSON"
    reading.raw = raw
    props = properties(schema)
    for key, value in raw.items():
        try:
            got = read_value(value, props.get(key, {}))
        except UnreadableError as exc:
            reading.unreadable[key] = str(exc)
            continue
        reading.values[key] = got.value
        reading.provenance[key] = "normalised" if got.changed else "model"
        if got.notes:
            reading.notes[key] = "; ".join(got.notes)
    for key in output.trimmed_fields:
        if reading.provenance.get(key) == "model":
            reading.provenance[key] = "normalised"
    for key, note in output.chosen.items():
        if reading.provenance.get(key) == "model":
            reading.provenance[key] = "normalised"
            reading.notes[key] = "; ".join(n for n in (reading.notes.get(key), note) if n)
    return reading


def check_fields(reading: Reading, validator: Draft202012Validator) -> None:
    """Fields whose read value breaks the schema (a bound, a pattern) become unreadable."""
    for error in validator.iter_errors(reading.values):
        if error.absolute_path:
            key = str(error.absolute_path[0])
            reading.unreadable[key] = error.message
            reading.values.pop(key, None)
            reading.provenance.pop(key, None)


def build_item(
    document_id: str, output: GuidedOutput, reading: Reading, schema: dict[str, Any]
) -> ExtractItem:
    """The item for one document; `succeeded` only when every value came from the model."""
    tokens = len(output.token_ids)
    if output.error is not None:
        return failed_item(document_id, "decoding_failed", output.error, tokens, output.repairs)
    provenance = dict(reading.provenance)
    for key in output.repaired_fields:
        if key in provenance:
            provenance[key] = "repaired"
    for key in properties(schema):
        if key not in reading.values:
            provenance[key] = "closed"
    code_fields = [k for k, v in provenance.items() if v in ("repaired", "closed")]
    required = set(schema.get("required", []))
    missing_optional = [k for k in code_fields if k not in required and provenance[k] == "closed"]
    if output.finish_reason == "stop":
        # An optional property the model chose to leave out is the model's choice, not code's.
        for key in missing_optional:
            if key not in reading.unreadable:
                provenance.pop(key)
                code_fields.remove(key)
    status = "succeeded" if not code_fields and output.finish_reason == "stop" else "incomplete"
    values = {k: reading.values[k] for k in properties(schema) if k in reading.values}
    return ExtractItem(
        id=document_id,
        status=status,
        object=values,
        finish_reason="length" if output.finish_reason == "length" else "stop",
        provenance=provenance,
        code_fields=code_fields,
        notes=reading.notes,
        completion_tokens=tokens,
        repairs=output.repairs,
    )


def failed_item(document_id: str, code: str, reason: str, tokens: int, repairs: int) -> ExtractItem:
    """An item with no object, and why."""
    return ExtractItem(
        id=document_id,
        status="failed",
        error_code=code,
        error=reason,
        completion_tokens=tokens,
        repairs=repairs,
    )
