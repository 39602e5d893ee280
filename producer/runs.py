"""Bulk runs: a JSONL file of items in, one JSONL line per item out, resumable.

A run splits its items into jobs (a generate job per item; extract jobs of up to `batch`
documents sharing one schema). Job ids are derived from the run id and the item ids, so
submitting the same chunk again is deduplicated by the fleet's job-id claim.

The output file is the source of truth: each result is appended (and flushed) as it arrives, so
a partial run is useful, and on resume the ids already written are not asked for again. Failed
items go to the errors file with their reason. Redis holds the run's spec, its progress
(done/failed/total, rate, ETA), the jobs in flight, a cancel flag and a lease that keeps two
producers from following one run at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError

from qfleet.producer import openai_batch
from qfleet.producer.client import FleetClient
from qfleet.tasks.constants import RUN_KEY, RUN_LEASE_S, RUN_PENDING_KEY, RUN_TTL_S
from qfleet.tasks.errors import BrokerUnavailableError, InvalidJobError, QfleetError
from qfleet.tasks.extract_schema import check_extract_schema
from qfleet.tasks.limits import (
    LimitExceededError,
    document_too_large,
    parse_extract_job,
    parse_generate_job,
    prompt_too_large,
)
from qfleet.tasks.schemas import (
    MAX_DOCUMENTS_PER_JOB,
    ExtractJob,
    ExtractResult,
    GenerateJob,
    JobError,
    JobResult,
)
from qfleet.tasks.settings import Settings

RunKind = Literal["generate", "extract"]
RunFormat = Literal["native", "openai"]
RunStatus = Literal["running", "finished", "cancelled", "interrupted"]

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


class RunCancelledError(QfleetError):
    """The run was cancelled; a cancelled run is not resumed."""

    code = "run_cancelled"


class RunBusyError(QfleetError):
    """Another producer is following this run right now."""

    code = "run_busy"


class RunSpec(BaseModel):
    """Everything needed to (re)start a run; stored in Redis so `qfleet run resume` needs only
    the run id."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")
    kind: RunKind = "extract"
    input: Path
    output: Path
    errors: Path
    format: RunFormat = "native"
    json_schema: dict[str, Any] | None = None
    instructions: str | None = None
    max_tokens: int = 512
    temperature: float = 0.0
    batch: int = Field(default=16, ge=1, le=MAX_DOCUMENTS_PER_JOB)
    window: int = Field(default=64, ge=1, le=10_000, description="Jobs in flight at once.")


def default_run_id(input_path: Path, output: Path) -> str:
    """The same input and output give the same run id, so repeating a command resumes it."""
    key = f"{input_path.resolve()}\n{output.resolve()}"
    return "run-" + hashlib.sha256(key.encode()).hexdigest()[:12]


# --- items ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunItem:
    """One input line, ready to become (part of) a job."""

    id: str
    kind: RunKind
    fields: dict[str, Any]  # GenerateJob fields, or the extract document's text and options
    group: str = ""  # extract items batch only with items of the same group (schema, options)
    rejected: str = ""  # why the item is over a size limit: it fails alone, and is never sent


