"""Schema-guided decoding on the tiny random-weight model: valid, or truthfully not whole.

The tiny model's weights are random, so whatever it would write is noise; every object below
parses and validates because the guided decoder allowed nothing else, and every value code had
to choose is reported (the item is then `incomplete`, never `succeeded`). Hypothesis draws
schemas that together use every supported keyword, and random documents.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from qfleet.tasks.schemas import ExtractJob
from qfleet.workers.engine.guided import GuidedDecoder, GuidedRow
from qfleet.workers.engine.model import LoadedModel
from qfleet.workers.engine.structured import DATE_PATTERN
from qfleet.workers.extraction import run_extract

# --- schemas -------------------------------------------------------------------------------------

_words = st.text(alphabet="abcdefgh xyz", min_size=1, max_size=6)
_names = st.text(alphabet="abcdefghij_", min_size=1, max_size=8)


@st.composite
def _string_schema(draw: st.DrawFn) -> dict[str, Any]:
    choice = draw(st.sampled_from(["plain", "bounded", "enum", "date", "pattern", "format"]))
    if choice == "pattern":
        return {"type": "string", "pattern": "^[a-c]{1,4}-[0-9]{2}$"}
    if choice == "format":
        return {
            "type": "string",
            "format": draw(st.sampled_from(["date-time", "email", "uri", "uuid"])),
        }
    if choice == "enum":
        return {
            "type": "string",
            "enum": draw(st.lists(_words, min_size=1, max_size=4, unique=True)),
        }
    if choice == "date":
        return {"type": "string", "format": "date"}
    if choice == "bounded":
        low = draw(st.integers(0, 3))
        return {"type": "string", "minLength": low, "maxLength": draw(st.integers(low, 12))}
    return {"type": "string", "description": "any text"}


@st.composite
def _number_schema(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["integer", "number"]))
    values = (
        st.integers(-1000, 1000)
        if kind == "integer"
        else st.floats(-1e3, 1e3).map(lambda x: round(x, 2))
    )
    low, high = sorted(draw(st.lists(values, min_size=2, max_size=2)))
    schema: dict[str, Any] = {"type": kind}
    bound = draw(st.sampled_from(["inclusive", "exclusive", "multiple"]))
    if bound == "multiple":
        return {**schema, "multipleOf": 5 if kind == "integer" else 0.5}
    low_key, high_key = (
        ("minimum", "maximum") if bound == "inclusive" else ("exclusiveMinimum", "exclusiveMaximum")
    )
    if bound == "exclusive" and low == high:
        high = low + 1
    if draw(st.booleans()):
        schema[low_key] = low
    if draw(st.booleans()):
        schema[high_key] = high
    return schema


_scalar = st.one_of(
    _string_schema(),
    _number_schema(),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.just({"enum": ["red", 3, True, None]}),
    st.just({"const": "fixed"}),
)


def _optional(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    as_list = inner.filter(lambda s: isinstance(s.get("type"), str) and "enum" not in s).map(
        lambda s: {**s, "type": [s["type"], "null"]}
    )
    as_any_of = inner.map(lambda s: {"anyOf": [s, {"type": "null"}]})
    return st.one_of(as_list, as_any_of)


def _extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(_array_schema(children), _object_schema(children), _optional(children))


@st.composite
def _array_schema(draw: st.DrawFn, items: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    high = draw(st.integers(0, 3))
    schema = {
        "type": "array",
        "items": draw(items),
        "minItems": draw(st.integers(0, high)),
        "maxItems": high,
    }
    if schema["items"].get("type") == "string" and schema["minItems"] <= 1 and draw(st.booleans()):
        schema["uniqueItems"] = True
    return schema


@st.composite
def _object_schema(draw: st.DrawFn, values: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    names = draw(st.lists(_names, min_size=1, max_size=4, unique=True))
    properties = {name: draw(values) for name in names}
    required = [n for n in names if draw(st.booleans())]
    return {"type": "object", "properties": properties, "required": required}


_value = st.recursive(_scalar, _extend, max_leaves=6)
_root = _object_schema(_value)


# --- properties ----------------------------------------------------------------------------------


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    schema=_root,
    documents=st.lists(st.text(max_size=120), min_size=1, max_size=3),
    max_tokens=st.integers(1, 40),
)
def test_every_object_parses_and_validates(
    tiny_loaded: LoadedModel,
    tiny_decoder: GuidedDecoder,
    schema: dict[str, Any],
    documents: list[str],
    max_tokens: int,
) -> None:
    job = ExtractJob(
        documents=[{"id": f"d{i}", "text": text} for i, text in enumerate(documents)],
        json_schema=schema,
        max_tokens=max_tokens,
    )

    result = run_extract(tiny_loaded, tiny_decoder, job, submitted_at=None, worker="test")

    validator = Draft202012Validator(
        job.json_schema, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    partial = Draft202012Validator(
        {**job.json_schema, "required": []}, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    assert [item.id for item in result.items] == [d.id for d in job.documents]
    for item in result.items:
        assert item.status in ("succeeded", "incomplete"), (item.error_code, item.error)
        assert item.object is not None
        assert item.completion_tokens <= max_tokens
        if item.status == "succeeded":
            assert item.finish_reason == "stop"
            assert not item.code_fields
            assert set(item.provenance.values()) <= {"model", "normalised"}
            validator.validate(item.object)
        else:  # what is there is valid; what code chose or left out is named
            assert item.code_fields or item.finish_reason == "length", item
            partial.validate(item.object)
            assert set(job.json_schema["required"]) - set(item.object) <= set(item.code_fields)


def test_an_exhausted_budget_is_incomplete_and_never_exceeded(
    tiny_loaded: LoadedModel, tiny_decoder: GuidedDecoder
) -> None:
    schema = {
        "type": "object",
        "properties": {"summary": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["summary", "n"],
    }
    job = ExtractJob(documents=[{"id": "a", "text": "x" * 50}], json_schema=schema, max_tokens=3)

    [item] = run_extract(tiny_loaded, tiny_decoder, job, submitted_at=None, worker="test").items

    assert item.status == "incomplete"
    assert item.finish_reason == "length"
    assert item.completion_tokens <= 3
    assert "n" in item.code_fields
    assert item.provenance["n"] == "closed"
    assert "n" not in (item.object or {})


def test_properties_come_in_the_schema_order(
    tiny_loaded: LoadedModel, tiny_decoder: GuidedDecoder
) -> None:
    schema = {
        "type": "object",
        "properties": {"zeta": {"type": "boolean"}, "alpha": {"type": "boolean"}},
        "required": ["zeta", "alpha"],
    }
    job = ExtractJob(documents=[{"id": "a", "text": "t"}], json_schema=schema, max_tokens=32)

    [item] = run_extract(tiny_loaded, tiny_decoder, job, submitted_at=None, worker="test").items

    assert list(item.object or {}) == ["zeta", "alpha"]


@pytest.mark.parametrize(
    ("date", "valid"),
    [
        ("2024-02-29", True),
        ("2000-02-29", True),
        ("0001-01-01", True),
        ("2023-02-29", False),
        ("1900-02-29", False),
        ("0000-01-01", False),
        ("2023-04-31", False),
    ],
)
def test_the_date_pattern_is_what_python_accepts(date: str, valid: bool) -> None:
    import datetime
    import re

    assert bool(re.fullmatch(DATE_PATTERN.strip("^$"), date)) is valid
    try:
        datetime.date.fromisoformat(date)
        parsed = True
    except ValueError:
        parsed = False
    assert parsed is valid


def test_examples_that_break_the_schema_are_refused(
    tiny_loaded: LoadedModel, tiny_decoder: GuidedDecoder
) -> None:
    from qfleet.tasks.errors import InvalidJobError

    job = ExtractJob(
        documents=[{"id": "a", "text": "t"}],
        json_schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        examples=[{"text": "x", "output": {"n": "not a number"}}],
    )

    with pytest.raises(InvalidJobError, match="examples"):
        run_extract(tiny_loaded, tiny_decoder, job, submitted_at=None, worker="test")


def test_output_is_compact_json_in_python_style(
    tiny_loaded: LoadedModel, tiny_decoder: GuidedDecoder
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]}
    job = ExtractJob(documents=[{"id": "a", "text": "t"}], json_schema=schema, max_tokens=8)

    [output] = tiny_decoder.decode([GuidedRow([1, 2, 3], job.json_schema, 32)])

    assert output.finish_reason == "stop"
    assert output.text == json.dumps(json.loads(output.text))
