"""Which fields of a schema are closed choices the decoder calibrates (guided_choice.py).

A boolean, or a string enum whose options are words rather than currency codes (a currency is
copied as the document writes its mark and read by code). Each gets the prompt with no document,
up to where its value starts, for the document-free scores the model's are weighed against.
"""

from __future__ import annotations

import json
from typing import Any

from qfleet.tasks.schemas import ExtractJob
from qfleet.workers.engine.chat import ChatTokenizer
from qfleet.workers.engine.guided_choice import Choice
from qfleet.workers.extraction.fields import node_types, properties
from qfleet.workers.extraction.prompt import PromptStyle, extraction_messages
from qfleet.workers.extraction.values import is_currency_enum


def closed_choices(
    job: ExtractJob, tokenizer: ChatTokenizer, style: PromptStyle
) -> dict[str, Choice]:
    """The job's root fields whose option the model's calibrated scores decide."""
    empty = tokenizer.encode(tokenizer.render(extraction_messages(job, "", style)))
    found: dict[str, Choice] = {}
    for name, node in properties(job.json_schema).items():
        options, quoted = _options(node)
        if len(options) < 2:
            continue
        texts = [json.dumps(o, ensure_ascii=False) for o in options]
        # A string option is decided after its opening quote (`health"` follows `: "`); a bare
        # literal right after the colon, where the model writes it with its space (` true`:
        # the tokenizer's word, which a prompt ending in a lone space would not be).
        values = [t[1:] if quoted else " " + t for t in texts]
        first = [tokenizer.encode(v[:-1] if quoted else v)[0] for v in values]
        if len(set(first)) < len(first):
            continue  # options that start alike cannot be told apart by one token
        lead = "{" + json.dumps(name, ensure_ascii=False) + (': "' if quoted else ":")
        prompt = empty + tokenizer.encode(lead)
        found[name] = Choice([v.encode() for v in values], first, quoted, prompt)
    return found


def _options(node: dict[str, Any]) -> tuple[list[Any], bool]:
    """A node's options and whether they are quoted strings; ([], _) for no closed choice."""
    if node_types(node) == {"boolean"} and "enum" not in node:
        return [True, False], False
    if "anyOf" in node:
        kept = [o for o in node["anyOf"] if o.get("type") != "null"]
        return _options(kept[0]) if len(kept) == 1 else ([], False)
    options = [v for v in node.get("enum", []) if v is not None]
    if not options or not all(isinstance(v, str) for v in options):
        return [], False
    if is_currency_enum(options):
        return [], False
    return options, True
