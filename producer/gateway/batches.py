"""Following one batch: validate its input, run it as a bulk run, fill its files, finish it.

A batch runs on the bulk-run machinery (`BulkRun` with the OpenAI line format, run id = batch
id), which writes result lines to local files and resumes from them. The batch's files live in
Redis, so the seam is here: before the run, its local output and error files are rebuilt from the
Redis files; while it runs, every complete line appended locally is copied to Redis (each poll of
the run, through `on_progress`) by a script that appends a line only if its `custom_id` has none
yet. A follower killed between the local write and the copy loses nothing: the next follower sees
no line, resends the job with the same job id, the fleet's job-id claim keeps it from running
again, and the stored result is written. Every `custom_id` gets exactly one line.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from qfleet.producer import openai_batch
from qfleet.producer.client import FleetClient
from qfleet.producer.gateway.batch_input import check_input, custom_ids
from qfleet.producer.gateway.batch_store import BatchMeta, BatchStatus, BatchStore
from qfleet.producer.gateway.files import FileStore
from qfleet.producer.runs import BulkRun, RunCancelledError, RunProgress, RunSpec, cancel_run
from qfleet.tasks.settings import Settings

log = logging.getLogger("qfleet.gateway.batches")

# Result lines copied to Redis per script call: a long pause of Redis for none of them.
COPY_LINES = 500
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."


class BatchInterruptedError(Exception):
    """The follower must stop (lost its lease, or its process is stopping); another resumes."""


@dataclass
class _LocalFile:
    """A local file the run appends to, and how much of it is in Redis already."""

    path: Path
    file_id: str
    counter: str
    offset: int = 0


@dataclass
class BatchRun:
    """Follows one batch to a final status (or until interrupted); safe to start again."""

    settings: Settings
    store: BatchStore
    files: FileStore
    meta: BatchMeta
    work: Path
    interrupted: Callable[[], bool] = field(default=lambda: False)  # polled while it runs
    locals: list[_LocalFile] = field(default_factory=list)

    def follow(self) -> None:
        """Take the batch from where it stands to the end."""
        if self.store.status(self.meta.id) == "validating" and not self._validate():
            return
        found = self.store.get(self.meta.id)
        if found is None:
            return
        batch = found[1]
        if batch.status == "cancelling" and not batch.output_file_id:
            self._finish("cancelled", {"cancelling"})  # cancelled while it was validated
        elif batch.status in ("in_progress", "finalizing", "cancelling"):
            self._run(batch.output_file_id or "", batch.error_file_id or "")

    # --- validating -----------------------------------------------------------------------

    def _validate(self) -> bool:
        """Check the input file; on success the batch is `in_progress` with its files."""
        meta = self.meta
        input_key = self.store.input_key(meta.id)
        source = self.files.data_key(meta.input_file_id)
        if not self.files.redis.copy(source, input_key, replace=True):
            return self._fail("file_not_found", f"input file {meta.input_file_id} is gone")
        self.files.redis.expire(input_key, self.settings.gateway_file_ttl_s)
        spec = self._spec()
        problems = check_input(spec, meta.endpoint, self.settings)
        if self.store.status(meta.id) == "cancelling":
            self._finish("cancelled", {"cancelling"})
            return False
        if problems:
            errors = {"object": "list", "data": [p.model_dump() for p in problems]}
            self.store.transition(meta, "failed", {"validating"}, errors=json.dumps(errors))
            return False
        output = self.files.create(meta.tenant, f"{meta.id}_output.jsonl", "batch_output")
        errors_file = self.files.create(meta.tenant, f"{meta.id}_error.jsonl", "batch_output")
        fields = {
            "output_file_id": output.id,
            "error_file_id": errors_file.id,
            "total": str(len(custom_ids(spec.input))),
        }
        if self.store.transition(meta, "in_progress", {"validating"}, **fields):
            return True
        self.files.delete(output)
        self.files.delete(errors_file)
        self._finish("cancelled", {"cancelling"})  # the only way out of `validating` but ours
        return False

    def _fail(self, code: str, message: str) -> bool:
        errors = {"object": "list", "data": [{"code": code, "message": message}]}
        self.store.transition(self.meta, "failed", {"validating"}, errors=json.dumps(errors))
        return False

    def _spec(self) -> RunSpec:
        """The bulk run of this batch, its input copied to the work folder."""
        input_path = self.work / "input.jsonl"
        if not input_path.exists():
            self.files.copy_key(self.store.input_key(self.meta.id), input_path)
        return RunSpec(
            run_id=self.meta.id,
            kind="generate",
            input=input_path,
            output=self.work / "output.jsonl",
            errors=self.work / "errors.jsonl",
            format="openai",
            window=self.settings.batch_window,
        )

    # --- running --------------------------------------------------------------------------

    def _run(self, output_file_id: str, error_file_id: str) -> None:
        spec = self._spec()
        self.locals = [
            _LocalFile(spec.output, output_file_id, "completed"),
            _LocalFile(spec.errors, error_file_id, "failed"),
        ]
        for local in self.locals:
            local.offset = self.files.copy_to(local.file_id, local.path)
        # Bulk runs send OpenAI-format lines at bulk priority: batches never delay online work.
        fleet = FleetClient(self.settings)
        try:
            BulkRun(fleet, spec).execute(on_progress=lambda p: self._on_progress(fleet, p))
        except RunCancelledError:
            pass  # cancelled (or expired) before this follower started: finish it
        finally:
            fleet.close()
        self._copy_lines()
        self._end(spec)

    def _on_progress(self, fleet: FleetClient, progress: RunProgress) -> None:
        """Each poll of the run: copy new lines, act on a cancel or the deadline."""
        self._copy_lines()
        if progress.status == "running" and self._should_stop():
            cancel_run(fleet, self.meta.id)
        if self.interrupted():
            raise BatchInterruptedError(self.meta.id)

    def _should_stop(self) -> bool:
        return self.store.status(self.meta.id) == "cancelling" or self._expired()

    def _expired(self) -> bool:
        return time.time() > self.meta.expires_at

    def _copy_lines(self) -> None:
        """Copy the complete lines the run appended since the last call into the Redis files."""
        for local in self.locals:
            if not local.path.exists():
                continue
            with local.path.open("rb") as stream:
                stream.seek(local.offset)
                data = stream.read()
            complete = data[: data.rfind(b"\n") + 1]
            lines = [raw.decode() + "\n" for raw in complete.splitlines() if raw.strip()]
            for start in range(0, len(lines), COPY_LINES):
                pairs = [(_custom_id(line), line) for line in lines[start : start + COPY_LINES]]
                data_key = self.files.data_key(local.file_id)
                self.store.append(self.meta.id, data_key, local.counter, pairs)
            local.offset += len(complete)

    # --- finishing ------------------------------------------------------------------------

    def _end(self, spec: RunSpec) -> None:
        status = self.store.status(self.meta.id)
        if status == "cancelling":
            self._finish("cancelled", {"cancelling"})
            return
        missing = set(custom_ids(spec.input)) - self.store.answered(self.meta.id)
        if missing and self._expired():
            self._write_expired(spec, missing)
            self._finish("expired", {"in_progress", "finalizing"})
        elif not missing:
            self.store.transition(self.meta, "finalizing", {"in_progress", "finalizing"})
            self._finish("completed", {"finalizing"})
        else:
            # The run was cancelled under the batch (`qfleet run cancel`): so is the batch.
            log.warning("batch %s: run cancelled with %d requests left", self.meta.id, len(missing))
            self._finish("cancelled", {"in_progress", "finalizing"})

    def _write_expired(self, spec: RunSpec, missing: set[str]) -> None:
        """A `batch_expired` error line for each request without a line, in input order."""
        lines = [(cid, _expired_line(cid)) for cid in custom_ids(spec.input) if cid in missing]
        data_key = self.files.data_key(self.locals[1].file_id)
        for start in range(0, len(lines), COPY_LINES):
            self.store.append(self.meta.id, data_key, "failed", lines[start : start + COPY_LINES])

    def _finish(self, status: BatchStatus, allowed: set[str]) -> None:
        """Move to the final `status`; an empty error file is dropped (OpenAI names none)."""
        fields: dict[str, str] = {}
        found = self.store.get(self.meta.id)
        batch = found[1] if found else None
        for file_id in (batch.output_file_id, batch.error_file_id) if batch else ():
            if file_id:
                self.files.touch(file_id)
        if batch and batch.error_file_id and self.files.size(batch.error_file_id) == 0:
            fields["error_file_id"] = ""
        done = self.store.transition(self.meta, status, allowed, **fields)
        if done and "error_file_id" in fields and batch and batch.error_file_id:
            record = self.files.get(batch.error_file_id)
            if record is not None:
                self.files.delete(record)


def _custom_id(line: str) -> str:
    return str(json.loads(line)["custom_id"])


def _expired_line(custom_id: str) -> str:
    line = openai_batch.error_line(custom_id, code="batch_expired", message=EXPIRED_MESSAGE)
    return json.dumps(line) + "\n"
