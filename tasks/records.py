"""Request records and feedback: what both sides agree a kept job looks like (docs/quality.md).

A worker writes one `RequestRecord` per finished job (when `Settings.records` says so) into
PostgreSQL; the producer side queries, exports and attaches `Feedback` to it. Only plain data and
SQL text live here: each side opens its own connection (psycopg), so this module stays light.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from qfleet.tasks.settings import Settings

RecordKind = Literal["generate", "rag", "extract"]
Verdict = Literal["right", "wrong"]

# The built-in redactions (Settings.records_redact). Deliberately broad: a stored record is read
# by people building datasets, and a masked non-secret costs less than a kept phone number.
REDACTIONS: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "card": r"\b(?:\d[ -]?){13,19}\b",
    "phone": (
        r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?"
        r"\d{2,4}[ .-]?\d{3,4}[ .-]?\d{3,4}\b"
    ),
    "ipv4": r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
}
# Cards before phones: a card number also looks like a long phone number.
_ORDER = ("email", "card", "phone", "ipv4")
MASK = "[redacted:{name}]"

TABLE = "qfleet_records"
GATE_TABLE = "qfleet_releases"
SCHEMA_SQL = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        fleet text NOT NULL,
        job_id text NOT NULL,
        kind text NOT NULL,
        status text NOT NULL,
        error_code text,
        run_id text,
        tenant text,
        queue text,
        worker text,
        model_id text,
        kb_version integer,
        submitted_at timestamptz,
        finished_at timestamptz NOT NULL,
        record jsonb NOT NULL,
        feedback jsonb,
        feedback_at timestamptz,
        PRIMARY KEY (fleet, job_id))""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_time ON {TABLE} (fleet, finished_at)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_run ON {TABLE} (fleet, run_id)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_tenant ON {TABLE} (fleet, tenant, finished_at)",
    f"""CREATE INDEX IF NOT EXISTS {TABLE}_feedback ON {TABLE} (fleet, feedback_at)
        WHERE feedback IS NOT NULL""",
    f"""CREATE TABLE IF NOT EXISTS {GATE_TABLE} (
        fleet text NOT NULL,
        name text NOT NULL,
        release jsonb NOT NULL,
        updated_at timestamptz NOT NULL,
        PRIMARY KEY (fleet, name))""",
)
# A job recorded again (a redrive, a retried write) keeps the feedback it already has.
INSERT_SQL = f"""INSERT INTO {TABLE} (fleet, job_id, kind, status, error_code, run_id, tenant,
    queue, worker, model_id, kb_version, submitted_at, finished_at, record)
    VALUES (%(fleet)s, %(job_id)s, %(kind)s, %(status)s, %(error_code)s, %(run_id)s, %(tenant)s,
    %(queue)s, %(worker)s, %(model_id)s, %(kb_version)s, %(submitted_at)s, %(finished_at)s,
    %(record)s)
    ON CONFLICT (fleet, job_id) DO UPDATE SET kind = EXCLUDED.kind, status = EXCLUDED.status,
    error_code = EXCLUDED.error_code, worker = EXCLUDED.worker, model_id = EXCLUDED.model_id,
    kb_version = EXCLUDED.kb_version, finished_at = EXCLUDED.finished_at,
    record = EXCLUDED.record"""
PURGE_SQL = (
    f"DELETE FROM {TABLE} WHERE fleet = %s AND finished_at < now() - make_interval(days => %s)"
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Feedback(_Model):
    """A person's verdict on one job's output, with the answer it should have given."""

    verdict: Verdict
    correction: str | dict[str, Any] | None = Field(
        default=None,
        description="The right answer: text, an object (one-document extraction) or objects by "
        "document id.",
    )
    note: str | None = Field(default=None, max_length=4_000)
    by: str | None = Field(default=None, max_length=200, description="Who gave it (free text).")
    at: datetime


class RequestRecord(_Model):
    """Everything needed to see, replay and judge one job later."""

    fleet: str = Field(description="The fleet's Redis key prefix ('' for the default fleet).")
    job_id: str
    kind: RecordKind
    status: Literal["succeeded", "failed"]
    error_code: str | None = None
    run_id: str | None = None
    tenant: str | None = None
    task: str
    queue: str | None = None
    worker: str | None = None
    model_id: str | None = Field(default=None, description="The model manifest id.")
    kb_version: int | None = None
    submitted_at: datetime | None = None
    started_at: datetime
    finished_at: datetime
    input: dict[str, Any] = Field(description="The job payload as submitted (redacted).")
    prompts: list[list[dict[str, str]]] = Field(
        default_factory=list,
        description="The conversations the model saw: one per generate job, one per document.",
    )
    passages: list[dict[str, Any]] = Field(
        default_factory=list, description="Retrieved passages with text, source and version."
    )
    output: dict[str, Any] = Field(description="The outcome as returned (redacted).")
    sources: list[dict[str, Any]] = Field(default_factory=list)
    timings: dict[str, Any] = Field(default_factory=dict)
    feedback: Feedback | None = None


class Redactor:
    """Masks what `Settings.records_redact(_patterns)` name in every string of a record."""

    def __init__(self, kinds: list[str], patterns: list[str]) -> None:
        named = [(k, REDACTIONS[k]) for k in _ORDER if k in kinds]
        named += [(f"pattern{n}", p) for n, p in enumerate(patterns)]
        self._rules = [(re.compile(p), MASK.format(name=name)) for name, p in named]

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor:
        """The redactor `settings` configure."""
        return cls(list(settings.records_redact), settings.records_redact_patterns)

    def text(self, value: str) -> str:
        """`value` with every match masked."""
        for rule, mask in self._rules:
            value = rule.sub(mask, value)
        return value

    def value(self, value: Any) -> Any:
        """A JSON value with every string in it redacted (keys are left alone)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value


