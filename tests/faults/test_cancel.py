"""Cancel stops work: a running job's rows leave their batch, a queued job never starts, and
either way the caller gets a `cancelled` JobError (never a silent drop)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ops.localfleet import WorkerProcess
from qfleet.tasks.schemas import JobError, JobResult
from tests.faults.scenarios import (
    LONG_TOKENS,
    client,
    completions,
    long_job,
    own_fleet,
    report,
    wait_outcome,
    wait_running,
)

pytestmark = pytest.mark.integration


def test_cancelling_a_running_job_stops_its_rows_and_answers_cancelled(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    env = own_fleet(fleet_env, key_prefix, QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS))
    worker = WorkerProcess(env, tmp_path / "w.log", hostname="cancel@test", concurrency=2).start()
    try:
        with client(env) as fleet:
            # Given two long jobs decoding in one batch
            victim = fleet.submit(long_job("cancel me"))
            mate = fleet.submit(long_job("keep me"))
            wait_running(fleet, victim)
            wait_running(fleet, mate)
            time.sleep(0.5)
            # When one of them is cancelled
            fleet.cancel(victim)
            cancelled_at = time.monotonic()
            outcome = wait_outcome(fleet, victim, timeout=60)
            stop_s = time.monotonic() - cancelled_at
            mate_still_running = fleet.result(mate) is None
            mate_outcome = wait_outcome(fleet, mate, timeout=120)
    finally:
        worker.stop()
    # Then it ends `cancelled` while its batch-mate still decodes, and the batch-mate finishes
    assert isinstance(outcome, JobError), outcome
    assert outcome.code == "cancelled"
    assert mate_still_running
    assert isinstance(mate_outcome, JobResult), mate_outcome
    assert mate_outcome.usage.completion_tokens == LONG_TOKENS
    assert victim not in completions([worker.log()])
    report(
        "cancel running job",
        submitted=2,
        completed=1,
        duplicates=0,
        lost=0,
        recovery_s=stop_s,
    )


def test_a_job_cancelled_while_queued_is_answered_cancelled_without_running(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    env = own_fleet(fleet_env, key_prefix)
    with client(env) as fleet:
        # Given a job cancelled while no worker was there to hear the revoke
        job_id = fleet.submit(long_job("never run me"))
        fleet.cancel(job_id)
        # When a worker starts and receives it
        worker = WorkerProcess(env, tmp_path / "w.log", hostname="queued@test").start()
        try:
            outcome = wait_outcome(fleet, job_id, timeout=60)
        finally:
            worker.stop()
    # Then it is answered `cancelled` and never ran
    assert isinstance(outcome, JobError), outcome
    assert outcome.code == "cancelled"
    assert "cancelled before it started" in worker.log()
    assert job_id not in completions([worker.log()])