def read_items(spec: RunSpec, settings: Settings | None = None) -> list[RunItem]:
    """Parse the input file; raises `InvalidJobError` naming the first bad line.

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
    items, seen = [], set()
    for number, line in _jsonl(spec.input):
        try:
            item = (
                _openai_item(line, spec, settings)
                if spec.format == "openai"
                else _native_item(line, spec, settings)
            )
        except (ValueError, QfleetError) as exc:
            raise InvalidJobError(f"{spec.input}:{number}: {exc}") from exc
        if item.id in seen:
            raise InvalidJobError(f"{spec.input}:{number}: duplicate id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    return items


def detect_format(input_path: Path) -> RunFormat:
    """`openai` when the first line has a `custom_id`, else `native`."""
    for _, line in _jsonl(input_path):
        return "openai" if "custom_id" in line else "native"
    return "native"


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as stream:
        for number, raw in enumerate(stream, 1):
            if not raw.strip():
                continue
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise InvalidJobError(f"{path}:{number}: each line must be a JSON object")
            yield number, data


def _native_item(line: dict[str, Any], spec: RunSpec, settings: Settings) -> RunItem:
    item_id = str(line.get("id", ""))
    if not item_id:
        raise InvalidJobError('each line needs an "id"')
    if spec.kind == "extract":
        text = line.get("text")
        if not isinstance(text, str):
            raise InvalidJobError(f'{item_id}: an extract line needs "text"')
        options = {"instructions": spec.instructions, "json_schema": spec.json_schema}
        return _extract_item(item_id, text, options, spec, settings)
    fields = {k: v for k, v in line.items() if k not in ("id", "job_id", "kind")}
    fields.setdefault("max_tokens", spec.max_tokens)
    fields.setdefault("temperature", spec.temperature)
    return _generate_item(item_id, fields, settings)


def _generate_item(item_id: str, fields: dict[str, Any], settings: Settings) -> RunItem:
    """A generate item, validated now (naming the line, not when it is sent)."""
    chars = _prompt_chars(fields)
    if chars > settings.max_prompt_chars:  # before validation: the schema's hard cap is higher
        rejected = prompt_too_large(chars, settings)
        return RunItem(id=item_id, kind="generate", fields={}, rejected=rejected)
    try:
        parse_generate_job(fields, settings)
    except LimitExceededError as exc:
        return RunItem(id=item_id, kind="generate", fields={}, rejected=str(exc))
    return RunItem(id=item_id, kind="generate", fields=fields)


def _prompt_chars(fields: dict[str, Any]) -> int:
    texts = [fields.get("prompt"), fields.get("system")]
    messages = fields.get("messages")
    if isinstance(messages, list):
        texts += [m.get("content") for m in messages if isinstance(m, dict)]
    return sum(len(t) for t in texts if isinstance(t, str))


def _extract_item(
    item_id: str,
    text: str,
    options: dict[str, Any],
    spec: RunSpec,
    settings: Settings,
    **overrides: Any,
) -> RunItem:
    schema = options["json_schema"]
    if schema is None:
        raise InvalidJobError("an extract run needs a schema (--schema or --schema-model)")
    job_options = {
        "json_schema": check_extract_schema(
            schema, max_chars=settings.max_schema_chars, max_depth=settings.max_schema_depth
        ),
        "instructions": options["instructions"],
        "max_tokens": overrides.get("max_tokens", spec.max_tokens),
        "temperature": overrides.get("temperature", spec.temperature),
    }
    if len(text) > settings.max_document_chars:
        return RunItem(
            id=item_id,
            kind="extract",
            fields={},
            rejected=document_too_large(len(text), settings),
        )
    # Fail now, naming the line, not when its job is built mid-run.
    try:
        parse_extract_job({**job_options, "documents": [{"id": "d0", "text": text}]}, settings)
    except LimitExceededError as exc:
        return RunItem(id=item_id, kind="extract", fields={}, rejected=str(exc))
    group = hashlib.sha256(json.dumps(job_options, sort_keys=True).encode()).hexdigest()[:16]
    return RunItem(id=item_id, kind="extract", fields={"text": text, **job_options}, group=group)


def _openai_item(line: dict[str, Any], spec: RunSpec, settings: Settings) -> RunItem:
    request = openai_batch.parse_request(line)
    body = request.body
    max_tokens = next(
        (n for n in (body.max_completion_tokens, body.max_tokens) if n is not None), spec.max_tokens
    )
    temperature = spec.temperature if body.temperature is None else body.temperature
    schema = body.json_schema()
    if schema is not None:
        system = "\n".join(m.text() for m in body.messages if m.role in ("system", "developer"))
        document = "\n\n".join(m.text() for m in body.messages if m.role == "user")
        options = {"json_schema": schema, "instructions": system or None}
        return _extract_item(
            request.custom_id,
            document,
            options,
            spec,
            settings,
            max_tokens=max_tokens,
            temperature=temperature,
        )
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
    }
    return _generate_item(request.custom_id, fields, settings)


# --- jobs ----------------------------------------------------------------------------------------


def _job_id(run_id: str, item_ids: list[str]) -> str:
    """`<run>.<item>` for one item with a plain id; a digest of the ids otherwise."""
    if len(item_ids) == 1 and _SAFE_ID.match(item_ids[0]):
        return f"{run_id}.{item_ids[0]}"
    digest = hashlib.sha256("\n".join(item_ids).encode()).hexdigest()[:20]
    return f"{run_id}.{digest}"


def build_job(run_id: str, items: list[RunItem]) -> GenerateJob | ExtractJob:
    """The job for `items` (one generate item, or extract items of one group)."""
    job_id = _job_id(run_id, [item.id for item in items])
    first = items[0]
    if first.kind == "generate":
        return GenerateJob.model_validate({**first.fields, "job_id": job_id})
    options = {k: v for k, v in first.fields.items() if k != "text"}
    documents = [
        {"id": _document_id(n), "text": item.fields["text"]} for n, item in enumerate(items)
    ]
    return ExtractJob.model_validate({**options, "job_id": job_id, "documents": documents})


def _document_id(position: int) -> str:
    # Item ids may hold any characters; inside a job a document is named by its position.
    return f"d{position}"


def plan_chunks(items: list[RunItem], batch: int) -> list[list[RunItem]]:
    """Jobs' worth of items: generate items alone, extract items `batch` at a time per group."""
    chunks: list[list[RunItem]] = []
    open_chunks: dict[str, list[RunItem]] = {}
    for item in items:
        if item.kind == "generate":
            chunks.append([item])
            continue
        chunk = open_chunks.setdefault(item.group, [])
        chunk.append(item)
        if len(chunk) == batch:
            chunks.append(open_chunks.pop(item.group))
    chunks.extend(open_chunks.values())
    return chunks


