"""Tasks that misbehave on purpose, loaded into test workers with QFLEET_TASK_MODULES.

They are `JobTask`s like every real job, so the tests exercise the retry, attempt-counting and
dead-letter machinery every qfleet task gets.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from celery import shared_task
from pydantic import BaseModel

from qfleet.workers.policy import JobContext, JobTask

ALWAYS_FAILS = "qfleet.test.always_fails"
KILLS_WORKER = "qfleet.test.kills_worker"


@shared_task(base=JobTask, name=ALWAYS_FAILS, bind=True)
def always_fails(
    self: JobTask, ctx: JobContext, job: Any = None, submitted_at: float | None = None
) -> BaseModel:
    raise RuntimeError(f"always fails (attempt {ctx.attempt})")


@shared_task(base=JobTask, name=KILLS_WORKER, bind=True)
def kills_worker(
    self: JobTask, ctx: JobContext, job: Any = None, submitted_at: float | None = None
) -> BaseModel:
    # What the kernel's OOM killer does: no cleanup, no ack, the whole process gone.
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")
