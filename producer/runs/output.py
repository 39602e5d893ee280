"""A run's output and errors files: one line per item, appended and flushed as results arrive.

The output file is the source of truth: on resume the ids already written are not asked for
again. Native runs write every item to the output (failures to the errors file too); OpenAI
runs write successes to the output and failures to the errors file, in OpenAI's line shapes.
An item cancelled with its run is written to the errors file only and does not count as
written: a new run over the same files does it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from qfleet.producer import openai_batch
from qfleet.producer.runs.chunks import document_id
from qfleet.producer.runs.items import RunItem, jsonl_lines
from qfleet.producer.runs.spec import RunSpec
from qfleet.tasks.schemas import ExtractItem, ExtractResult, GenerateJob, JobError, JobResult

CANCELLED = "cancelled"  # the error code of an item whose job was cancelled


class RunRecord(NamedTuple):
    """One item's line, and how it ended."""

    item_id: str
    record: dict[str, Any]
    failed: bool
    cancelled: bool = False


class RunSink:
    """The output and errors files; appends are flushed line by line."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec

    def finished_ids(self) -> set[str]:
        """Ids already written (after cutting a torn last line left by a crash)."""
        ids: set[str] = set()
        for path in (self.spec.output, self.spec.errors):
            cut_torn_tail(path)
            if path.exists():
                ids.update(line_id(line) for _, line in jsonl_lines(path) if not _cancelled(line))
        return ids

    def failed_ids(self) -> set[str]:
        """Ids with a failure line (cancelled items excluded)."""
        if not self.spec.errors.exists():
            return set()
        lines = jsonl_lines(self.spec.errors)
        return {line_id(line) for _, line in lines if not _cancelled(line)}

    def write(
        self, item_id: str, record: dict[str, Any], *, failed: bool, cancelled: bool = False
    ) -> None:
        """Append one item's record (native: every item to the output, failures to errors too;
        openai: successes to the output, failures to errors; cancelled: errors only)."""
        openai = self.spec.format == "openai"
        targets = [self.spec.errors] if failed and (openai or cancelled) else [self.spec.output]
        if failed and not openai and not cancelled:
            targets.append(self.spec.errors)
        text = json.dumps(record, ensure_ascii=False) + "\n"
        for path in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as stream:
                stream.write(text)
                stream.flush()

    def put(self, record: RunRecord) -> None:
        """Append `record` where its outcome belongs."""
        self.write(record.item_id, record.record, failed=record.failed, cancelled=record.cancelled)


def line_id(line: dict[str, Any]) -> str:
    """The item id a written line is for (native `id`, OpenAI `custom_id`)."""
    return str(line.get("custom_id") or line.get("id"))


def _cancelled(line: dict[str, Any]) -> bool:
    error = line.get("error")
    return line.get("status") == CANCELLED or (
        isinstance(error, dict) and error.get("code") == CANCELLED
    )


def cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline (a producer killed mid-write)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    path.write_bytes(data[: data.rfind(b"\n") + 1])


def records_for(
    spec: RunSpec, items: list[RunItem], outcome: JobResult | ExtractResult | JobError
) -> list[RunRecord]:
    """One record for every item of one finished job."""
    if isinstance(outcome, JobError):
        return [failure(spec, item.id, outcome.code, outcome.message) for item in items]
    if isinstance(outcome, JobResult):
        return [_generate_record(spec, items[0], outcome)]
    by_position = {item.id: item for item in outcome.items}
    records = []
    for n, run_item in enumerate(items):
        result = by_position.get(document_id(n))
        if result is None:
            records.append(failure(spec, run_item.id, "missing", "the job returned no item"))
        elif result.status == "failed" or result.object is None:
            code, reason = result.error_code or "failed", result.error or "no reason given"
            records.append(failure(spec, run_item.id, code, reason))
        else:
            records.append(_extract_record(spec, run_item.id, outcome, result))
    return records


def failure(spec: RunSpec, item_id: str, code: str, message: str) -> RunRecord:
    """An item that failed (or was cancelled: `code` says so)."""
    cancelled = code == CANCELLED
    if spec.format == "openai":
        line = openai_batch.error_line(item_id, code=code, message=message)
        return RunRecord(item_id, line, True, cancelled)
    status = CANCELLED if cancelled else "failed"
    record = {"id": item_id, "status": status, "error": {"code": code, "message": message}}
    return RunRecord(item_id, record, True, cancelled)


def _generate_record(spec: RunSpec, item: RunItem, result: JobResult) -> RunRecord:
    if spec.format == "openai":
        line = openai_batch.output_line(
            item.id,
            job_id=result.job_id,
            model=result.model.id,
            content=result.text,
            finish_reason=result.finish_reason,
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
        )
        return RunRecord(item.id, line, False)
    record: dict[str, Any] = {
        "id": item.id,
        "status": "succeeded",
        "text": result.text,
        "finish_reason": result.finish_reason,
        "usage": result.usage.model_dump(),
    }
    if isinstance(item.job, GenerateJob) and item.job.retrieval is not None:
        # A RAG answer is only as good as what it was given: keep what it cites.
        record["sources"] = [source.model_dump(mode="json") for source in result.sources]
    return RunRecord(item.id, record, False)


def _extract_record(
    spec: RunSpec, item_id: str, outcome: ExtractResult, item: ExtractItem
) -> RunRecord:
    """A succeeded or incomplete item (docs/extraction.md, "Item status and provenance")."""
    incomplete = item.status == "incomplete"
    if spec.format == "openai":
        line = openai_batch.output_line(
            item_id,
            job_id=outcome.job_id,
            model=outcome.model.id,
            content=json.dumps(item.object, ensure_ascii=False),
            # OpenAI's word for "this object is not whole": code chose or left out some values.
            finish_reason="length" if incomplete else item.finish_reason or "stop",
            prompt_tokens=item.prompt_tokens,
            completion_tokens=item.completion_tokens,
        )
        return RunRecord(item_id, line, False)
    record: dict[str, Any] = {
        "id": item_id,
        "status": item.status,
        "object": item.object,
        "finish_reason": item.finish_reason,
        "provenance": item.provenance,
        "usage": {"prompt_tokens": item.prompt_tokens, "completion_tokens": item.completion_tokens},
    }
    if incomplete:
        record["code_fields"] = item.code_fields
    if item.notes:
        record["notes"] = item.notes
    return RunRecord(item_id, record, False)