# --- output --------------------------------------------------------------------------------------


class RunSink:
    """The output and errors files; appends are flushed line by line."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec

    def finished_ids(self) -> set[str]:
        """Ids already written (after cutting a torn last line left by a crash)."""
        ids: set[str] = set()
        for path in (self.spec.output, self.spec.errors):
            _cut_torn_tail(path)
            if path.exists():
                ids.update(_line_id(line) for _, line in _jsonl(path))
        return ids

    def write(self, item_id: str, record: dict[str, Any], *, failed: bool) -> None:
        """Append one item's record (native: every item to the output, failures to errors too;
        openai: successes to the output, failures to errors)."""
        openai = self.spec.format == "openai"
        targets = [self.spec.errors] if failed and openai else [self.spec.output]
        if failed and not openai:
            targets.append(self.spec.errors)
        text = json.dumps(record, ensure_ascii=False) + "\n"
        for path in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as stream:
                stream.write(text)
                stream.flush()


def _line_id(line: dict[str, Any]) -> str:
    return str(line.get("custom_id") or line.get("id"))


def _cut_torn_tail(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    path.write_bytes(data[: data.rfind(b"\n") + 1])


def records_for(
    spec: RunSpec, items: list[RunItem], outcome: JobResult | ExtractResult | JobError
) -> list[tuple[str, dict[str, Any], bool]]:
    """(item id, record, failed) for every item of one finished job."""
    if isinstance(outcome, JobError):
        return [_failure(spec, item.id, outcome.code, outcome.message) for item in items]
    if isinstance(outcome, JobResult):
        return [_generate_record(spec, items[0].id, outcome)]
    by_position = {item.id: item for item in outcome.items}
    records = []
    for n, run_item in enumerate(items):
        result = by_position.get(_document_id(n))
        if result is None:
            records.append(_failure(spec, run_item.id, "missing", "the job returned no item"))
        elif result.status == "failed" or result.object is None:
            code, reason = result.error_code or "failed", result.error or "no reason given"
            records.append(_failure(spec, run_item.id, code, reason))
        else:
            records.append(_extract_record(spec, run_item.id, outcome, result))
    return records


def _failure(
    spec: RunSpec, item_id: str, code: str, message: str
) -> tuple[str, dict[str, Any], bool]:
    if spec.format == "openai":
        return item_id, openai_batch.error_line(item_id, code=code, message=message), True
    record = {"id": item_id, "status": "failed", "error": {"code": code, "message": message}}
    return item_id, record, True


def _generate_record(
    spec: RunSpec, item_id: str, result: JobResult
) -> tuple[str, dict[str, Any], bool]:
    if spec.format == "openai":
        line = openai_batch.output_line(
            item_id,
            job_id=result.job_id,
            model=result.model.id,
            content=result.text,
            finish_reason=result.finish_reason,
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
        )
        return item_id, line, False
    record = {
        "id": item_id,
        "status": "succeeded",
        "text": result.text,
        "finish_reason": result.finish_reason,
        "usage": result.usage.model_dump(),
    }
    return item_id, record, False


def _extract_record(
    spec: RunSpec, item_id: str, outcome: ExtractResult, item: Any
) -> tuple[str, dict[str, Any], bool]:
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
        return item_id, line, False
    record = {
        "id": item_id,
        "status": item.status,
        "object": item.object,
        "finish_reason": item.finish_reason,
        "provenance": item.provenance,
        "usage": {
            "prompt_tokens": item.prompt_tokens,
            "completion_tokens": item.completion_tokens,
        },
    }
    if incomplete:
        record["code_fields"] = item.code_fields
    if item.notes:
        record["notes"] = item.notes
    return item_id, record, False


# --- progress and control in Redis -------------------------------------------------------------


class RunProgress(BaseModel):
    """Where a run stands (what `qfleet run status` prints)."""

    run_id: str
    status: RunStatus
    total: int = 0
    done: int = 0
    failed: int = 0
    in_flight: int = 0
    rate_per_s: float = 0.0
    eta_s: float | None = None
    output: str = ""
    errors: str = ""
    updated_at: float = 0.0

    @property
    def remaining(self) -> int:
        """Items with no line yet."""
        return max(self.total - self.done - self.failed, 0)


class RunStore:
    """A run's keys in Redis: spec and progress (a hash), jobs in flight (a hash), the lease."""

    def __init__(self, fleet: FleetClient, run_id: str) -> None:
        self.redis = fleet.app.backend.client
        prefix = fleet.settings.redis_key_prefix
        self.key = prefix + RUN_KEY.format(run_id=run_id)
        self.pending_key = prefix + RUN_PENDING_KEY.format(run_id=run_id)
        self.lease_key = self.key + ":lease"
        self.run_id = run_id

    def save_spec(self, spec: RunSpec) -> None:
        """Store what the run was submitted with (read back by `qfleet run resume`)."""
        self.redis.hset(self.key, mapping={"spec": spec.model_dump_json()})
        self._touch()

    def spec(self) -> RunSpec | None:
        """The stored spec, or None for an unknown run."""
        raw = self.redis.hget(self.key, "spec")
        return RunSpec.model_validate_json(raw) if raw else None

    def progress(self) -> RunProgress | None:
        """The last published progress, or None before any."""
        data = {k.decode(): v.decode() for k, v in self.redis.hgetall(self.key).items()}
        if "status" not in data:
            return None
        fields = {k: v for k, v in data.items() if k in RunProgress.model_fields}
        if fields.get("eta_s") == "":
            fields["eta_s"] = None
        return RunProgress.model_validate({"run_id": self.run_id, **fields})

    def publish(self, progress: RunProgress) -> None:
        """Store `progress` for `qfleet run status` (and refresh the run's TTL)."""
        mapping = progress.model_dump(mode="json", exclude={"run_id"})
        mapping["eta_s"] = "" if progress.eta_s is None else progress.eta_s
        self.redis.hset(self.key, mapping={k: str(v) for k, v in mapping.items()})
        self._touch()

    def status(self) -> str | None:
        """The run's status field alone (cheap: read every poll for a cancel)."""
        raw = self.redis.hget(self.key, "status")
        return raw.decode() if raw else None

    def set_status(self, status: RunStatus) -> None:
        """Set the run's status field."""
        self.redis.hset(self.key, "status", status)

    def pending(self) -> dict[str, list[str]]:
        """Jobs in flight: job id -> the item ids it covers."""
        return {k.decode(): json.loads(v) for k, v in self.redis.hgetall(self.pending_key).items()}

    def add_pending(self, job_id: str, item_ids: list[str]) -> None:
        """Record a job about to be sent."""
        self.redis.hset(self.pending_key, job_id, json.dumps(item_ids))
        self.redis.expire(self.pending_key, RUN_TTL_S)

    def drop_pending(self, job_id: str) -> None:
        """Forget a job whose items are written."""
        self.redis.hdel(self.pending_key, job_id)

    def take_lease(self, owner: str, wait_s: float) -> None:
        """Become the run's only follower, waiting up to `wait_s` for a dead one's lease."""
        deadline = time.monotonic() + wait_s
        while not self.redis.set(self.lease_key, owner, nx=True, ex=RUN_LEASE_S):
            if self._holder_died_here():
                self.redis.delete(self.lease_key)
                continue
            if time.monotonic() > deadline:
                raise RunBusyError(
                    f"run {self.run_id} is being followed by another producer; wait for it, or "
                    f"for {RUN_LEASE_S}s after it died"
                )
            time.sleep(0.2)

    def _holder_died_here(self) -> bool:
        """True when the lease belongs to a process of this host that no longer exists."""
        raw = self.redis.get(self.lease_key)
        host, _, pid = (raw or b"").decode().rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def renew_lease(self, owner: str) -> None:
        """Extend `owner`'s lease (taken back if it lapsed meanwhile)."""
        if self.redis.get(self.lease_key) in (None, owner.encode()):
            self.redis.set(self.lease_key, owner, ex=RUN_LEASE_S)

    def release_lease(self, owner: str) -> None:
        """Give the lease up if `owner` holds it."""
        if self.redis.get(self.lease_key) == owner.encode():
            self.redis.delete(self.lease_key)

    def _touch(self) -> None:
        self.redis.expire(self.key, RUN_TTL_S)


