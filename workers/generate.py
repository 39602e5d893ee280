"""The generate task: `qfleet.generate`."""

from __future__ import annotations

import functools
import logging
from typing import Any

from celery import Task

from qfleet.tasks.constants import TASK_GENERATE
from qfleet.tasks.limits import parse_generate_job
from qfleet.tasks.schemas import JobResult
from qfleet.workers.jobs import run_generate
from qfleet.workers.knowledge_tasks import generate_with_knowledge
from qfleet.workers.main import app, fleet_keys, job_runner, runtime, settings
from qfleet.workers.policy import JobContext
from qfleet.workers.streaming import TokenStream
from qfleet.workers.structured_generate import run_structured_generate

log = logging.getLogger("qfleet.worker")


def generate_body(payload: Any, ctx: JobContext, context: Any = None) -> JobResult:
    """Validate, generate through the batcher (with retrieved passages and the answer cache),
    and stream the text when the job asks for it."""
    job = parse_generate_job(payload, settings)
    stream = TokenStream(fleet_keys, ctx.job_id, settings.redis_key_prefix) if job.stream else None
    try:
        result = generate_with_knowledge(
            job,
            context,
            lambda j: (
                run_structured_generate(
                    runtime.model,
                    settings.model_dir,
                    j,
                    submitted_at=ctx.submitted_at,
                    worker=ctx.worker,
                    on_text=stream.push if stream else None,
                    max_prompt_tokens=settings.max_prompt_tokens,
                )
                if j.structured
                else run_generate(
                    runtime.batcher,
                    j,
                    submitted_at=ctx.submitted_at,
                    worker=ctx.worker,
                    on_text=stream.push if stream else None,
                    max_prompt_tokens=settings.max_prompt_tokens,
                )
            ),
            worker=ctx.worker,
        )
    except Exception as exc:
        if stream is not None:
            stream.close(f"error:{getattr(exc, 'code', 'internal')}")
        raise
    if stream is not None:
        if result.cached:  # answered without generating: stream the whole text at once
            stream.push(result.text)
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
def generate_task(
    self: Task, job: Any = None, submitted_at: float | None = None, context: Any = None
) -> Any:
    """Run one generate job; always ends in a `JobResult` or a `JobError` as JSON data.

    `context` carries the passages of a job that asked for retrieval (see knowledge_tasks).
    """
    body = functools.partial(generate_body, context=context)
    return job_runner.run(self, body, job, submitted_at)
