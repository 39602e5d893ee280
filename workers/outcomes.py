"""How a job ends, in one place: the errors the policy raises and the `JobError` a caller sees."""

from __future__ import annotations

import logging

from qfleet.tasks.errors import PermanentError, QfleetError
from qfleet.tasks.schemas import JobError

log = logging.getLogger("qfleet.worker")


class DeadlineExceededError(PermanentError):
    """The job ran past the soft time limit; it would again."""

    code = "timeout"


class PoisonJobError(PermanentError):
    """The job was started more often than allowed without finishing."""

    code = "too_many_attempts"


class JobCancelledError(PermanentError):
    """Someone cancelled the job (`FleetClient.cancel`): it was stopped or never started."""

    code = "cancelled"


def error_result(exc: Exception, *, job_id: str, worker: str) -> JobError:
    """The `JobError` a caller sees for `exc`; unexpected errors are logged with their traceback."""
    if isinstance(exc, QfleetError):
        log.warning("job %s failed: %s: %s", job_id, exc.code, exc)
        return JobError(
            job_id=job_id, code=exc.code, message=str(exc), retryable=exc.retryable, worker=worker
        )
    log.exception("job %s failed with an unexpected error", job_id)
    return JobError(
        job_id=job_id,
        code="internal",
        message=f"the worker failed unexpectedly ({type(exc).__name__}: {exc}); see worker logs",
        retryable=False,
        worker=worker,
    )


def cancelled_result(job_id: str, worker: str) -> JobError:
    """The answer of a job cancelled before or while it ran."""
    return error_result(JobCancelledError("the job was cancelled"), job_id=job_id, worker=worker)
