"""The job policy, declared once: every qfleet task is a `JobTask` and runs through `JobPolicy`.

A task body is `run(self, ctx: JobContext, **kwargs) -> result model`; the policy around it:

1. a job whose cancel key exists is answered `cancelled` without running;
2. duplicates: a delivery of a job that finished returns the stored outcome; a delivery of a job
   that runs elsewhere waits (the owner renews its lock while it lives, see workers/running.py);
3. attempt budget: a job started more than `max_attempts` times — also when it crashed or
   OOM-killed its worker — is dead-lettered instead of run again;
4. errors by class: `PermanentError` → a `JobError` at once; `RetryableError` or an unexpected
   exception → retried with exponential backoff and jitter until the budget is spent;
5. time limits on every pool: the body gets a deadline (the soft limit) and a cancel check to
   hand to the engine (Celery's threads pool enforces no time limit, celery#9203);
6. every dead job gets its `JobError` stored as its result and, with its payload, a dead letter.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery import Task, states
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from pydantic import BaseModel

from qfleet.tasks.constants import ATTEMPTS_KEY, RUNNING_KEY, TASK_EXTRACT, TASK_GENERATE
from qfleet.tasks.deadletters import DeadLetter, DeadLetterStore
from qfleet.tasks.errors import PermanentError
from qfleet.tasks.ledger import HEADER as LEDGER_HEADER
from qfleet.tasks.ledger import Ledger
from qfleet.tasks.settings import Settings
from qfleet.workers.outcomes import (
    DeadlineExceededError,
    JobCancelledError,
    PoisonJobError,
    cancelled_result,
    error_result,
)
from qfleet.workers.records import RecordSink
from qfleet.workers.running import JobWatch, RunningJob, RunningLock

if TYPE_CHECKING:
    from qfleet.workers.context import WorkerContext

log = logging.getLogger("qfleet.worker")


@dataclass(frozen=True)
class JobOptions:
    """Per-task switches of the policy (all on unless a task says otherwise)."""

    # Run once per job id: replay a finished outcome, make a copy wait while another runs.
    dedupe: bool = True
    # Count starts and dead-letter a job started more than `max_attempts` times.
    attempt_budget: bool = True
    # Retry `RetryableError`s and unexpected exceptions with backoff (else: fail at once).
    retry: bool = True
    # Keep a dead letter (payload, error, attempts) of every job that failed for good.
    dead_letter: bool = True
    # The caller waits on the payload's `job_id`, not on this task's id (a first step of a job,
    # like rag_retrieve): a failure is stored under that id too.
    error_under_job_id: bool = False


@dataclass(frozen=True)
class JobContext:
    """What a task body may want to know about the delivery it runs in."""

    job_id: str
    worker: str
    attempt: int
    submitted_at: float | None
    # `time.monotonic()` at the soft time limit: hand it to the engine (GenerationRequest).
    deadline: float | None = None
    # True once the job was cancelled: hand it to the engine, or poll it between steps.
    cancelled: Callable[[], bool] = lambda: False


def backoff_seconds(attempt: int, settings: Settings) -> float:
    """Delay before retry number `attempt` (1-based): exponential, capped, full jitter."""
    ceiling = min(settings.retry_backoff_s * 2 ** (attempt - 1), settings.retry_backoff_max_s)
    return random.uniform(ceiling / 2, ceiling)


def ledger_header(task: Task) -> dict[str, Any] | None:
    """The ledger's list and number for this delivery, from the message headers (if any)."""
    value = getattr(task.request, LEDGER_HEADER, None)
    if value is None:
        value = (getattr(task.request, "headers", None) or {}).get(LEDGER_HEADER)
    return value if isinstance(value, dict) else None


def delivery_tag(task: Task) -> str | None:
    """The broker's tag of this delivery (the member of kombu's unacked index)."""
    properties = getattr(task.request, "properties", None) or {}
    tag = properties.get("delivery_tag")
    return str(tag) if tag else None


class JobTask(Task):  # type: ignore[misc]  # celery is untyped
    """Base class of every qfleet task: the body runs under the fleet's `JobPolicy`."""

    job_options = JobOptions()
    typing = False  # the body takes the JobContext first; Celery must not check call signatures

    @property
    def context(self) -> WorkerContext:
        """The worker context this task's app was built with."""
        from qfleet.workers.context import context_of

        return context_of(self.app)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.context.policy.run(self, args, kwargs)


