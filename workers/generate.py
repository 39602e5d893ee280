"""The generate task: `qfleet.generate`."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from tasks.constants import TASK_GENERATE
from workers.jobs import error_result, parse_generate_job, run_generate
from workers.knowledge_tasks import generate_with_knowledge
from workers.main import app, runtime, settings

log = logging.getLogger("qfleet.worker")


@app.task(name=TASK_GENERATE, bind=True)
def generate_task(
    self: Task, job: Any = None, submitted_at: float | None = None, context: Any = None
) -> dict[str, Any]:
    """Run one generate job; always returns a `JobResult` or `JobError` as JSON data.

    `context` carries the passages of a job that asked for retrieval (see knowledge_tasks).
    """
    worker = self.request.hostname or "unknown"
    job_id = str(self.request.id)
    try:
        parsed = parse_generate_job(job, settings)
        result = generate_with_knowledge(
            parsed,
            context,
            lambda j: run_generate(runtime.model, j, submitted_at=submitted_at, worker=worker),
            worker=worker,
        )
    except Exception as exc:  # every failure becomes a JobError the caller can read
        return error_result(exc, job_id=job_id, worker=worker).model_dump(mode="json")
    log.info(
        "job %s done: %d tokens in %.0f ms (%s)",
        job_id,
        result.usage.completion_tokens,
        result.timings.generate_ms,
        result.finish_reason,
    )
    return result.model_dump(mode="json")
