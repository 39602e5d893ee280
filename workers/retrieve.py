"""The retrieve tasks: `qfleet.retrieve` (passages for a query) and `qfleet.rag_retrieve`.

They run on the worker that owns the knowledge base (it consumes qfleet.retrieve). A generate
job that asks for retrieval starts here (`qfleet.rag_retrieve`): its passages are retrieved on
the owner, then the generate step is enqueued on qfleet.generate with the job's own id, so any
generate worker answers it without opening the store. A failure of the first step is stored
under the job's id (the policy's `error_under_job_id`), so the caller waiting on it hears back.
"""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task
from pydantic import BaseModel

from qfleet.tasks.constants import (
    CANARY_SUFFIX,
    QUEUE_GENERATE,
    TASK_GENERATE,
    TASK_RAG_RETRIEVE,
    TASK_RETRIEVE,
)
from qfleet.tasks.errors import InvalidJobError
from qfleet.tasks.knowledge import (
    KnowledgeTimings,
    RetrieveJob,
    RetrieveResult,
    validate_knowledge_job,
)
from qfleet.tasks.limits import parse_generate_job
from qfleet.workers.knowledge.kb_version import KnowledgeVersion
from qfleet.workers.knowledge.rag import RetrievedContext
from qfleet.workers.policy import JobContext, JobOptions, JobTask

# Where a generate step may go: the live queue, or its canary (`qfleet eval`, the release gate).
GENERATE_QUEUES = (QUEUE_GENERATE, QUEUE_GENERATE + CANARY_SUFFIX)


class RetrieveStep(BaseModel):
    """What the first step of a retrieval-augmented job reports (its own task's result)."""

    job_id: str
    passages: int
    kb_version: int


@shared_task(base=JobTask, name=TASK_RETRIEVE, bind=True)
def retrieve_task(self: JobTask, ctx: JobContext, job: Any = None) -> RetrieveResult:
    """The top-k passages for a `RetrieveJob`, with scores and provenance."""
    worker = self.context
    started = time.perf_counter()
    parsed = validate_knowledge_job(job, RetrieveJob)
    version = KnowledgeVersion(worker.redis, worker.settings.redis_key_prefix).current()
    passages = worker.knowledge.store.search(parsed.query, parsed.top_k, parsed.filters)
    return RetrieveResult(
        job_id=ctx.job_id,
        query=parsed.query,
        passages=passages,
        kb_version=version,
        timings=KnowledgeTimings(embed_ms=0.0, total_ms=(time.perf_counter() - started) * 1000),
        worker=ctx.worker,
    )


@shared_task(
    base=JobTask,
    name=TASK_RAG_RETRIEVE,
    bind=True,
    job_options=JobOptions(error_under_job_id=True),
)
def rag_retrieve_task(
    self: JobTask,
    ctx: JobContext,
    job: Any = None,
    submitted_at: float | None = None,
    generate_queue: Any = None,
) -> RetrieveStep:
    """Step 1 of a generate job with retrieval: retrieve, then enqueue the generate step."""
    worker = self.context
    parsed = parse_generate_job(job, worker.settings)
    spec = parsed.retrieval
    if spec is None:
        raise InvalidJobError("a rag_retrieve step needs a job with `retrieval`")
    version = KnowledgeVersion(worker.redis, worker.settings.redis_key_prefix).current()
    query = parsed.chat()[-1].content
    passages = worker.knowledge.store.search(query, spec.top_k, spec.filters)
    context = RetrievedContext(passages=passages, kb_version=version)
    self.app.send_task(
        TASK_GENERATE,
        kwargs={
            "job": parsed.model_dump(mode="json"),
            "submitted_at": submitted_at,
            "context": context.model_dump(mode="json"),
        },
        task_id=parsed.job_id,
        # `qfleet eval` may send the generate step to the canary queue (docs/quality.md).
        queue=generate_queue if generate_queue in GENERATE_QUEUES else QUEUE_GENERATE,
        priority=self.request.delivery_info.get("priority") if self.request.delivery_info else None,
    )
    return RetrieveStep(job_id=parsed.job_id, passages=len(passages), kb_version=version)