@contextmanager
def _broker_errors() -> Iterator[None]:
    """Redis failures as qfleet's `BrokerUnavailableError` (the CLI maps it to exit code 4)."""
    try:
        yield
    except RedisError as exc:
        raise BrokerUnavailableError(f"could not reach Redis: {exc}") from exc


# --- following a run -------------------------------------------------------------------------


ProgressSink = Callable[[RunProgress], None]


@dataclass
class BulkRun:
    """Submits a run's jobs (a window at a time), collects their results, writes the output."""

    fleet: FleetClient
    spec: RunSpec
    poll_s: float = 0.2
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def __post_init__(self) -> None:
        self.store = RunStore(self.fleet, self.spec.run_id)
        self.sink = RunSink(self.spec)

    def execute(self, on_progress: ProgressSink | None = None) -> RunProgress:
        """Run to the end (or until cancelled); safe to call again after any crash."""
        items = read_items(self.spec, self.fleet.settings)
        with _broker_errors():
            return self._execute(items, on_progress)

    def _execute(self, items: list[RunItem], on_progress: ProgressSink | None) -> RunProgress:
        self.store.take_lease(self.owner, wait_s=RUN_LEASE_S + 2)
        try:
            if self.store.status() == "cancelled":
                raise RunCancelledError(
                    f"run {self.spec.run_id} was cancelled; its finished lines stay in "
                    f"{self.spec.output}: start a new run (--run-id) to do the rest"
                )
            self.store.save_spec(self.spec)
            self.store.set_status("running")
            return self._follow(items, on_progress or (lambda _: None))
        finally:
            self.store.release_lease(self.owner)

    def _follow(self, items: list[RunItem], on_progress: ProgressSink) -> RunProgress:
        by_id = {item.id: item for item in items}
        finished = self.sink.finished_ids() & set(by_id)
        pending = self._resume_pending(by_id, finished)
        in_flight = {item.id for chunk in pending.values() for item in chunk}
        skip = finished | in_flight
        # A fleet that takes fewer documents per job than --batch gets smaller jobs, not refusals.
        batch = min(self.spec.batch, self.fleet.settings.max_documents_per_job)
        todo = plan_chunks([i for i in items if i.id not in skip and not i.rejected], batch)
        tracker = _Tracker(self.spec, total=len(items), already=self._counts(finished))
        tracker.add(self._reject(items, finished))
        while (todo or pending) and self.store.status() != "cancelled":
            self._submit_window(todo, pending)
            for job_id in list(pending):
                outcome = self.fleet.result(job_id)
                if outcome is not None:
                    tracker.add(self._write(pending.pop(job_id), outcome, finished))
                    self.store.drop_pending(job_id)
            progress = tracker.progress("running", len(pending))
            self.store.publish(progress)
            on_progress(progress)
            self.store.renew_lease(self.owner)
            if pending:
                time.sleep(self.poll_s)
        status: RunStatus = "cancelled" if self.store.status() == "cancelled" else "finished"
        progress = tracker.progress(status, len(pending))
        self.store.publish(progress)
        on_progress(progress)
        return progress

    def _resume_pending(
        self, by_id: dict[str, RunItem], finished: set[str]
    ) -> dict[str, list[RunItem]]:
        """Jobs a previous follower sent; each is sent again, which the job-id claim makes a
        no-op unless the previous follower died before sending it."""
        pending = {}
        for job_id, ids in self.store.pending().items():
            chunk = [by_id[i] for i in ids if i in by_id]
            if not chunk or all(item.id in finished for item in chunk):
                self.store.drop_pending(job_id)
                continue
            self.fleet.submit(build_job(self.spec.run_id, chunk))
            pending[job_id] = chunk
        return pending

    def _reject(self, items: list[RunItem], finished: set[str]) -> tuple[int, int]:
        """Write a failure line for each item over a size limit; nothing of it is sent."""
        failed = 0
        for item in items:
            if item.rejected and item.id not in finished:
                _, record, _ = _failure(self.spec, item.id, "invalid_job", item.rejected)
                self.sink.write(item.id, record, failed=True)
                finished.add(item.id)
                failed += 1
        return 0, failed

    def _counts(self, finished: set[str]) -> tuple[int, int]:
        failed = 0
        if self.spec.errors.exists():
            failed = len({_line_id(line) for _, line in _jsonl(self.spec.errors)} & finished)
        return len(finished) - failed, failed

    def _submit_window(self, todo: list[list[RunItem]], pending: dict[str, list[RunItem]]) -> None:
        while todo and len(pending) < self.spec.window:
            chunk = todo.pop(0)
            job = build_job(self.spec.run_id, chunk)
            # Recorded before sending: a crash in between leaves a job id to wait on, and the
            # fleet's job-id claim keeps a resend of the same chunk from running twice.
            self.store.add_pending(job.job_id, [item.id for item in chunk])
            self.fleet.submit(job)
            pending[job.job_id] = chunk

    def _write(
        self,
        chunk: list[RunItem],
        outcome: JobResult | ExtractResult | JobError,
        finished: set[str],
    ) -> tuple[int, int]:
        done = failed = 0
        for item_id, record, is_failure in records_for(self.spec, chunk, outcome):
            if item_id in finished:  # a redelivered job's second result
                continue
            self.sink.write(item_id, record, failed=is_failure)
            finished.add(item_id)
            failed += is_failure
            done += not is_failure
        return done, failed


