"""The extract task: `qfleet.extract`."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from tasks.constants import TASK_EXTRACT
from tasks.errors import ModelUnavailableError
from workers.extraction import guided_decoder, parse_extract_job, run_extract
from workers.jobs import error_result
from workers.main import app, runtime, settings

log = logging.getLogger("qfleet.worker")


@app.task(name=TASK_EXTRACT, bind=True)
def extract_task(self: Task, job: Any = None, submitted_at: float | None = None) -> dict[str, Any]:
    """Run one extract job; always returns an `ExtractResult` or `JobError` as JSON data."""
    worker = self.request.hostname or "unknown"
    job_id = str(self.request.id)
    try:
        parsed = parse_extract_job(job, settings)
        if settings.model_dir is None:
            raise ModelUnavailableError("no model configured: set QFLEET_MODEL_DIR")
        model = runtime.model
        decoder = guided_decoder(model, settings.model_dir)
        result = run_extract(model, decoder, parsed, submitted_at=submitted_at, worker=worker)
    except Exception as exc:  # every failure becomes a JobError the caller can read
        return error_result(exc, job_id=job_id, worker=worker).model_dump(mode="json")
    failed = sum(item.status == "failed" for item in result.items)
    log.info(
        "job %s done: %d documents (%d failed), %d tokens in %.0f ms",
        job_id,
        len(result.items),
        failed,
        result.usage.completion_tokens,
        result.timings.generate_ms,
    )
    return result.model_dump(mode="json")
