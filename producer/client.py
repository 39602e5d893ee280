"""`FleetClient`: submit jobs, wait for them, read their results. No engine imports here."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Literal

from celery import Celery
from celery.result import AsyncResult
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from qfleet.tasks.app import create_app
from qfleet.tasks.constants import (
    ATTEMPTS_KEY,
    CANARY_SUFFIX,
    CANCEL_KEY,
    JOB_KEY,
    PRIORITY_BULK,
    PRIORITY_INTERACTIVE,
    QUEUE_EXTRACT,
    QUEUE_GENERATE,
    QUEUE_RETRIEVE,
    RAG_RETRIEVE_ID,
    STREAM_KEY,
    TASK_EXTRACT,
    TASK_GENERATE,
    TASK_RAG_RETRIEVE,
)
from qfleet.tasks.deadletters import DeadLetter, DeadLetterStore
from qfleet.tasks.errors import (
    BrokerUnavailableError,
    InvalidJobError,
    JobFailedError,
    JobTimeoutError,
)
from qfleet.tasks.ledger import HEADER as LEDGER_HEADER
from qfleet.tasks.ledger import Ledger, LedgerRecord, list_name
from qfleet.tasks.limits import check_job
from qfleet.tasks.redisconn import PRODUCER_RETRIES, fleet_redis
from qfleet.tasks.schemas import (
    ExtractJob,
    ExtractResult,
    GenerateJob,
    JobError,
    JobResult,
    parse_outcome,
)
from qfleet.tasks.settings import Settings

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


# What a broker or result-backend outage raises through kombu and redis-py.
BROKER_ERRORS = (OperationalError, RedisError, OSError)

PRIORITIES = {"interactive": PRIORITY_INTERACTIVE, "bulk": PRIORITY_BULK}


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
        self.redis = fleet_redis(self.settings, retries=PRODUCER_RETRIES)

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
        self.redis.close()
        self.app.close()

    # --- submitting -------------------------------------------------------------------------

    def submit(
        self, job: GenerateJob | ExtractJob | dict[str, Any], *, queue: str | None = None
    ) -> str:
        """Validate and enqueue `job`; return its job id.

        Submitting a job id that was already submitted (and whose result has not expired) does
        not enqueue it again: the job id is the idempotency key. `queue` sends a generate or
        extract job to another queue its kind is served on (a canary: `qfleet eval`).

        Raises:
            InvalidJobError: the payload does not validate; nothing was sent.
            BrokerUnavailableError: Redis did not answer.
        """
        return self.send_checked(check_job(job, self.settings), queue=queue)

    def send_checked(self, job: GenerateJob | ExtractJob, *, queue: str | None = None) -> str:
        """Enqueue `job` as it is, for a job already checked with `tasks.limits.check_job`.

        Bulk runs check each item once, when they read their file, and send through here. The
        worker validates every job again (the broker is an input too), so an unchecked job
        fails there rather than running. `queue` as for `submit`.

        Raises:
            InvalidJobError: `queue` is not one this job's kind is served on.
            BrokerUnavailableError: Redis did not answer.
        """
        task, default_queue, task_id = _route(job)
        kwargs = {"job": job.model_dump(mode="json"), "submitted_at": time.time()}
        queue = _queue_override(job, default_queue, queue, kwargs)  # quality loop: canaries
        priority = PRIORITIES[getattr(job, "priority", "bulk")]
        # The retrieve step of a RAG job runs outside the job policy: no ledger entry for it.
        ledgered = task_id == job.job_id
        self._enqueue(task_id, task, queue, priority, kwargs, ledgered=ledgered)
        return job.job_id

    def _enqueue(
        self, job_id: str, task: str, queue: str, priority: int, kwargs: dict[str, Any], *,
        ledgered: bool = True,
    ) -> bool:  # fmt: skip
        """Claim `job_id`, number it in the ledger, and send it; False if it was claimed."""
        record = LedgerRecord(
            task=task, queue=queue, priority=priority, kwargs=kwargs,
            list=list_name(queue, priority), sent_at=time.time(),
        )  # fmt: skip
        ledger = Ledger(self.redis, self.settings.redis_key_prefix)
        try:
            if ledgered:
                seq = ledger.record(job_id, record, self.settings.result_ttl_s)
            else:
                seq = 0 if self._claim(job_id) else None
        except BROKER_ERRORS as exc:
            raise BrokerUnavailableError(f"could not use the broker: {exc}") from exc
        if seq is None:
            return False
        headers = {LEDGER_HEADER: {"list": record.list, "seq": seq}} if ledgered else None
        try:
            self.app.send_task(
                task, kwargs=kwargs, task_id=job_id, queue=queue, priority=priority, headers=headers
            )
        except BROKER_ERRORS as exc:
            # Not sent: give the id back, so that submitting it again really sends it.
            with contextlib.suppress(*BROKER_ERRORS):
                ledger.unrecord(job_id, record.list)
            raise BrokerUnavailableError(f"could not use the broker: {exc}") from exc
        return True

    def generate(self, prompt: str, *, timeout: float | None = 300, **options: Any) -> JobResult:
        """Submit a prompt and wait for its answer (a convenience for one-off calls)."""
        result = self.wait(self.submit(GenerateJob(prompt=prompt, **options)), timeout=timeout)
        assert isinstance(result, JobResult)  # a generate job's id holds a generate result
        return result

    def cancel(self, job_id: str) -> None:
        """Ask the fleet to stop `job_id`: queued, it is never run; running, it stops decoding.

        A cancelled job ends with a `JobError` whose code is `cancelled`. Cancelling a job that
        already finished changes nothing (its result stays).
        """
        key = self.settings.redis_key_prefix + CANCEL_KEY.format(job_id=job_id)
        try:
            self.redis.set(key, str(time.time()), ex=self.settings.result_ttl_s)
            self.app.control.revoke(job_id)
        except BROKER_ERRORS as exc:
            raise BrokerUnavailableError(f"could not use the broker: {exc}") from exc

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
        outcome: JobResult | ExtractResult | JobError = poll_outcome(
            self.result, job_id, timeout, poll
        )
        assert not isinstance(outcome, JobError)  # poll_outcome raises those
        return outcome

    def stream(self, job_id: str, timeout: float | None = 300) -> Iterator[str]:
        """Yield the job's text as the worker produces it.

        Works for any job: one submitted with `stream=True` yields pieces while it is generated
        (also inside a batch); any other yields its whole text once it is done. The pieces
        always add up to the final result's text.

        Raises:
            JobFailedError: the job finished with a `JobError`.
            JobTimeoutError: the job did not finish within `timeout` seconds.
        """
        redis = self.redis
        key = self.settings.redis_key_prefix + STREAM_KEY.format(job_id=job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        last_id, streamed = "0", False
        while deadline is None or time.monotonic() < deadline:
            replies: Any = redis.xread({key: last_id}, block=250, count=256)
            for _, entries in replies or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    if b"t" in fields:
                        streamed = True
                        yield fields[b"t"].decode()
                    elif b"end" in fields:
                        self._raise_if_failed(job_id)
                        return
            outcome = None if streamed else self.result(job_id)
            if isinstance(outcome, JobError):
                raise JobFailedError(outcome)
            if outcome is not None and not redis.exists(key):
                # Not a streamed job (or its stream expired): its whole text at once.
                yield outcome.text if isinstance(outcome, JobResult) else outcome.model_dump_json()
                return
        raise JobTimeoutError(f"job {job_id} did not finish streaming within {timeout:g}s")

    def _raise_if_failed(self, job_id: str) -> None:
        outcome = self.result(job_id) or self._await_outcome(job_id)
        if isinstance(outcome, JobError):
            raise JobFailedError(outcome)

    def _await_outcome(self, job_id: str) -> JobResult | ExtractResult | JobError | None:
        # The end marker is written just before the result is stored: give it a moment.
        for _ in range(100):
            outcome = self.result(job_id)
            if outcome is not None:
                return outcome
            time.sleep(0.02)
        return None

    # --- dead letters -------------------------------------------------------------------------

    @property
    def dead_letters(self) -> DeadLetterStore:
        """Jobs that failed for good (list, get, remove, purge)."""
        return DeadLetterStore(self.redis, self.settings.redis_key_prefix)

    def redrive(self, job_id: str) -> DeadLetter:
        """Send a dead-lettered job again, under the same job id, with a fresh attempt budget.

        Raises:
            KeyError: no dead letter for `job_id`.
        """
        store = self.dead_letters
        letter = store.get(job_id)
        if letter is None:
            raise KeyError(job_id)
        redis = self.redis
        redis.delete(
            self._job_key(job_id),
            self.settings.redis_key_prefix + ATTEMPTS_KEY.format(job_id=job_id),
        )
        self._async(job_id).forget()
        # Out of the store before it is sent: a fast worker may dead-letter it again at once.
        store.remove(job_id)
        try:
            self._enqueue(
                job_id,
                letter.task,
                letter.queue or QUEUE_GENERATE,
                PRIORITY_BULK,
                {"job": letter.payload, "submitted_at": time.time()},
            )
        except Exception:
            store.add(letter)
            raise
        return letter

    # --- internals ----------------------------------------------------------------------------

    def _async(self, job_id: str) -> AsyncResult:
        return AsyncResult(job_id, app=self.app)

    def _job_key(self, job_id: str) -> str:
        return self.settings.redis_key_prefix + JOB_KEY.format(job_id=job_id)

    def _claim(self, job_id: str) -> bool:
        """Mark `job_id` as submitted; False when it already was."""
        redis = self.redis
        return bool(
            redis.set(self._job_key(job_id), time.time(), nx=True, ex=self.settings.result_ttl_s)
        )

    def _known(self, job_id: str) -> bool:
        return bool(self.redis.exists(self._job_key(job_id)))


def _route(job: GenerateJob | ExtractJob) -> tuple[str, str, str]:
    """The task, queue and task id that start `job`.

    A generate job with retrieval starts on the knowledge base's owner, which enqueues the
    generate step under the job id once it has the passages.
    """
    if isinstance(job, ExtractJob):
        return TASK_EXTRACT, QUEUE_EXTRACT, job.job_id
    if job.retrieval is not None:
        return TASK_RAG_RETRIEVE, QUEUE_RETRIEVE, RAG_RETRIEVE_ID.format(job_id=job.job_id)
    return TASK_GENERATE, QUEUE_GENERATE, job.job_id


def _queue_override(
    job: GenerateJob | ExtractJob, default: str, queue: str | None, kwargs: dict[str, Any]
) -> str:
    """The queue to send `job` to when `queue` (its own, or its canary: `qfleet eval`) is asked.

    A job with retrieval still starts on the retrieve queue; its generate step goes to `queue`
    (the knowledge base's owner reads `generate_queue` from the kwargs).
    """
    own = QUEUE_GENERATE if isinstance(job, GenerateJob) else QUEUE_EXTRACT
    if queue is None or queue == own:
        return default
    if queue != own + CANARY_SUFFIX:
        raise InvalidJobError(f"a {job.kind} job runs on {own} or {own}{CANARY_SUFFIX}")
    if default == QUEUE_RETRIEVE:
        kwargs["generate_queue"] = queue
        return default
    return queue


def poll_outcome(
    read: Callable[[str], Any], job_id: str, timeout: float | None, poll: float = 0.05
) -> Any:
    """Call `read(job_id)` with growing pauses until it returns an outcome.

    Raises:
        JobFailedError: the outcome is a `JobError`.
        JobTimeoutError: none within `timeout` seconds.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = poll
    while True:
        try:
            outcome = read(job_id)
        except BROKER_ERRORS:
            outcome = None  # Redis restarting: keep waiting until the deadline
        if isinstance(outcome, JobError):
            raise JobFailedError(outcome)
        if outcome is not None:
            return outcome
        if deadline is not None and time.monotonic() >= deadline:
            raise JobTimeoutError(f"job {job_id} has no result after {timeout:g}s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