class _Tracker:
    """Counts and rate of one follow session (the rate counts this session's items only)."""

    def __init__(self, spec: RunSpec, *, total: int, already: tuple[int, int]) -> None:
        self.spec = spec
        self.total = total
        self.done, self.failed = already
        self.started = time.monotonic()
        self.this_session = 0

    def add(self, counts: tuple[int, int]) -> None:
        self.done += counts[0]
        self.failed += counts[1]
        self.this_session += counts[0] + counts[1]

    def progress(self, status: RunStatus, in_flight: int) -> RunProgress:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.this_session / elapsed
        remaining = max(self.total - self.done - self.failed, 0)
        return RunProgress(
            run_id=self.spec.run_id,
            status=status,
            total=self.total,
            done=self.done,
            failed=self.failed,
            in_flight=in_flight,
            rate_per_s=rate,
            eta_s=remaining / rate if rate > 0 else None,
            output=str(self.spec.output),
            errors=str(self.spec.errors),
            updated_at=time.time(),
        )


def cancel_run(fleet: FleetClient, run_id: str) -> RunProgress | None:
    """Mark the run cancelled and revoke its jobs in flight; None when the run is unknown."""
    store = RunStore(fleet, run_id)
    with _broker_errors():
        if store.spec() is None:
            return None
        store.set_status("cancelled")
        job_ids = list(store.pending())
        if job_ids:
            fleet.app.control.revoke(job_ids)
        return store.progress()


def run_progress(fleet: FleetClient, run_id: str) -> RunProgress | None:
    """The run's last published progress, or None when the run is unknown."""
    with _broker_errors():
        return RunStore(fleet, run_id).progress()


def stored_spec(fleet: FleetClient, run_id: str) -> RunSpec | None:
    """The spec a run was submitted with (for `qfleet run resume`)."""
    with _broker_errors():
        return RunStore(fleet, run_id).spec()
