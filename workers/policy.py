"""What every job task does around its body, in one place: attempts, retries, dead letters.

A body is a function `(payload, JobContext) -> result model`. It raises the error tree:
`PermanentError` → a `JobError` at once; `RetryableError` or an unexpected exception → retried
with exponential backoff and jitter until `max_attempts`. A job started more than
`max_attempts` times — also when it never finished because it crashed or OOM-killed its worker —
is dead-lettered instead of run again. Every dead job also gets a `JobError` result, so a waiting
producer always hears back.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel

from qfleet.tasks.constants import ATTEMPTS_KEY, RUNNING_KEY
from qfleet.tasks.deadletters import DeadLetter, DeadLetterStore
from qfleet.tasks.errors import PermanentError
from qfleet.tasks.ledger import HEADER as LEDGER_HEADER
from qfleet.tasks.ledger import Ledger
from qfleet.tasks.settings import Settings
from qfleet.workers.jobs import error_result
from qfleet.workers.records import RecordSink

log = logging.getLogger("qfleet.worker")


@dataclass(frozen=True)
class JobContext:
    """What a task body may want to know about the delivery it runs in."""

    job_id: str
    worker: str
    attempt: int
    submitted_at: float | None


JobBody = Callable[[Any, JobContext], BaseModel]


class JobTimeoutError(PermanentError):
    """The job ran past the soft time limit; it would again."""

    code = "timeout"


class PoisonJobError(PermanentError):
    """The job was started more often than allowed without finishing."""

    code = "too_many_attempts"


def ledger_header(task: Task) -> dict[str, Any] | None:
    """The ledger's list and number for this delivery, from the message headers (if any)."""
    value = getattr(task.request, LEDGER_HEADER, None)
    if value is None:
        value = (getattr(task.request, "headers", None) or {}).get(LEDGER_HEADER)
    return value if isinstance(value, dict) else None


def backoff_seconds(attempt: int, settings: Settings) -> float:
    """Delay before retry number `attempt` (1-based): exponential, capped, full jitter."""
    ceiling = min(settings.retry_backoff_s * 2 ** (attempt - 1), settings.retry_backoff_max_s)
    return random.uniform(ceiling / 2, ceiling)


class JobRunner:
    """Runs job bodies under the fleet's retry and dead-letter policy."""

    def __init__(self, settings: Settings, redis: Any) -> None:
        self.settings = settings
        self.redis = redis
        self.dead_letters = DeadLetterStore(redis, settings.redis_key_prefix)
        self.ledger = Ledger(redis, settings.redis_key_prefix)
        self.records = RecordSink(settings)  # quality-loop hook (docs/quality.md)

    def run(self, task: Task, body: JobBody, payload: Any, submitted_at: float | None) -> Any:
        """Run `body` for the current delivery of `task`; returns the JSON-ready outcome.

        A delivery of a job that already finished returns the stored outcome without running
        again; a delivery of a job that is running right now elsewhere is put back for later
        (by then that run has finished, or died and let go of the job). Together they make a
        job's effects happen once per job id under at-least-once delivery.
        """
        job_id = str(task.request.id)
        header = ledger_header(task)
        finished = task.AsyncResult(job_id)
        if finished.state == "SUCCESS":
            log.warning("job %s delivered again after it finished; not run twice", job_id)
            self.ledger.finished(job_id, header)
            return finished.result
        lock = self.settings.redis_key_prefix + RUNNING_KEY.format(job_id=job_id)
        if not self.redis.set(lock, task.request.hostname or "?", nx=True, ex=self._lock_ttl):
            wait_s = max(int(self.redis.ttl(lock)), 0) + 1
            log.warning(
                "job %s is running elsewhere; this copy checks again in %ds", job_id, wait_s
            )
            raise task.retry(countdown=wait_s, max_retries=None)
        self.ledger.received(job_id, header, self.settings.result_ttl_s)
        started = time.time()
        try:
            outcome = self._attempt(task, body, payload, submitted_at)
        finally:
            self.redis.delete(lock)
        # Quality-loop hook (docs/quality.md): every outcome, result or dead letter, passes here.
        self.records.write(task, payload, outcome, started, submitted_at)
        self.ledger.finished(job_id, header)
        return outcome

    @property
    def _lock_ttl(self) -> int:
        # Expires before the visibility timeout brings a dead run's message back.
        return max(self.settings.task_time_limit_s, 1)

    def _attempt(self, task: Task, body: JobBody, payload: Any, submitted_at: float | None) -> Any:
        ctx = JobContext(
            job_id=str(task.request.id),
            worker=task.request.hostname or "unknown",
            attempt=self._count_attempt(str(task.request.id)),
            submitted_at=submitted_at,
        )
        if ctx.attempt > self.settings.max_attempts:
            poison = PoisonJobError(
                f"job was started {ctx.attempt - 1} times without finishing (it may crash or "
                f"exhaust the memory of its worker); dead-lettered after QFLEET_MAX_ATTEMPTS="
                f"{self.settings.max_attempts}"
            )
            return self._dead(task, ctx, payload, poison)
        try:
            outcome = body(payload, ctx)
        except SoftTimeLimitExceeded:
            timeout = JobTimeoutError(
                f"job ran past the soft time limit of {self.settings.task_soft_time_limit_s}s"
            )
            return self._dead(task, ctx, payload, timeout)
        except PermanentError as exc:
            return self._dead(task, ctx, payload, exc)
        except Exception as exc:  # retryable by class, or unexpected: both get retried
            if ctx.attempt >= self.settings.max_attempts:
                return self._dead(task, ctx, payload, exc)
            delay = backoff_seconds(ctx.attempt, self.settings)
            log.warning(
                "job %s attempt %d failed (%s: %s); retrying in %.1fs",
                ctx.job_id, ctx.attempt, type(exc).__name__, exc, delay,
            )  # fmt: skip
            raise task.retry(countdown=delay, max_retries=None) from exc
        self.redis.delete(self._attempts_key(ctx.job_id))
        return outcome.model_dump(mode="json")

    def _dead(self, task: Task, ctx: JobContext, payload: Any, exc: Exception) -> Any:
        error = error_result(exc, job_id=ctx.job_id, worker=ctx.worker)
        delivery = task.request.delivery_info or {}
        self.dead_letters.add(
            DeadLetter(
                job_id=ctx.job_id,
                task=task.name,
                queue=str(delivery.get("routing_key") or ""),
                payload=payload,
                error_code=error.code,
                error_message=error.message,
                attempts=ctx.attempt,
                worker=ctx.worker,
                first_seen_at=ctx.submitted_at,
            )
        )
        self.redis.delete(self._attempts_key(ctx.job_id))
        log.warning(
            "job %s dead-lettered after %d attempt(s): %s", ctx.job_id, ctx.attempt, error.code
        )
        return error.model_dump(mode="json")

    def _count_attempt(self, job_id: str) -> int:
        key = self._attempts_key(job_id)
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, self.settings.result_ttl_s)
        attempt, _ = pipe.execute()
        return int(attempt)

    def _attempts_key(self, job_id: str) -> str:
        return self.settings.redis_key_prefix + ATTEMPTS_KEY.format(job_id=job_id)
