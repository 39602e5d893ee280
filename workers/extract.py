"""The extract task: `qfleet.extract`."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from qfleet.tasks.constants import TASK_EXTRACT
from qfleet.tasks.errors import ModelUnavailableError
from qfleet.tasks.limits import parse_extract_job
from qfleet.tasks.schemas import ExtractResult
from qfleet.workers.extraction import guided_decoder, run_extract
from qfleet.workers.main import app, job_runner, runtime, settings
from qfleet.workers.policy import JobContext

log = logging.getLogger("qfleet.worker")


def extract_body(payload: Any, ctx: JobContext) -> ExtractResult:
    """Validate the job, decode its documents in one batch, read and check every object."""
    job = parse_extract_job(payload, settings)
    if settings.model_dir is None:
        raise ModelUnavailableError("no model configured: set QFLEET_MODEL_DIR")
    model = runtime.model
    decoder = guided_decoder(model, settings.model_dir)
    # The reliability work adds a deadline and a cancel check to the job context.
    result = run_extract(
        model,
        decoder,
        job,
        submitted_at=ctx.submitted_at,
        worker=ctx.worker,
        settings=settings,
        deadline=getattr(ctx, "deadline", None),
        cancelled=getattr(ctx, "cancelled", None),
    )
    log.info(
        "job %s done: %d documents (%d incomplete, %d failed), %d tokens in %.0f ms",
        job.job_id,
        len(result.items),
        sum(item.status == "incomplete" for item in result.items),
        sum(item.status == "failed" for item in result.items),
        result.usage.completion_tokens,
        result.timings.generate_ms,
    )
    return result


@app.task(name=TASK_EXTRACT, bind=True)
def extract_task(self: Task, job: Any = None, submitted_at: float | None = None) -> Any:
    """Run one extract job; always ends in an `ExtractResult` or a `JobError` as JSON data."""
    return job_runner.run(self, extract_body, job, submitted_at)
