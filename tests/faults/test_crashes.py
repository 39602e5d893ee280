"""Crashes mid-run: a prefork child killed, Redis SIGKILLed (AOF everysec), a message lost in
kombu's two-step fetch. Every job ends with one result; the numbers are printed per scenario."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

import pytest

from ops.localfleet import RedisServer, Supervisor, WorkerProcess
from qfleet.tasks.constants import QUEUE_GENERATE
from qfleet.tasks.schemas import GenerateJob, JobResult
from tests.faults.scenarios import (
    LONG_TOKENS,
    RECEIVED,
    client,
    completions,
    long_job,
    own_fleet,
    report,
    wait_all,
    wait_outcome,
    wait_running,
)

pytestmark = pytest.mark.integration

RESENT = re.compile(r"job (\S+) is in no queue and was never started")


def _children(pid: int) -> list[int]:
    """The process ids whose parent is `pid` (a prefork worker's pool children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def test_a_prefork_child_killed_mid_job_is_requeued_and_run_once(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    # Given a prefork worker with the default time limits (hard limit 660 s) and one child
    env = own_fleet(
        fleet_env, key_prefix, QFLEET_JOB_HEARTBEAT_S="1", QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS)
    )
    worker = WorkerProcess(
        env, tmp_path / "w.log", hostname="fork@test", pool="prefork", concurrency=1
    ).start()
    try:
        with client(env) as fleet:
            job_id = fleet.submit(long_job("survive a crash"))
            wait_running(fleet, job_id)
            time.sleep(0.5)
            # When the child running it is SIGKILLed (an OOM kill) mid-generation
            for child in _children(worker.pid):
                os.kill(child, signal.SIGKILL)
            killed_at = time.monotonic()
            # Then the message is requeued, run again once the dead run's lock lapsed, and
            # answered — within seconds, not after the hard time limit
            outcome = wait_outcome(fleet, job_id, timeout=120)
            recovery_s = time.monotonic() - killed_at
    finally:
        worker.stop()
    log = worker.log()
    assert isinstance(outcome, JobResult), outcome
    assert outcome.usage.completion_tokens == LONG_TOKENS
    assert "SIGKILL" in log or "signal 9" in log, log[-3000:]
    assert RECEIVED.findall(log).count(job_id) >= 2
    assert completions([log])[job_id] == 1
    report(
        "prefork child killed",
        submitted=1,
        completed=1,
        duplicates=completions([log])[job_id] - 1,
        lost=0,
        recovery_s=recovery_s,
    )


def test_a_message_lost_in_the_fetch_is_found_by_the_ledger_and_sent_again(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    env = own_fleet(
        fleet_env, key_prefix, QFLEET_LEDGER_SWEEP_INTERVAL_S="1", QFLEET_LEDGER_MIN_AGE_S="1"
    )
    with client(env) as fleet:
        # Given a job whose message a worker popped and then died before recording it as
        # unacknowledged (kombu's two-step fetch, celery#7924): it is in no queue any more
        lost = fleet.submit(GenerateJob(prompt="lost", max_tokens=4))
        queue = env["QFLEET_REDIS_KEY_PREFIX"] + QUEUE_GENERATE
        assert fleet.redis.rpop(queue) is not None
        later = fleet.submit(GenerateJob(prompt="later", max_tokens=4))
        # When a worker serves the queue
        worker = WorkerProcess(env, tmp_path / "w.log", hostname="ledger@test").start()
        started = time.monotonic()
        try:
            outcome = wait_outcome(fleet, lost, timeout=90)
            recovery_s = time.monotonic() - started
            assert isinstance(wait_outcome(fleet, later, timeout=30), JobResult)
        finally:
            worker.stop()
    # Then the ledger found the lost job, sent it again under its id, and it ran once
    log = worker.log()
    assert RESENT.findall(log) == [lost], log[-3000:]
    assert isinstance(outcome, JobResult), outcome
    assert completions([log])[lost] == 1
    report(
        "message lost in fetch",
        submitted=2,
        completed=2,
        duplicates=0,
        lost=0,
        recovery_s=recovery_s,
    )


def test_redis_sigkilled_mid_run_every_job_completes(
    fleet_env: dict[str, str], tmp_path: Path
) -> None:
    # Given a fleet on its own Redis (AOF, fsync every second) and a run in progress, its worker
    # supervised (kombu can crash a reconnecting worker: kombu#582/#970)
    redis_server = RedisServer(tmp_path / "redis").start()
    env = {
        **fleet_env,
        "QFLEET_BROKER_URL": redis_server.url,
        "QFLEET_REDIS_KEY_PREFIX": "",
        "QFLEET_VISIBILITY_TIMEOUT_S": "8",
        "QFLEET_TASK_SOFT_TIME_LIMIT_S": "5",
        "QFLEET_TASK_TIME_LIMIT_S": "6",
        "QFLEET_UNACKED_RESTORE_INTERVAL_S": "1",
        "QFLEET_LEDGER_SWEEP_INTERVAL_S": "1",
        "QFLEET_LEDGER_MIN_AGE_S": "3",
    }
    supervisor = Supervisor(env, tmp_path, name="sigkill", concurrency=4)
    submitted = 60
    try:
        with client(env) as fleet:
            ids = [fleet.submit(GenerateJob(prompt=f"k {i}", max_tokens=6)) for i in range(60)]
            while sum(fleet.result(i) is not None for i in ids) < 15:
                time.sleep(0.05)
            # When Redis is SIGKILLed (no final fsync) and comes back from its AOF
            redis_server.kill()
            time.sleep(1)
            redis_server.start()
            restarted_at = time.monotonic()
            # Then every job completes
            results = wait_all(fleet, ids, supervisor, timeout=180)
            recovery_s = time.monotonic() - restarted_at
        runs = completions(supervisor.logs())
    finally:
        supervisor.stop()
        redis_server.stop()
    assert len(results) == submitted
    assert all(r.usage.completion_tokens == 6 for r in results)
    # A job that finished in the second before the kill may run again (its result and its ack
    # were in the lost second): it then has the same, single result
    duplicates = sum(n - 1 for n in runs.values())
    report(
        "redis SIGKILL (AOF everysec)",
        submitted=submitted,
        completed=len(results),
        duplicates=duplicates,
        lost=submitted - len(results),
        recovery_s=recovery_s,
    )