@dataclass(frozen=True)
class _Delivery:
    task: JobTask
    delivery_id: str  # the task id: locks, attempts and the ledger are per delivery id
    job_id: str  # the id the caller waits on (equal but for a job's first step)
    worker: str
    payload: Any
    submitted_at: float | None
    started_at: float = field(default_factory=time.time)


# Jobs whose outcomes become request records (docs/quality.md); knowledge jobs do not.
RECORDED_TASKS = frozenset({TASK_GENERATE, TASK_EXTRACT})


class JobPolicy:
    """Runs job bodies under the fleet's duplicate, retry, time-limit and dead-letter policy."""

    def __init__(self, settings: Settings, redis: Any, watch: JobWatch) -> None:
        self.settings = settings
        self.redis = redis
        self.watch = watch
        self.dead_letters = DeadLetterStore(redis, settings.redis_key_prefix)
        self.ledger = Ledger(redis, settings.redis_key_prefix)
        self.records = RecordSink(settings)  # quality-loop hook (docs/quality.md)

    def run(self, task: JobTask, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run `task`'s body for its current delivery; returns the JSON-ready outcome."""
        job = self._delivery(task, kwargs)
        header = ledger_header(task)
        lock = self._lock(job) if task.job_options.dedupe else None
        try:
            if lock is not None:
                stored = task.AsyncResult(job.delivery_id)
                if stored.state == states.SUCCESS:
                    log.warning(
                        "job %s delivered again after it finished; not run twice", job.job_id
                    )
                    self.ledger.finished(job.delivery_id, header)
                    return stored.result
            if self.watch.cancel_requested(job.job_id):
                log.warning("job %s was cancelled before it started; not run", job.job_id)
                return self._settle(job, cancelled_result(job.job_id, job.worker), header)
            self.ledger.received(job.delivery_id, header, self.settings.result_ttl_s)
            running = self.watch.watch(job.job_id, lock, delivery_tag(task))
            try:
                outcome = self._attempt(job, running, args, kwargs)
            finally:
                self.watch.unwatch(running)
            return self._settle(job, outcome, header)
        finally:
            if lock is not None:
                lock.release()

    def _delivery(self, task: JobTask, kwargs: dict[str, Any]) -> _Delivery:
        delivery_id = str(task.request.id)
        payload = kwargs.get("job")
        job_id = delivery_id
        if task.job_options.error_under_job_id and isinstance(payload, dict):
            job_id = str(payload.get("job_id") or delivery_id)
        return _Delivery(
            task=task,
            delivery_id=delivery_id,
            job_id=job_id,
            worker=task.request.hostname or "unknown",
            payload=payload,
            submitted_at=kwargs.get("submitted_at"),
        )

    def _lock(self, job: _Delivery) -> RunningLock:
        key = self.settings.redis_key_prefix + RUNNING_KEY.format(job_id=job.delivery_id)
        lock = RunningLock(self.redis, key, self.lock_ttl_s)
        if not lock.acquire():
            # The owner renews its lock while it lives: this copy looks again until the job has
            # its outcome (then it replays it) or its owner died (then the lock lapses).
            wait_s = min(max(lock.remaining_s(), 1.0), self.settings.visibility_timeout_s / 2)
            log.warning(
                "job %s is running elsewhere; this copy checks again in %.1fs", job.job_id, wait_s
            )
            # A new message, not Celery's retry state: a RETRY stored now could overwrite the
            # owner's SUCCESS, and this copy's next delivery would no longer see it finished.
            job.task.retry(countdown=wait_s, max_retries=None, throw=False)
            raise Ignore()
        return lock

    @property
    def lock_ttl_s(self) -> float:
        """How long a lock outlives its last heartbeat: three missed beats mean its owner died."""
        return 3 * self.settings.heartbeat_s

    def _attempt(
        self, job: _Delivery, running: RunningJob, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        options = job.task.job_options
        ctx = JobContext(
            job_id=job.job_id,
            worker=job.worker,
            attempt=self._count_attempt(job.delivery_id) if options.attempt_budget else 1,
            submitted_at=job.submitted_at,
            deadline=time.monotonic() + self.settings.task_soft_time_limit_s,
            cancelled=running.cancelled.is_set,
        )
        if ctx.attempt > self.settings.max_attempts:
            poison = PoisonJobError(
                f"job was started {ctx.attempt - 1} times without finishing (it may crash or "
                f"exhaust the memory of its worker); dead-lettered after QFLEET_MAX_ATTEMPTS="
                f"{self.settings.max_attempts}"
            )
            return self._dead(job, ctx, poison)
        try:
            outcome: BaseModel = job.task.run(ctx, *args, **kwargs)
        except SoftTimeLimitExceeded:  # prefork: Celery's own soft limit fired first
            limit = self.settings.task_soft_time_limit_s
            timeout = DeadlineExceededError(f"job ran past the soft time limit of {limit}s")
            return self._dead(job, ctx, timeout)
        except JobCancelledError as exc:
            return error_result(exc, job_id=job.job_id, worker=job.worker).model_dump(mode="json")
        except PermanentError as exc:
            return self._dead(job, ctx, exc)
        except Exception as exc:  # retryable by class, or unexpected: both get retried
            if not options.retry or ctx.attempt >= self.settings.max_attempts:
                return self._dead(job, ctx, exc)
            delay = backoff_seconds(ctx.attempt, self.settings)
            log.warning(
                "job %s attempt %d failed (%s: %s); retrying in %.1fs",
                ctx.job_id, ctx.attempt, type(exc).__name__, exc, delay,
            )  # fmt: skip
            raise job.task.retry(countdown=delay, max_retries=None) from exc
        self.redis.delete(self._attempts_key(job.delivery_id))
        return outcome.model_dump(mode="json")

    def _settle(self, job: _Delivery, outcome: Any, header: dict[str, Any] | None) -> Any:
        """Store the outcome before the lock is released, so a waiting copy finds it."""
        if isinstance(outcome, BaseModel):
            outcome = outcome.model_dump(mode="json")
        backend = job.task.backend
        backend.store_result(job.delivery_id, outcome, states.SUCCESS, request=job.task.request)
        if job.job_id != job.delivery_id and outcome.get("status") == "failed":
            backend.store_result(job.job_id, outcome, states.SUCCESS)
        self.ledger.finished(job.delivery_id, header)
        if job.task.name in RECORDED_TASKS:  # every outcome, result or error, is recorded here
            self.records.write(job.task, job.payload, outcome, job.started_at, job.submitted_at)
        return outcome

    def _dead(self, job: _Delivery, ctx: JobContext, exc: Exception) -> Any:
        error = error_result(exc, job_id=job.job_id, worker=job.worker)
        if job.task.job_options.dead_letter:
            delivery = job.task.request.delivery_info or {}
            self.dead_letters.add(
                DeadLetter(
                    job_id=job.job_id,
                    task=job.task.name,
                    queue=str(delivery.get("routing_key") or ""),
                    payload=job.payload,
                    error_code=error.code,
                    error_message=error.message,
                    attempts=ctx.attempt,
                    worker=job.worker,
                    first_seen_at=job.submitted_at,
                )
            )
        self.redis.delete(self._attempts_key(job.delivery_id))
        log.warning(
            "job %s dead-lettered after %d attempt(s): %s", job.job_id, ctx.attempt, error.code
        )
        return error.model_dump(mode="json")

    def _count_attempt(self, delivery_id: str) -> int:
        key = self._attempts_key(delivery_id)
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, self.settings.result_ttl_s)
        attempt, _ = pipe.execute()
        return int(attempt)

    def _attempts_key(self, delivery_id: str) -> str:
        return self.settings.redis_key_prefix + ATTEMPTS_KEY.format(job_id=delivery_id)


def answer_revoked(task: Any, request: Any, worker: str) -> None:
    """A job Celery revoked (`FleetClient.cancel` of a queued job) still answers `cancelled`.

    Celery stores a REVOKED state a `FleetClient` would not read as a JobError; this replaces it.
    """
    job_id = str(getattr(request, "id", "") or "")
    if not job_id or not isinstance(task, JobTask):
        return
    error = cancelled_result(job_id, worker).model_dump(mode="json")
    task.backend.store_result(job_id, error, states.SUCCESS)
