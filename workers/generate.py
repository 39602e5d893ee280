"""The generate task: `qfleet.generate`."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from tasks.constants import TASK_GENERATE
from workers.jobs import error_result, parse_generate_job, run_generate
from workers.main import app, runtime, settings
from workers.streaming import TokenStream

log = logging.getLogger("qfleet.worker")


@app.task(name=TASK_GENERATE, bind=True)
def generate_task(self: Task, job: Any = None, submitted_at: float | None = None) -> dict[str, Any]:
    """Run one generate job; always returns a `JobResult` or `JobError` as JSON data."""
    worker = self.request.hostname or "unknown"
    job_id = str(self.request.id)
    stream: TokenStream | None = None
    try:
        parsed = parse_generate_job(job, settings)
        if parsed.stream:
            stream = TokenStream(app.backend.client, job_id, settings.redis_key_prefix)
        result = run_generate(
            runtime.batcher,
            parsed,
            submitted_at=submitted_at,
            worker=worker,
            on_text=stream.push if stream else None,
        )
    except Exception as exc:  # every failure becomes a JobError the caller can read
        error = error_result(exc, job_id=job_id, worker=worker)
        if stream is not None:
            stream.close(f"error:{error.code}")
        return error.model_dump(mode="json")
    if stream is not None:
        stream.close(result.finish_reason)
    log.info(
        "job %s done: %d tokens in %.0f ms (%s, batch of %d)",
        job_id,
        result.usage.completion_tokens,
        result.timings.generate_ms,
        result.finish_reason,
        result.batch_size,
    )
    return result.model_dump(mode="json")
