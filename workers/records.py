"""The worker's half of request records: one durable record per finished job (docs/quality.md).

`RecordSink.write` is called from the job policy's single outcome point, so every task kind is
recorded the same way. A record store that is down never fails or stalls a job: the write is
dropped with a warning and the sink waits `RETRY_CONNECT_S` before it tries to connect again.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from celery import Task

from qfleet.tasks.records import (
    INSERT_SQL,
    PURGE_SQL,
    Redactor,
    RequestRecord,
    connect,
    record_row,
    run_of,
    should_record,
)
from qfleet.tasks.schemas import ExtractJob, GenerateJob, validate_job
from qfleet.tasks.settings import Settings

log = logging.getLogger("qfleet.worker")

# After a failed connect, jobs run unrecorded this long before the next try (a down database
# must not add a connect timeout to every job).
RETRY_CONNECT_S = 30.0
# Each process deletes expired records at most this often (and at its first write).
PURGE_INTERVAL_S = 3_600.0


class RecordSink:
    """Writes `RequestRecord`s to PostgreSQL per `Settings.records`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redactor = Redactor.from_settings(settings)
        self._conn: Any = None
        self._lock = threading.Lock()
        self._next_connect = 0.0
        self._next_purge = 0.0

    def write(
        self, task: Task, payload: Any, outcome: Any, started_at: float, submitted_at: float | None
    ) -> None:
        """Record the job `task` just finished with `outcome`, if this fleet keeps records."""
        job_id = str(task.request.id)
        if not should_record(self.settings, job_id) or not isinstance(outcome, dict):
            return
        try:
            record = self.build(task, payload, outcome, started_at, submitted_at)
        except Exception:
            log.exception("job %s: could not build its request record", job_id)
            return
        self._store(record)

    def build(
        self, task: Task, payload: Any, outcome: dict[str, Any], started_at: float,
        submitted_at: float | None,
    ) -> RequestRecord:  # fmt: skip
        """The redacted record of one finished job."""
        job = payload if isinstance(payload, dict) else {}
        kwargs = getattr(task.request, "kwargs", None) or {}
        context = kwargs.get("context") if isinstance(kwargs.get("context"), dict) else None
        kind = "extract" if job.get("kind") == "extract" else "generate"
        if kind == "generate" and (context is not None or job.get("retrieval")):
            kind = "rag"
        delivery = task.request.delivery_info or {}
        model = outcome.get("model") if isinstance(outcome.get("model"), dict) else {}
        tenant = job.get("tenant") or kwargs.get("tenant")
        redact = self.redactor.value
        return RequestRecord(
            fleet=self.settings.redis_key_prefix,
            job_id=str(task.request.id),
            kind=kind,
            status="failed" if outcome.get("status") == "failed" else "succeeded",
            error_code=outcome.get("code"),
            run_id=run_of(str(task.request.id)),
            tenant=str(tenant) if tenant else None,
            task=task.name,
            queue=str(delivery.get("routing_key") or "") or None,
            worker=task.request.hostname,
            model_id=(model or {}).get("id"),
            kb_version=(context or {}).get("kb_version"),
            submitted_at=_utc(submitted_at),
            started_at=_utc(started_at) or datetime.now(UTC),
            finished_at=datetime.now(UTC),
            input=redact(job),
            prompts=redact(_prompts(job, context)),
            passages=redact(list((context or {}).get("passages") or [])),
            output=redact(outcome),
            sources=list(outcome.get("sources") or []),
            timings=dict(outcome.get("timings") or {}),
        )

    def _store(self, record: RequestRecord) -> None:
        with self._lock:
            conn = self._connection()
            if conn is None:
                return
            try:
                conn.execute(INSERT_SQL, record_row(record))
                self._purge(conn)
            except Exception as exc:
                log.warning("job %s: request record not written (%s)", record.job_id, exc)
                self._drop(conn)

    def _connection(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if time.monotonic() < self._next_connect:
            return None
        try:
            self._conn = connect(self.settings)
        except Exception as exc:
            log.warning("record store unreachable (%s); retrying in %.0fs", exc, RETRY_CONNECT_S)
            self._next_connect = time.monotonic() + RETRY_CONNECT_S
            return None
        return self._conn

    def _purge(self, conn: Any) -> None:
        days = self.settings.records_retention_days
        if days <= 0 or time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_INTERVAL_S
        deleted = conn.execute(PURGE_SQL, (self.settings.redis_key_prefix, days)).rowcount
        if deleted:
            log.info("deleted %d request records older than %d days", deleted, days)

    def _drop(self, conn: Any) -> None:
        try:
            conn.close()
        finally:
            self._conn = None

    def close(self) -> None:
        """Close the connection (at worker shutdown)."""
        with self._lock:
            if self._conn is not None:
                self._drop(self._conn)


def _utc(stamp: float | None) -> datetime | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, UTC)


def _prompts(job: dict[str, Any], context: dict[str, Any] | None) -> list[list[dict[str, str]]]:
    """The conversations the model saw (empty for a payload that did not validate)."""
    # Imported here: the engine-side prompt builders pull in the tokenizer stack.
    from qfleet.workers.extraction import extraction_messages
    from qfleet.workers.knowledge.rag import augment_messages, parse_context

    try:
        parsed = validate_job(job)
    except Exception:
        return []
    if isinstance(parsed, ExtractJob):
        chats = [extraction_messages(parsed, doc.text) for doc in parsed.documents]
    else:
        assert isinstance(parsed, GenerateJob)
        chats = [augment_messages(parsed, parse_context(context))[0].chat()]
    return [[m.model_dump() for m in chat] for chat in chats]
