"""The one error tree. Retry policy follows from the class, never from matching messages."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qfleet.tasks.schemas import JobError


class QfleetError(Exception):
    """Base of every error qfleet raises on purpose."""

    code = "internal"
    retryable = False


class PermanentError(QfleetError):
    """Retrying cannot help: bad input, a schema violation, a prompt too long for the model."""


class RetryableError(QfleetError):
    """A transient failure (broker blip, OOM on a batch): the same job may succeed later."""

    retryable = True


class InvalidJobError(PermanentError):
    """The payload does not validate against the job schema."""

    code = "invalid_job"


class PromptTooLongError(PermanentError):
    """The prompt plus `max_tokens` does not fit the model's context window."""

    code = "prompt_too_long"


class ModelUnavailableError(RetryableError):
    """The worker has no model loaded (yet): another worker or a later attempt may serve the job."""

    code = "model_unavailable"


class NotFoundError(PermanentError):
    """The thing a job names (a source, a version) does not exist."""

    code = "not_found"


class StoreUnavailableError(RetryableError):
    """The knowledge base cannot be opened here (no embedder, folder owned by another process)."""

    code = "store_unavailable"


class BrokerUnavailableError(RetryableError):
    """The broker or result backend did not answer."""

    code = "broker_unavailable"


class JobFailedError(QfleetError):
    """Raised on the producer side when a job finished with a `JobError`."""

    def __init__(self, error: JobError) -> None:
        self.error = error
        super().__init__(f"job {error.job_id} failed ({error.code}): {error.message}")


class JobTimeoutError(QfleetError):
    """Raised on the producer side when waiting for a job ran out of time."""

    code = "timeout"
