"""The generate task: `qfleet.generate`."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from tasks.constants import TASK_GENERATE
from tasks.limits import parse_generate_job
from tasks.schemas import JobResult
from workers.jobs import run_generate
from workers.main import app, fleet_keys, job_runner, runtime, settings
from workers.policy import JobContext
from workers.streaming import TokenStream

log = logging.getLogger("qfleet.worker")


def generate_body(payload: Any, ctx: JobContext) -> JobResult:
    """Validate, generate through the batcher, and stream the text when the job asks for it."""
    job = parse_generate_job(payload, settings)
    stream = TokenStream(fleet_keys, ctx.job_id, settings.redis_key_prefix) if job.stream else None
    try:
        result = run_generate(
            runtime.batcher,
            job,
            submitted_at=ctx.submitted_at,
            worker=ctx.worker,
            on_text=stream.push if stream else None,
        )
    except Exception as exc:
        if stream is not None:
            stream.close(f"error:{getattr(exc, 'code', 'internal')}")
        raise
    if stream is not None:
        stream.close(result.finish_reason)
    log.info(
        "job %s done: %d tokens in %.0f ms (%s, batch of %d)",
        ctx.job_id,
        result.usage.completion_tokens,
        result.timings.generate_ms,
        result.finish_reason,
        result.batch_size,
    )
    return result


@app.task(name=TASK_GENERATE, bind=True)
def generate_task(self: Task, job: Any = None, submitted_at: float | None = None) -> Any:
    """Run one generate job; always ends in a `JobResult` or a `JobError` as JSON data."""
    return job_runner.run(self, generate_body, job, submitted_at)
