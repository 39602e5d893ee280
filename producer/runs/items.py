"""A run's input file: its lines read and checked once each, through `tasks.limits`.

Each item becomes a checked job before anything is sent: a generate item carries its own
`GenerateJob`; extract items carry their group's `ExtractJob` (the options and schema shared by
every item of the group, checked once per group) and their own document. An item over a size
limit is not an error of the file: it is `rejected`, and fails alone when the run is followed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qfleet.producer import openai_batch
from qfleet.producer.runs.spec import RunFormat, RunKind, RunSpec
from qfleet.tasks.errors import InvalidJobError, QfleetError
from qfleet.tasks.limits import (
    LimitExceededError,
    document_refusal,
    parse_extract_job,
    parse_generate_job,
)
from qfleet.tasks.schemas import ExtractJob, GenerateJob, Priority
from qfleet.tasks.settings import Settings

# A run is background work: its generate items queue behind live traffic unless a line says so.
RUN_PRIORITY: Priority = "bulk"


@dataclass(frozen=True)
class RunItem:
    """One input line, checked, ready to become (part of) a job."""

    id: str
    kind: RunKind
    # generate: the item's job; extract: its group's job (the documents are filled in per chunk)
    job: GenerateJob | ExtractJob | None = None
    text: str = ""  # extract: the item's document
    group: str = ""  # extract items batch only with items of the same group (schema, options)
    rejected: str = ""  # why the item is over a size limit: it fails alone, and is never sent


def read_items(spec: RunSpec, settings: Settings | None = None) -> list[RunItem]:
    """Parse and check the input file; raises `InvalidJobError` naming the first bad line.

    An item over a size limit (prompt, document, max_tokens) is not an error of the file: it
    comes back with `rejected` set, and fails alone when the run is followed.
    """
    settings = settings or Settings()
    size = spec.input.stat().st_size
    if size > settings.max_batch_file_bytes:
        raise LimitExceededError(
            f"{spec.input} is {size} bytes; this fleet reads at most "
            f"{settings.max_batch_file_bytes} (QFLEET_MAX_BATCH_FILE_BYTES): split the file"
        )
    reader = _ItemReader(spec, settings)
    items, seen = [], set()
    for number, line in jsonl_lines(spec.input):
        try:
            item = reader.openai(line) if spec.format == "openai" else reader.native(line)
        except (ValueError, QfleetError) as exc:
            raise InvalidJobError(f"{spec.input}:{number}: {exc}") from exc
        if item.id in seen:
            raise InvalidJobError(f"{spec.input}:{number}: duplicate id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    return items


def detect_format(input_path: Path) -> RunFormat:
    """`openai` when the first line has a `custom_id`, else `native`."""
    for _, line in jsonl_lines(input_path):
        return "openai" if "custom_id" in line else "native"
    return "native"


def jsonl_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file."""
    with path.open(encoding="utf-8") as stream:
        for number, raw in enumerate(stream, 1):
            if not raw.strip():
                continue
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise InvalidJobError(f"{path}:{number}: each line must be a JSON object")
            yield number, data


class _ItemReader:
    """Turns lines into checked items; remembers each extract group's checked job."""

    def __init__(self, spec: RunSpec, settings: Settings) -> None:
        self.spec = spec
        self.settings = settings
        self.groups: dict[str, ExtractJob | str] = {}  # group -> its job, or why it is refused

    def native(self, line: dict[str, Any]) -> RunItem:
        item_id = str(line.get("id", ""))
        if not item_id:
            raise InvalidJobError('each line needs an "id"')
        spec = self.spec
        if spec.kind == "extract":
            text = line.get("text")
            if not isinstance(text, str):
                raise InvalidJobError(f'{item_id}: an extract line needs "text"')
            options = {"instructions": spec.instructions, "json_schema": spec.json_schema}
            return self.extract(item_id, text, options)
        fields = {k: v for k, v in line.items() if k not in ("id", "job_id", "kind")}
        fields.setdefault("max_tokens", spec.max_tokens)
        fields.setdefault("temperature", spec.temperature)
        fields.setdefault("priority", RUN_PRIORITY)
        return self.generate(item_id, fields)

    def openai(self, line: dict[str, Any]) -> RunItem:
        request = openai_batch.parse_request(line)
        body = request.body
        max_tokens = next(
            (n for n in (body.max_completion_tokens, body.max_tokens) if n is not None),
            self.spec.max_tokens,
        )
        temperature = self.spec.temperature if body.temperature is None else body.temperature
        schema = body.json_schema()
        if schema is not None:
            system = "\n".join(m.text() for m in body.messages if m.role in ("system", "developer"))
            document = "\n\n".join(m.text() for m in body.messages if m.role == "user")
            options = {
                "json_schema": schema,
                "instructions": system or None,
                "max_tokens": max_tokens,
                "temperature": temperature,
            }
            return self.extract(request.custom_id, document, options)
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        fields = {
            "messages": [
                {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                for m in body.messages
            ],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": body.top_p or 1.0,
            "stop": stop,
            "priority": RUN_PRIORITY,
        }
        return self.generate(request.custom_id, fields)

    def generate(self, item_id: str, fields: dict[str, Any]) -> RunItem:
        """A generate item, checked now (naming the line, not when it is sent)."""
        try:
            job = parse_generate_job(fields, self.settings)
        except LimitExceededError as exc:
            return RunItem(id=item_id, kind="generate", rejected=str(exc))
        return RunItem(id=item_id, kind="generate", job=job)

    def extract(self, item_id: str, text: str, options: dict[str, Any]) -> RunItem:
        """An extract item: its group's options checked once, its document's size each time."""
        if options.get("json_schema") is None:
            raise InvalidJobError("an extract run needs a schema (--schema or --schema-model)")
        options = {
            "max_tokens": self.spec.max_tokens,
            "temperature": self.spec.temperature,
            **options,
        }
        group = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]
        job = self.groups.get(group)
        if job is None:
            job = self.groups[group] = self._group_job(options)
        if isinstance(job, str):
            return RunItem(id=item_id, kind="extract", rejected=job)
        rejected = document_refusal(text, self.settings)
        if rejected:
            return RunItem(id=item_id, kind="extract", rejected=rejected)
        return RunItem(id=item_id, kind="extract", job=job, text=text, group=group)

    def _group_job(self, options: dict[str, Any]) -> ExtractJob | str:
        # One placeholder document: each chunk's job gets its items' documents instead.
        payload = {**options, "documents": [{"id": "d0", "text": ""}]}
        try:
            return parse_extract_job(payload, self.settings)
        except LimitExceededError as exc:
            return str(exc)
