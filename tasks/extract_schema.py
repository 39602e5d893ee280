"""Which JSON Schemas qfleet can guarantee, checked before a job is sent.

An extraction job promises one object per document that validates against the caller's schema.
That promise holds only for keywords the decoder turns into token constraints, so every other
keyword is refused here — at submit time, with the keyword named — instead of being silently
ignored by the worker. Pure Python on purpose: the producer runs it without any engine library.

The checker also normalises the schema: local `$ref`s are inlined (pydantic's `$defs`), and every
object gets `additionalProperties: false`, so the decoder never invents keys the caller did not
ask for.
"""

from __future__ import annotations

import json
import re
from typing import Any

from qfleet.tasks.errors import InvalidJobError

# Size bounds: the decoder compiles the schema per job and the prompt shows it to the model.
MAX_SCHEMA_CHARS = 32_000
MAX_SCHEMA_DEPTH = 8
MAX_SCHEMA_NODES = 400
MAX_ENUM_VALUES = 256
# Raw JSON nesting allowed before any walking: a subschema level is about three JSON levels
# (`properties` → name → subschema), with room for `$defs`, `anyOf` lists and enum values.
MAX_SCHEMA_JSON_NESTING = 4 * MAX_SCHEMA_DEPTH + 8

TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
# Keywords that only describe (never constrain): accepted and kept, the model may read them.
ANNOTATIONS = frozenset(
    {
        "title", "description", "default", "examples", "$comment", "$schema",
        # Identifiers and read/write hints (draft-04 spells `$id` as `id`): they name, never
        # constrain.
        "$id", "id", "readOnly", "writeOnly", "deprecated",
    }
)  # fmt: skip
# Formats the grammar enforces; each is also asserted by the final jsonschema check.
STRING_FORMATS = frozenset({"date", "date-time", "email", "uri", "uuid"})

_BOUNDS = ("exclusiveMinimum", "exclusiveMaximum", "multipleOf")
# Regular-expression features the grammar library cannot compile (it has no backtracking).
_REGEX_REFUSED = re.compile(r"\(\?<?[=!]|\\[1-9]|\\[bB]")
_KEYWORDS_BY_TYPE: dict[str, frozenset[str]] = {
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "maxItems", "minItems", "uniqueItems"}),
    "string": frozenset({"maxLength", "minLength", "format", "pattern"}),
    "integer": frozenset({"minimum", "maximum", *_BOUNDS}),
    "number": frozenset({"minimum", "maximum", *_BOUNDS}),
    "boolean": frozenset(),
    "null": frozenset(),
}
_ANY_TYPE_KEYWORDS = frozenset({"type", "enum", "const", "anyOf"})
SUPPORTED_KEYWORDS = frozenset().union(ANNOTATIONS, _ANY_TYPE_KEYWORDS, *_KEYWORDS_BY_TYPE.values())


class UnsupportedSchemaError(InvalidJobError):
    """The schema uses something qfleet cannot guarantee."""

    code = "unsupported_schema"


def check_extract_schema(
    schema: object, *, max_chars: int = MAX_SCHEMA_CHARS, max_depth: int = MAX_SCHEMA_DEPTH
) -> dict[str, Any]:
    """Check `schema` and return the normalised copy qfleet decodes against.

    Args:
        schema: the caller's JSON Schema.
        max_chars: the most characters of JSON accepted (a deployment may set it lower).
        max_depth: the most levels of nested subschemas accepted.

    Raises:
        UnsupportedSchemaError: a keyword, type or size qfleet cannot guarantee; the message
            names it and where it is (a JSON pointer).
    """
    if not isinstance(schema, dict):
        raise UnsupportedSchemaError("the schema must be a JSON object")
    # Measured without recursion first: json.dumps of a hostile, very deep value would raise
    # RecursionError instead of a clear refusal.
    if json_nesting(schema) > MAX_SCHEMA_JSON_NESTING:
        raise UnsupportedSchemaError(
            f"the schema is nested more than {MAX_SCHEMA_JSON_NESTING} JSON levels deep; at most "
            f"{max_depth} levels of subschemas are accepted (QFLEET_MAX_SCHEMA_DEPTH)"
        )
    size = len(json.dumps(schema))
    if size > max_chars:
        raise UnsupportedSchemaError(
            f"the schema is {size} characters of JSON; at most {max_chars} are accepted "
            "(QFLEET_MAX_SCHEMA_CHARS)"
        )
    walker = _SchemaWalker(schema, max_depth)
    normalised = walker.walk(schema, "#", depth=0)
    # Inlining $refs and closing objects can grow a schema: the copy that travels is what counts,
    # or the worker would refuse what the producer accepted.
    size = len(json.dumps(normalised))
    if size > max_chars:
        raise UnsupportedSchemaError(
            f"the schema, with $refs inlined, is {size} characters of JSON; at most {max_chars} "
            "are accepted (QFLEET_MAX_SCHEMA_CHARS)"
        )
    if normalised.get("type") != "object":
        raise UnsupportedSchemaError('the schema\'s root must be {"type": "object", ...}')
    return normalised