def sampled(job_id: str, rate: float) -> bool:
    """Whether `job_id` falls in a `rate` sample; the same answer for every retry of the job."""
    digest = hashlib.sha256(job_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def should_record(settings: Settings, job_id: str) -> bool:
    """Whether this fleet keeps a record of `job_id`."""
    if settings.records == "off" or settings.records_url is None:
        return False
    return settings.records == "on" or sampled(job_id, settings.records_sample_rate)


def run_of(job_id: str) -> str | None:
    """The bulk run a job belongs to: run jobs are named `<run_id>.<item>` (producer.runs)."""
    head, dot, _ = job_id.partition(".")
    return head if dot else None


def record_row(record: RequestRecord) -> dict[str, Any]:
    """The parameters of `INSERT_SQL` for `record` (the JSON document as text)."""
    return {
        "fleet": record.fleet,
        "job_id": record.job_id,
        "kind": record.kind,
        "status": record.status,
        "error_code": record.error_code,
        "run_id": record.run_id,
        "tenant": record.tenant,
        "queue": record.queue,
        "worker": record.worker,
        "model_id": record.model_id,
        "kb_version": record.kb_version,
        "submitted_at": record.submitted_at,
        "finished_at": record.finished_at,
        "record": record.model_dump_json(exclude={"feedback"}),
    }


def connect(settings: Settings) -> Any:
    """A psycopg connection (autocommit) to the record store, its tables created if missing.

    Raises:
        RuntimeError: no `records_url` configured, or psycopg is not installed.
    """
    if settings.records_url is None:
        raise RuntimeError("no record store configured: set QFLEET_RECORDS_URL=postgresql://...")
    try:
        import psycopg
    except ImportError as exc:  # the producer install does not need it unless records are used
        raise RuntimeError("request records need psycopg: pip install 'qfleet[records]'") from exc
    conn = psycopg.connect(
        settings.records_url.get_secret_value(), autocommit=True, connect_timeout=3
    )
    ensure_schema(conn)
    return conn


def ensure_schema(conn: Any) -> None:
    """Create the tables once; an advisory lock keeps two processes from racing on DDL."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        for statement in SCHEMA_SQL:
            conn.execute(statement)


# Any fixed 64-bit number: the advisory lock that serialises schema creation.
_SCHEMA_LOCK = 0x71F1EE7
