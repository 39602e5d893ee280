"""Scoring extraction output against the development set's gold.

    validity        documents whose object validates against the schema (formats asserted)
    field accuracy  fields equal to the gold, over all fields of all documents (strict: a
                    missing or invalid object scores every field wrong)
    exact records   documents with every field right
    from code       fields whose provenance says code chose or left them out
    code succeeded  such fields inside an item reported `succeeded` (must be 0)
    array loops     arrays holding a repeated item, or at their maxItems with one

Strings compare after Unicode NFKC, trimming and case folding; numbers within 1e-6; lists as
sets of such strings (the order a document lists things in is not asked for).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator


def _text(value: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", value)).strip().casefold()


def same(got: Any, gold: Any) -> bool:
    """Whether one extracted value equals its gold value (see the module docstring)."""
    if gold is None or got is None:
        return got is None and gold is None
    if isinstance(gold, bool) or isinstance(got, bool):
        return got is gold
    if isinstance(gold, int | float):
        return isinstance(got, int | float) and abs(got - gold) <= 1e-6 * max(1.0, abs(gold))
    if isinstance(gold, str):
        return isinstance(got, str) and _text(got) == _text(gold)
    if isinstance(gold, list):
        if not isinstance(got, list):
            return False
        return {_text(str(x)) for x in got} == {_text(str(x)) for x in gold}
    return bool(got == gold)


@dataclass
class Score:
    """Figures for one method over the set."""

    documents: int = 0
    valid: int = 0
    fields: int = 0
    fields_right: int = 0
    exact: int = 0
    from_code: int = 0
    code_succeeded: int = 0
    array_loops: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)

    def wrong_by_field(self) -> dict[str, int]:
        """How many documents got each `schema.field` wrong, most first."""
        counts: dict[str, int] = {}
        for line in self.wrong:
            document, name = line.split(":", 1)[0].rsplit(".", 1)
            key = f"{document.split('-', 1)[0]}.{name}"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def figures(self) -> dict[str, float | int]:
        n = max(self.documents, 1)
        return {
            "documents": self.documents,
            "validity": self.valid / n,
            "field_accuracy": self.fields_right / max(self.fields, 1),
            "exact_records": self.exact / n,
            "from_code": self.from_code / max(self.fields, 1),
            "code_values_reported_succeeded": self.code_succeeded,
            "array_loops": self.array_loops,
            **{f"status_{k}": v for k, v in sorted(self.statuses.items())},
        }


def _loops(value: Any, node: dict[str, Any]) -> int:
    if not isinstance(value, list):
        return 0
    keys = [json.dumps(x, sort_keys=True, ensure_ascii=False).casefold() for x in value]
    repeated = len(set(keys)) < len(keys)
    return int(repeated)


def score(
    records: list[dict[str, Any]], outputs: dict[str, dict[str, Any]], schemas: dict[str, Any]
) -> Score:
    """Score `outputs` (id -> {status, object, provenance}) against the gold of `records`."""
    result = Score()
    validators = {
        name: Draft202012Validator(s, format_checker=Draft202012Validator.FORMAT_CHECKER)
        for name, s in schemas.items()
    }
    for record in records:
        out = outputs.get(record["id"]) or {"status": "failed"}
        status = str(out.get("status", "failed"))
        result.statuses[status] = result.statuses.get(status, 0) + 1
        result.documents += 1
        got = out.get("object")
        got = got if isinstance(got, dict) else {}
        if out.get("object") is not None and validators[record["schema"]].is_valid(got):
            result.valid += 1
        provenance = out.get("provenance") or {}
        coded = [k for k, v in provenance.items() if v in ("repaired", "closed")]
        result.from_code += len(coded)
        if status == "succeeded":
            result.code_succeeded += len(coded)
        right = 0
        props = schemas[record["schema"]]["properties"]
        for key, gold in record["gold"].items():
            result.fields += 1
            result.array_loops += _loops(got.get(key), props[key])
            if key in got and same(got[key], gold):
                right += 1
            else:
                result.wrong.append(f"{record['id']}.{key}: got {got.get(key)!r}, gold {gold!r}")
        result.fields_right += right
        result.exact += right == len(record["gold"])
    return result


def parse_plain(text: str) -> dict[str, Any] | None:
    """The JSON object in a plain (unconstrained) answer: bare, or in a ``` fence."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    candidate = fenced.group(1) if fenced else text
    start, end = candidate.find("{"), candidate.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        value = json.loads(candidate[start : end + 1])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
