"""The extract task: `qfleet.extract`."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from qfleet.tasks.constants import TASK_EXTRACT
from qfleet.tasks.errors import ModelUnavailableError
from qfleet.tasks.limits import parse_extract_job
from qfleet.tasks.schemas import ExtractResult
from qfleet.workers.context import WorkerContext
from qfleet.workers.extraction import guided_decoder, run_extract
from qfleet.workers.policy import JobContext, JobTask

log = logging.getLogger("qfleet.worker")


def extract_body(payload: Any, ctx: JobContext, worker: WorkerContext) -> ExtractResult:
    """Validate the job, decode its documents in one batch, read and check every object."""
    settings, runtime = worker.settings, worker.runtime
    job = parse_extract_job(payload, settings)
    if settings.model_dir is None:
        raise ModelUnavailableError("no model configured: set QFLEET_MODEL_DIR")
    model = runtime.model
    # Bulk work: the replica kept for interactive jobs is left out.
    parallel = runtime.layout.replicas if runtime.layout is not None else None
    decoder = guided_decoder(model, settings.model_dir, parallel)
    result = run_extract(
        model,
        decoder,
        job,
        submitted_at=ctx.submitted_at,
        worker=ctx.worker,
        settings=settings,
        deadline=ctx.deadline,
        cancelled=ctx.cancelled,
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


@shared_task(base=JobTask, name=TASK_EXTRACT, bind=True)
def extract_task(
    self: JobTask, ctx: JobContext, job: Any = None, submitted_at: float | None = None
) -> ExtractResult:
    """Run one extract job; the policy turns its outcome into an `ExtractResult` or a `JobError`."""
    return extract_body(job, ctx, self.context)