def json_nesting(value: object) -> int:
    """How many levels of lists and objects `value` nests (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, level = stack.pop()
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        )
        if children is None:
            continue
        deepest = max(deepest, level + 1)
        stack.extend((child, level + 1) for child in children)
    return deepest


class _SchemaWalker:
    """One pass over a schema: check every node, inline references, count nodes."""

    def __init__(self, root: dict[str, Any], max_depth: int = MAX_SCHEMA_DEPTH) -> None:
        self.max_depth = max_depth
        self.definitions: dict[str, Any] = {}
        for key in ("$defs", "definitions"):
            defs = root.get(key, {})
            if not isinstance(defs, dict):
                raise UnsupportedSchemaError(f"#/{key} must be an object")
            self.definitions.update({f"#/{key}/{name}": node for name, node in defs.items()})
        self.nodes = 0
        self._resolving: list[str] = []

    def walk(self, node: object, where: str, depth: int) -> dict[str, Any]:
        if not isinstance(node, dict):
            raise UnsupportedSchemaError(f"{where}: a schema must be an object, got {node!r}")
        self.nodes += 1
        if self.nodes > MAX_SCHEMA_NODES:
            raise UnsupportedSchemaError(f"the schema has more than {MAX_SCHEMA_NODES} subschemas")
        if depth > self.max_depth:
            raise UnsupportedSchemaError(
                f"{where}: nested deeper than {self.max_depth} levels (QFLEET_MAX_SCHEMA_DEPTH)"
            )
        if "$ref" in node:
            return self._inline(node, where, depth)
        # Definitions were collected from the root; what references them is inlined.
        body = {k: v for k, v in node.items() if k not in ("$defs", "definitions")}
        _refuse_unknown_keywords(body, where)
        types = _declared_types(body, where)
        _refuse_misplaced_keywords(body, types, where)
        return self._normalise(body, types, where, depth)

    def _inline(self, node: dict[str, Any], where: str, depth: int) -> dict[str, Any]:
        ref = node["$ref"]
        if not isinstance(ref, str):
            raise UnsupportedSchemaError(f"{where}/$ref must be a string")
        extra = set(node) - {"$ref"} - ANNOTATIONS
        if extra:
            raise UnsupportedSchemaError(
                f"{where}: keywords beside $ref are not supported: {extra}"
            )
        if ref not in self.definitions:
            raise UnsupportedSchemaError(
                f"{where}: $ref {ref!r} is not a local #/$defs/... reference"
            )
        if ref in self._resolving:
            raise UnsupportedSchemaError(f"{where}: recursive $ref {ref!r} is not supported")
        self._resolving.append(ref)
        try:
            return self.walk(self.definitions[ref], where, depth)
        finally:
            self._resolving.pop()

    def _normalise(
        self, body: dict[str, Any], types: set[str], where: str, depth: int
    ) -> dict[str, Any]:
        out = dict(body)
        if "anyOf" in body:
            options = body["anyOf"]
            if not isinstance(options, list) or not options:
                raise UnsupportedSchemaError(f"{where}/anyOf must be a non-empty list")
            out["anyOf"] = [
                self.walk(option, f"{where}/anyOf/{i}", depth + 1)
                for i, option in enumerate(options)
            ]
        if "object" in types:
            out.update(self._object(body, where, depth))
        if "array" in types and "items" in body:
            out["items"] = self.walk(body["items"], f"{where}/items", depth + 1)
        _check_scalars(body, where)
        return out

    def _object(self, body: dict[str, Any], where: str, depth: int) -> dict[str, Any]:
        properties = body.get("properties", {})
        if not isinstance(properties, dict):
            raise UnsupportedSchemaError(f"{where}/properties must be an object")
        required = body.get("required", [])
        if (
            not isinstance(required, list)
            or not all(isinstance(name, str) for name in required)
            or not set(required) <= set(properties)
        ):
            raise UnsupportedSchemaError(
                f"{where}/required must list names that are in properties, got {required!r}"
            )
        if body.get("additionalProperties", False) is not False:
            raise UnsupportedSchemaError(
                f"{where}/additionalProperties: only false is supported (extraction returns "
                "exactly the declared properties)"
            )
        return {
            "properties": {
                name: self.walk(sub, f"{where}/properties/{name}", depth + 1)
                for name, sub in properties.items()
            },
            "required": list(required),
            "additionalProperties": False,
        }


def _declared_types(body: dict[str, Any], where: str) -> set[str]:
    declared = body.get("type")
    if declared is None:
        if not ({"enum", "const", "anyOf"} & set(body)):
            raise UnsupportedSchemaError(
                f"{where}: give a type (or enum, const, anyOf); an unconstrained value cannot be "
                "guaranteed"
            )
        return set()
    names = declared if isinstance(declared, list) else [declared]
    # Non-string entries count as unknown (and are never looked up: a dict is unhashable).
    unknown = [n for n in names if not isinstance(n, str) or n not in TYPES]
    if unknown or not names:
        raise UnsupportedSchemaError(f"{where}/type: unsupported type {unknown or declared!r}")
    return set(names)


def _refuse_unknown_keywords(body: dict[str, Any], where: str) -> None:
    for keyword in body:
        if keyword not in SUPPORTED_KEYWORDS:
            raise UnsupportedSchemaError(
                f"{where}: keyword {keyword!r} is not supported by qfleet extraction; supported: "
                f"{', '.join(sorted(SUPPORTED_KEYWORDS))}"
            )


def _refuse_misplaced_keywords(body: dict[str, Any], types: set[str], where: str) -> None:
    for keyword in body:
        if keyword in ANNOTATIONS or keyword in _ANY_TYPE_KEYWORDS or not types:
            continue
        if not any(keyword in _KEYWORDS_BY_TYPE[t] for t in types):
            raise UnsupportedSchemaError(
                f"{where}: keyword {keyword!r} does not apply to type {sorted(types)}"
            )


def _check_scalars(body: dict[str, Any], where: str) -> None:
    fmt = body.get("format")
    if fmt is not None and (not isinstance(fmt, str) or fmt not in STRING_FORMATS):
        raise UnsupportedSchemaError(
            f"{where}/format: format {fmt!r} is not supported (supported: "
            f"{', '.join(sorted(STRING_FORMATS))})"
        )
    enum = body.get("enum")
    if enum is not None:
        if not isinstance(enum, list) or not enum or len(enum) > MAX_ENUM_VALUES:
            raise UnsupportedSchemaError(
                f"{where}/enum must be a list of 1 to {MAX_ENUM_VALUES} values"
            )
        if any(isinstance(v, dict | list) for v in enum):
            raise UnsupportedSchemaError(f"{where}/enum: only scalar values are supported")
    for keyword in ("maxLength", "minLength", "maxItems", "minItems"):
        value = body.get(keyword)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise UnsupportedSchemaError(f"{where}/{keyword} must be a non-negative integer")
    for keyword in ("minimum", "maximum", *_BOUNDS):
        value = body.get(keyword)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise UnsupportedSchemaError(f"{where}/{keyword} must be a number")
    if isinstance(body.get("multipleOf"), int | float) and body["multipleOf"] <= 0:
        raise UnsupportedSchemaError(f"{where}/multipleOf must be greater than 0")
    _check_pattern(body, where)
    _check_unique_items(body, where)


def _check_pattern(body: dict[str, Any], where: str) -> None:
    pattern = body.get("pattern")
    if pattern is None:
        return
    if not isinstance(pattern, str):
        raise UnsupportedSchemaError(f"{where}/pattern must be a string")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise UnsupportedSchemaError(f"{where}/pattern is not a regular expression: {exc}") from exc
    if _REGEX_REFUSED.search(pattern):
        raise UnsupportedSchemaError(
            f"{where}/pattern: look-arounds, back-references and word boundaries are not "
            "supported (the decoder's regular expressions cannot enforce them)"
        )


def _check_unique_items(body: dict[str, Any], where: str) -> None:
    """`uniqueItems` holds by ending the array at a repeated item: scalar items only."""
    if not body.get("uniqueItems"):
        return
    items = body.get("items", {})
    scalar = isinstance(items, dict) and (
        "enum" in items or items.get("type") in ("string", "integer", "boolean")
    )
    if not scalar or body.get("minItems", 0) > 1:
        raise UnsupportedSchemaError(
            f"{where}/uniqueItems is supported for arrays of strings, integers or booleans with "
            "minItems of at most 1 (the decoder ends the array at a repeated item)"
        )
