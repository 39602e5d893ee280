"""Reading request records: find, export as JSONL, attach feedback, purge (docs/quality.md).

The worker writes records (`qfleet.workers.records`); this is the producer's side of the same
PostgreSQL tables, opened by URL from `Settings.records_url`. It never imports the worker side.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from types import TracebackType
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from qfleet.tasks.records import PURGE_SQL, TABLE, Feedback, RequestRecord, connect
from qfleet.tasks.settings import Settings


class RecordQuery(BaseModel):
    """Which records to read; every field given narrows the set."""

    model_config = ConfigDict(extra="forbid")

    job_id: str | None = None
    run_id: str | None = None
    tenant: str | None = None
    kind: str | None = None
    model_id: str | None = None
    since: datetime | None = Field(default=None, description="Finished at or after.")
    until: datetime | None = Field(default=None, description="Finished before.")
    with_feedback: bool | None = Field(default=None, description="True: only with feedback.")
    limit: int | None = Field(default=None, ge=1)


_EQUAL = ("job_id", "run_id", "tenant", "kind", "model_id")


def _where(fleet: str, query: RecordQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = ["fleet = %s"]
    params: list[Any] = [fleet]
    for name in _EQUAL:
        value = getattr(query, name)
        if value is not None:
            clauses.append(f"{name} = %s")
            params.append(value)
    if query.since is not None:
        clauses.append("finished_at >= %s")
        params.append(query.since)
    if query.until is not None:
        clauses.append("finished_at < %s")
        params.append(query.until)
    if query.with_feedback is not None:
        clauses.append(f"feedback IS {'NOT ' if query.with_feedback else ''}NULL")
    return " AND ".join(clauses), params


class RecordStore:
    """This fleet's request records (fleet = the Redis key prefix)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.fleet = self.settings.redis_key_prefix
        self.conn = connect(self.settings)

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()

    def close(self) -> None:
        """Close the database connection."""
        self.conn.close()

    def get(self, job_id: str) -> RequestRecord | None:
        """The record of `job_id`, or None when it was not kept (or has expired)."""
        found = list(self.find(RecordQuery(job_id=job_id, limit=1)))  # closes its transaction
        return found[0] if found else None

    def find(self, query: RecordQuery | None = None) -> Iterator[RequestRecord]:
        """Records matching `query`, oldest first."""
        where, params = _where(self.fleet, query or RecordQuery())
        sql = f"SELECT record, feedback FROM {TABLE} WHERE {where} ORDER BY finished_at, job_id"
        if query is not None and query.limit is not None:
            sql += f" LIMIT {int(query.limit)}"
        # A server-side cursor (inside a transaction): an export of millions of records streams
        # in pages of `itersize` rows instead of loading them all.
        with self.conn.transaction(), self.conn.cursor(name="qfleet_records") as cursor:
            cursor.itersize = 500
            for record, feedback in cursor.execute(sql, params):
                yield RequestRecord.model_validate({**record, "feedback": feedback})

    def export(self, out: IO[str], query: RecordQuery | None = None) -> int:
        """Write the matching records to `out` as JSONL; returns how many."""
        count = 0
        for record in self.find(query):
            out.write(record.model_dump_json() + "\n")
            count += 1
        return count

    def set_feedback(self, job_id: str, feedback: Feedback) -> bool:
        """Attach `feedback` to the record of `job_id` (replacing earlier feedback)."""
        cursor = self.conn.execute(
            f"UPDATE {TABLE} SET feedback = %s, feedback_at = %s WHERE fleet = %s AND job_id = %s",
            (feedback.model_dump_json(), feedback.at, self.fleet, job_id),
        )
        return bool(cursor.rowcount)

    def purge(self, days: int | None = None) -> int:
        """Delete records older than `days` (default: the retention setting); returns how many."""
        days = self.settings.records_retention_days if days is None else days
        if days <= 0:
            return 0
        return int(self.conn.execute(PURGE_SQL, (self.fleet, days)).rowcount)

    def counts(self) -> dict[str, Any]:
        """How many records, how many with feedback, and of which verdicts."""
        row = self.conn.execute(
            f"""SELECT count(*), count(feedback),
                count(*) FILTER (WHERE feedback->>'verdict' = 'wrong')
                FROM {TABLE} WHERE fleet = %s""",
            (self.fleet,),
        ).fetchone()
        return {"records": row[0], "with_feedback": row[1], "wrong": row[2]}
