"""The extraction schema checker: what it accepts, normalises, and refuses by name."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from qfleet.tasks.extract_schema import UnsupportedSchemaError, check_extract_schema
from qfleet.tasks.schemas import ExtractJob, validate_extract_job, validate_job


def _object(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        (_object(a={"type": "string", "pattern": "^(?=x)x$"}), "look-arounds"),
        (_object(a={"type": "string", "pattern": "(a)\\1"}), "back-references"),
        (_object(a={"type": "string", "format": "hostname"}), "'hostname'"),
        (_object(a={"oneOf": [{"type": "string"}]}), "'oneOf'"),
        (_object(a={"type": "integer", "multipleOf": 0}), "multipleOf"),
        (_object(a={"type": "integer", "maxLength": 3}), "'maxLength'"),
        (
            _object(a={"type": "array", "items": {"type": "object"}, "uniqueItems": True}),
            "uniqueItems",
        ),
        (
            _object(
                a={"type": "array", "items": {"type": "string"}, "uniqueItems": True, "minItems": 2}
            ),
            "uniqueItems",
        ),
        (
            {"type": "object", "properties": {}, "additionalProperties": True},
            "additionalProperties",
        ),
        ({"type": "object", "properties": {}, "patternProperties": {}}, "'patternProperties'"),
        (_object(a={"type": "tuple"}), "tuple"),
        (_object(a={}), "give a type"),
        ({"type": "array", "items": {"type": "string"}}, "root"),
        (_object(a={"$ref": "#/$defs/missing"}), "$ref"),
    ],
)
def test_unsupported_schemas_are_refused_naming_the_keyword(
    schema: dict[str, Any], named: str
) -> None:
    with pytest.raises(UnsupportedSchemaError, match=named.replace("$", r"\$")):
        check_extract_schema(schema)


def test_the_keywords_people_write_are_accepted() -> None:
    schema = _object(
        code={"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"},
        at={"type": "string", "format": "date-time"},
        mail={"type": "string", "format": "email"},
        site={"type": "string", "format": "uri"},
        key={"type": "string", "format": "uuid"},
        share={"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        step={"type": "integer", "multipleOf": 5},
        tags={"type": "array", "items": {"type": "string"}, "uniqueItems": True},
    )

    assert check_extract_schema(schema)["properties"] == schema["properties"]


def test_recursive_references_are_refused() -> None:
    schema = {
        "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
        "type": "object",
        "properties": {"head": {"$ref": "#/$defs/node"}},
    }

    with pytest.raises(UnsupportedSchemaError, match="recursive"):
        check_extract_schema(schema)


def test_deep_and_large_schemas_are_refused() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(12):
        deep = _object(x=deep)
    wide = _object(**{f"p{i}": {"type": "string"} for i in range(500)})

    with pytest.raises(UnsupportedSchemaError, match="deeper"):
        check_extract_schema(deep)
    with pytest.raises(UnsupportedSchemaError, match=r"subschemas|characters"):
        check_extract_schema(wide)


def test_a_pydantic_model_schema_is_inlined_and_closed() -> None:
    class Person(BaseModel):
        name: str
        age: int | None = None

    class People(BaseModel):
        people: list[Person]

    normalised = check_extract_schema(People.model_json_schema())

    person = normalised["properties"]["people"]["items"]
    assert "$defs" not in normalised
    assert person["additionalProperties"] is False
    assert person["properties"]["age"]["anyOf"] == [{"type": "integer"}, {"type": "null"}]
    assert normalised["additionalProperties"] is False


def test_every_supported_keyword_is_accepted() -> None:
    schema = _object(
        s={"type": "string", "maxLength": 5, "minLength": 1, "description": "d", "title": "t"},
        e={"type": "string", "enum": ["a", "b"]},
        d={"type": "string", "format": "date"},
        i={"type": "integer", "minimum": 0, "maximum": 9},
        n={"type": "number", "minimum": -1.5},
        b={"type": "boolean"},
        z={"type": "null"},
        o={"type": ["string", "null"]},
        a={"anyOf": [{"type": "integer"}, {"type": "null"}]},
        c={"const": 3},
        arr={"type": "array", "items": {"type": "integer"}, "maxItems": 3, "minItems": 1},
        nested=_object(inner={"type": "boolean"}),
    )

    assert check_extract_schema(schema)["properties"]["nested"]["additionalProperties"] is False


def test_extract_jobs_validate_by_kind() -> None:
    payload = {
        "kind": "extract",
        "documents": [{"id": "a", "text": "x"}],
        "json_schema": _object(a={"type": "string"}),
    }

    assert isinstance(validate_job(payload), ExtractJob)
    with pytest.raises(UnsupportedSchemaError, match="'hostname'"):
        validate_extract_job(
            {**payload, "json_schema": _object(a={"type": "string", "format": "hostname"})}
        )
    with pytest.raises(Exception, match="unique"):
        validate_extract_job({**payload, "documents": [{"id": "a", "text": "x"}] * 2})
