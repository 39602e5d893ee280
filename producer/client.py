"""`FleetClient`: submit jobs, wait for them, read their results. No engine imports here."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Literal

from celery import Celery
from celery.result import AsyncResult
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from tasks.app import create_app
from tasks.constants import (
    JOB_KEY,
    QUEUE_EXTRACT,
    QUEUE_GENERATE,
    TASK_EXTRACT,
    TASK_GENERATE,
)
from tasks.errors import (
    BrokerUnavailableError,
    JobFailedError,
    JobTimeoutError,
)
from tasks.schemas import (
    ExtractJob,
    ExtractResult,
    GenerateJob,
    JobError,
    JobResult,
    parse_outcome,
    validate_job,
)
from tasks.settings import Settings

JobState = Literal["unknown", "queued", "running", "succeeded", "failed"]

_CELERY_STATES: dict[str, JobState] = {
    "PENDING": "queued",
    "RECEIVED": "queued",
    "RETRY": "queued",
    "STARTED": "running",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "REVOKED": "failed",
}


# Which task and queue run each job kind.
_ROUTES = {"generate": (TASK_GENERATE, QUEUE_GENERATE), "extract": (TASK_EXTRACT, QUEUE_EXTRACT)}


class FleetClient:
    """The producer's handle on a qfleet fleet.

    Example:
        >>> with FleetClient() as fleet:
        ...     job_id = fleet.submit(GenerateJob(prompt="Say hi"))
        ...     print(fleet.wait(job_id, timeout=60).text)
    """

    def __init__(self, settings: Settings | None = None, *, app: Celery | None = None) -> None:
        self.settings = settings or Settings()
        self.app = app or create_app(self.settings)

    def __enter__(self) -> FleetClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release broker and backend connections."""
        self.app.close()

    # --- submitting -------------------------------------------------------------------------

    def submit(self, job: GenerateJob | ExtractJob | dict[str, Any]) -> str:
        """Validate and enqueue `job`; return its job id.

        Submitting a job id that was already submitted (and whose result has not expired) does
        not enqueue it again: the job id is the idempotency key.

        Raises:
            InvalidJobError: the payload does not validate; nothing was sent.
            BrokerUnavailableError: Redis did not answer.
        """
        parsed = validate_job(job)
        task, queue = _ROUTES[parsed.kind]
        try:
            if not self._claim(parsed.job_id):
                return parsed.job_id
            self.app.send_task(
                task,
                kwargs={"job": parsed.model_dump(mode="json"), "submitted_at": time.time()},
                task_id=parsed.job_id,
                queue=queue,
            )
        except (OperationalError, RedisError, OSError) as exc:
            raise BrokerUnavailableError(f"could not reach the broker: {exc}") from exc
        return parsed.job_id

    def generate(self, prompt: str, *, timeout: float | None = 300, **options: Any) -> JobResult:
        """Submit a prompt and wait for its answer (a convenience for one-off calls)."""
        result = self.wait(self.submit(GenerateJob(prompt=prompt, **options)), timeout=timeout)
        assert isinstance(result, JobResult)  # a generate job's id holds a generate result
        return result

    # --- reading ------------------------------------------------------------------------------

    def status(self, job_id: str) -> JobState:
        """Where the job is: unknown, queued, running, succeeded or failed."""
        state = _CELERY_STATES.get(self._async(job_id).state, "queued")
        if state == "queued" and not self._known(job_id):
            return "unknown"
        if state == "succeeded":
            outcome = self.result(job_id)
            return "failed" if isinstance(outcome, JobError) else "succeeded"
        return state

    def result(self, job_id: str) -> JobResult | ExtractResult | JobError | None:
        """The job's outcome, or None while it has none."""
        async_result = self._async(job_id)
        if async_result.state != "SUCCESS":
            return None
        return parse_outcome(async_result.result)

    def wait(
        self, job_id: str, timeout: float | None = 300, poll: float = 0.05
    ) -> JobResult | ExtractResult:
        """Block until the job finishes and return its result.

        Raises:
            JobFailedError: the job finished with a `JobError` (in `.error`).
            JobTimeoutError: no outcome within `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll
        while True:
            outcome = self.result(job_id)
            if isinstance(outcome, JobError):
                raise JobFailedError(outcome)
            if outcome is not None:
                return outcome
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeoutError(f"job {job_id} has no result after {timeout:g}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    # --- internals ----------------------------------------------------------------------------

    def _async(self, job_id: str) -> AsyncResult:
        return AsyncResult(job_id, app=self.app)

    def _job_key(self, job_id: str) -> str:
        return self.settings.redis_key_prefix + JOB_KEY.format(job_id=job_id)

    def _claim(self, job_id: str) -> bool:
        """Mark `job_id` as submitted; False when it already was."""
        redis = self.app.backend.client
        return bool(
            redis.set(self._job_key(job_id), time.time(), nx=True, ex=self.settings.result_ttl_s)
        )

    def _known(self, job_id: str) -> bool:
        return bool(self.app.backend.client.exists(self._job_key(job_id)))
