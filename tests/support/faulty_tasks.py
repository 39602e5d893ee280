"""Tasks that misbehave on purpose, loaded into test workers with QFLEET_TASK_MODULES.

They run under the same policy as real jobs (`job_runner`), so the tests exercise the retry,
attempt-counting and dead-letter machinery every qfleet task gets.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from celery import Task
from pydantic import BaseModel

from qfleet.workers.main import app, job_runner
from qfleet.workers.policy import JobContext

ALWAYS_FAILS = "qfleet.test.always_fails"
KILLS_WORKER = "qfleet.test.kills_worker"


def _boom(payload: Any, ctx: JobContext) -> BaseModel:
    raise RuntimeError(f"always fails (attempt {ctx.attempt})")


def _kill(payload: Any, ctx: JobContext) -> BaseModel:
    # What the kernel's OOM killer does: no cleanup, no ack, the whole process gone.
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


@app.task(name=ALWAYS_FAILS, bind=True)
def always_fails(self: Task, job: Any = None, submitted_at: float | None = None) -> Any:
    return job_runner.run(self, _boom, job, submitted_at)


@app.task(name=KILLS_WORKER, bind=True)
def kills_worker(self: Task, job: Any = None, submitted_at: float | None = None) -> Any:
    return job_runner.run(self, _kill, job, submitted_at)
