"""`KnowledgeClient`: ingest documents, search and administer the knowledge base through jobs.

The knowledge base lives in one worker (or a Qdrant server behind the workers); the producer
never opens it: every operation is a job on `qfleet.ingest` or `qfleet.retrieve`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from celery.result import AsyncResult

from qfleet.producer.client import BROKER_ERRORS, FleetClient, poll_outcome
from qfleet.tasks.constants import (
    PRIORITY_BULK,
    PRIORITY_INTERACTIVE,
    QUEUE_INGEST,
    QUEUE_RETRIEVE,
    TASK_INGEST,
    TASK_KB_ADMIN,
    TASK_RETRIEVE,
)
from qfleet.tasks.errors import BrokerUnavailableError
from qfleet.tasks.knowledge import (
    IngestJob,
    IngestResult,
    KnowledgeAdminJob,
    KnowledgeAdminResult,
    KnowledgeJob,
    KnowledgeResult,
    RetrieveJob,
    RetrieveResult,
    parse_knowledge_outcome,
    validate_knowledge_job,
)
from qfleet.tasks.schemas import JobError

R = TypeVar("R", IngestResult, RetrieveResult, KnowledgeAdminResult)
# Task, queue and priority per kind. Searches and admin commands are quick and someone waits on
# them: interactive, so a worker's interactive lane takes them. Ingest embeds whole documents:
# bulk, so it never takes a job thread kept for interactive jobs.
_ROUTES: dict[str, tuple[str, str, int]] = {
    "ingest": (TASK_INGEST, QUEUE_INGEST, PRIORITY_BULK),
    "kb_admin": (TASK_KB_ADMIN, QUEUE_INGEST, PRIORITY_INTERACTIVE),
    "retrieve": (TASK_RETRIEVE, QUEUE_RETRIEVE, PRIORITY_INTERACTIVE),
}


class KnowledgeClient:
    """Knowledge-base jobs over a `FleetClient`'s connection.

    Example:
        >>> with FleetClient() as fleet:
        ...     kb = KnowledgeClient(fleet)
        ...     kb.ingest(IngestJob(documents=[...]))
        ...     for passage in kb.search("how do I roll back?").passages:
        ...         print(passage.score, passage.source_url, passage.version)
    """

    def __init__(self, fleet: FleetClient) -> None:
        self.fleet = fleet

    def submit(self, job: KnowledgeJob) -> str:
        """Enqueue a validated knowledge job; return its id (submitting an id twice sends once)."""
        task, queue, priority = _ROUTES[job.kind]
        try:
            if self.fleet._claim(job.job_id):
                self.fleet.app.send_task(
                    task,
                    kwargs={"job": job.model_dump(mode="json")},
                    task_id=job.job_id,
                    queue=queue,
                    priority=priority,
                )
        except BROKER_ERRORS as exc:
            raise BrokerUnavailableError(f"could not use the broker: {exc}") from exc
        return job.job_id

    def wait(self, job_id: str, timeout: float | None = 300, poll: float = 0.05) -> KnowledgeResult:
        """Block until the job finishes; raises `JobFailedError` / `JobTimeoutError`."""
        outcome: KnowledgeResult | JobError = poll_outcome(self.result, job_id, timeout, poll)
        assert not isinstance(outcome, JobError)  # poll_outcome raises those
        return outcome

    def result(self, job_id: str) -> KnowledgeResult | JobError | None:
        """The job's outcome, or None while it has none."""
        async_result = AsyncResult(job_id, app=self.fleet.app)
        if async_result.state != "SUCCESS":
            return None
        return parse_knowledge_outcome(async_result.result)

    # --- one call per operation ---------------------------------------------------------------

    def ingest(self, job: IngestJob | dict[str, Any], timeout: float | None = 600) -> IngestResult:
        """Ingest documents and wait for the report."""
        parsed = validate_knowledge_job(job, IngestJob)
        return self._run(parsed, IngestResult, timeout)

    def search(self, query: str, *, timeout: float | None = 60, **options: Any) -> RetrieveResult:
        """The top passages for `query` (`top_k`, `filters` as in `RetrieveJob`)."""
        parsed = validate_knowledge_job({"query": query, **options}, RetrieveJob)
        return self._run(parsed, RetrieveResult, timeout)

    def admin(
        self, action: str, *, timeout: float | None = 60, **fields: Any
    ) -> KnowledgeAdminResult:
        """versions / rollback / delete / stats."""
        parsed = validate_knowledge_job({"action": action, **fields}, KnowledgeAdminJob)
        return self._run(parsed, KnowledgeAdminResult, timeout)

    def _run(self, job: KnowledgeJob, kind: type[R], timeout: float | None) -> R:
        outcome = self.wait(self.submit(job), timeout=timeout)
        if not isinstance(outcome, kind):
            raise TypeError(f"job {job.job_id} returned {type(outcome).__name__}")
        return outcome
