"""The conversation an extraction prompt holds: the fields asked for, the rules, the document.

The schema is shown as a list of fields (name, what kind of value, the allowed values, whether
null is allowed, its description) and the reply's shape, rather than as JSON Schema text: on the
development set the two scored within one field of 64 and the list is the shorter prompt
(docs/extraction.md, "Ablation"). The rules say what the decoder and the reading code rely on:
copy dates and amounts as written, null when a value is not stated, each list item once.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from qfleet.tasks.schemas import ChatMessage, ExtractJob
from qfleet.workers.engine.chat import as_data
from qfleet.workers.extraction.values import is_currency_enum

PromptStyle = Literal["fields", "fields-short", "schema", "fields-reminder"]
DEFAULT_STYLE: PromptStyle = "fields"

SHORT_RULES = (
    "Rules: copy names, dates, amounts and currency marks exactly as the document writes them, "
    "in quotes; never convert or calculate. Use null when the document does not state a value; "
    "never guess. List each item once. Reply with one JSON object and nothing else."
)
# The short rules plus spellings to copy (a small model otherwise converts "35万" or "1.2
# million" itself, often wrongly) and how a written list becomes entries ("A, B and C" was kept
# as "B and C"). Measured against SHORT_RULES in docs/extraction.md, "Ablation".
RULES = (
    "Rules: copy names, dates, amounts and currency marks exactly as the document writes them, "
    'in quotes (for example "March 5, 2024", "2024年3月5日", "€1,250.00", "35万元", '
    '"1.2 million"); never convert or calculate. Use null when the document does not state a '
    "value; never guess or make one up. In a list, each item is its own entry, once: "
    '"A, B and C" or "A、B、C" is ["A", "B", "C"]. Reply with one JSON object and nothing else.'
)
SCHEMA_PROMPT = (
    "You extract structured data from documents. Reply with one JSON object and nothing else. "
    "The object must follow this JSON Schema:\n{schema}\n"
    "Use null for optional values the document does not state; never invent facts."
)


def _kind(node: dict[str, Any]) -> str:
    """A short human description of one subschema's value."""
    if "anyOf" in node:
        kinds = [_kind(o) for o in node["anyOf"] if o.get("type") != "null"]
        nullable = any(o.get("type") == "null" for o in node["anyOf"])
        return " or ".join(kinds) + (" or null" if nullable else "")
    if "enum" in node:
        values = ", ".join(json.dumps(v, ensure_ascii=False) for v in node["enum"])
        if is_currency_enum(node["enum"]):
            # Documents write currencies as marks (¥, 元, $, €); the reader knows them, and a
            # small model asked for a code alone tends to write the first one listed.
            return f"currency as the document writes it (mark, word or code), one of {values}"
        return f"one of {values}"
    if "const" in node:
        return f"always {json.dumps(node['const'], ensure_ascii=False)}"
    types = node.get("type", "value")
    names = types if isinstance(types, list) else [types]
    words = []
    for name in names:
        if name == "array":
            words.append(f"list of {_kind(node.get('items', {}))}")
        elif name == "string" and node.get("format"):
            words.append(str(node["format"]))
        elif name == "object":
            inner = ", ".join(f"{k}: {_kind(v)}" for k, v in node.get("properties", {}).items())
            words.append("{" + inner + "}")
        else:
            words.append(name)
    return " or ".join(words)


def _description(node: dict[str, Any]) -> str:
    """A property's description, or its first `anyOf` branch's ('' when none says one)."""
    inner = [o.get("description") for o in node.get("anyOf", []) if o.get("description")]
    return str(node.get("description") or (inner[0] if inner else ""))


def field_lines(schema: dict[str, Any]) -> str:
    """One line per root property: `- name (kind): description`."""
    lines = []
    for name, node in schema.get("properties", {}).items():
        description = _description(node)
        lines.append(f"- {name} ({_kind(node)})" + (f": {description}" if description else ""))
    return "\n".join(lines)


def skeleton(node: dict[str, Any]) -> str:
    """The reply's shape with placeholders: every copied value is quoted text, as written."""
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        return skeleton(options[0]) if options else "null"
    types = node.get("type")
    kind = (types[0] if isinstance(types, list) else types) or "string"
    if kind == "object":
        inner = ", ".join(
            f"{json.dumps(k)}: {skeleton(v)}" for k, v in node.get("properties", {}).items()
        )
        return "{" + inner + "}"
    if kind == "array":
        return f"[{skeleton(node.get('items', {}))}, ...]"
    if kind == "boolean":
        return "true or false"
    return '"..."'


def system_turn(job: ExtractJob, style: PromptStyle = DEFAULT_STYLE) -> str:
    """The system turn: what to extract and how."""
    if style == "schema":
        system = SCHEMA_PROMPT.format(schema=json.dumps(job.json_schema, ensure_ascii=False))
    else:
        rules = SHORT_RULES if style == "fields-short" else RULES
        system = (
            "You extract facts from one document into a JSON object with these fields, in this "
            f"order:\n{field_lines(job.json_schema)}\n{rules}\n"
            f"Reply in this shape: {skeleton(job.json_schema)}"
        )
    if job.instructions:
        system += "\n" + job.instructions
    return system


def extraction_messages(
    job: ExtractJob, document_text: str, style: PromptStyle = DEFAULT_STYLE
) -> list[ChatMessage]:
    """The conversation for one document: system turn, examples, the document.

    Everything before the last user turn is the same for every document of the job, so the
    decoder can pass it to CTranslate2 once, as a cached static prompt.
    """
    turns = [ChatMessage(role="system", content=system_turn(job, style))]
    for example in job.examples:
        turns.append(ChatMessage(role="user", content=_document_turn(example.text)))
        turns.append(
            ChatMessage(role="assistant", content=json.dumps(example.output, ensure_ascii=False))
        )
    last = _document_turn(document_text)
    if style == "fields-reminder":
        last += "\n\n" + reminder(job.json_schema)
    turns.append(ChatMessage(role="user", content=last))
    return turns


def reminder(schema: dict[str, Any]) -> str:
    """After the document, the fields again, compactly: `name (description); ...`."""
    parts = []
    for name, node in schema.get("properties", {}).items():
        description = _description(node)
        if not description and "enum" in node and not is_currency_enum(node["enum"]):
            description = _kind(node)  # the options again, next to the document
        parts.append(f"{name} ({description})" if description else name)
    return "Fields: " + "; ".join(parts) + "."


def _document_turn(text: str) -> str:
    # A document is data from anywhere: it must not spell its way out of its turn.
    return f"Document:\n{as_data(text)}"
