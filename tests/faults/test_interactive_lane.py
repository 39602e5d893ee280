"""Priorities that hold getting into the worker: the interactive lane (workers/lane.py).

A worker whose every job thread holds a long bulk job still takes an interactive job at once, on
job threads bulk jobs cannot take; the lane keeps the main pool's delivery promises (run once,
acked after the result, cancel, redelivery after a kill)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from ops.localfleet import WorkerProcess
from qfleet.tasks.constants import QUEUE_GENERATE
from qfleet.tasks.schemas import GenerateJob, JobError, JobResult
from tests.faults.lane_support import LANE, broker_leftovers, busy_worker
from tests.faults.scenarios import (
    LONG_TOKENS,
    RECEIVED,
    client,
    completions,
    long_job,
    own_fleet,
    report,
    wait_outcome,
    wait_running,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("slots", ["2", "0"])
def test_an_interactive_job_finishes_while_bulk_jobs_hold_every_job_thread(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path, slots: str
) -> None:
    env = own_fleet(
        fleet_env, key_prefix, QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS),
        QFLEET_WORKER_INTERACTIVE_SLOTS=slots,
    )  # fmt: skip
    with client(env) as fleet:
        # Given a worker whose two job threads both decode a long bulk job
        worker, bulk = busy_worker(env, tmp_path / f"w{slots}.log", fleet)
        try:
            # When an interactive job is submitted
            interactive = fleet.submit(GenerateJob(prompt="quick one", max_tokens=16))
            outcome = wait_outcome(fleet, interactive, timeout=300)
            bulk_done_before = [fleet.result(b) is not None for b in bulk]
            bulk_outcomes = [wait_outcome(fleet, b, timeout=300) for b in bulk]
            time.sleep(0.5)  # the last ack lands after the result is stored
            leftovers = broker_leftovers(env)
        finally:
            worker.stop()
    log = worker.log()
    assert isinstance(outcome, JobResult), outcome
    assert all(isinstance(b, JobResult) for b in bulk_outcomes), bulk_outcomes
    assert completions([log]) == {interactive: 1, bulk[0]: 1, bulk[1]: 1}
    assert RECEIVED.findall(log).count(interactive) == 1
    assert leftovers == {"unacked": 0, "unacked_index": 0, "queued": 0}
    assert f"job threads: 2 for every job, {slots} more for interactive jobs only" in log
    if slots == "0":
        # Then, without the lane, it waits until a bulk job ends and frees a job thread
        assert any(bulk_done_before), "the interactive job ran without a free job thread"
        assert LANE not in log
        return
    # Then it completes while both bulk jobs are still decoding, taken by the lane, once
    assert not any(bulk_done_before), "a bulk job ended before the interactive job"
    assert f"qfleet.generate[{interactive}] received {LANE}" in log
    assert "interactive lane: 2 job thread(s)" in log
    assert "interactive lane closed" in log
    report("interactive job under a full bulk pool", submitted=3, completed=3, duplicates=0,
           lost=0, recovery_s=None)  # fmt: skip


def test_a_lane_job_can_be_cancelled_and_shows_as_active(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    env = own_fleet(fleet_env, key_prefix, QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS))
    with client(env) as fleet:
        # Given a long interactive job running in the lane of a worker full of bulk jobs
        worker, bulk = busy_worker(env, tmp_path / "w.log", fleet, bulk=1)
        try:
            victim = fleet.submit(long_job("cancel me in the lane"))
            wait_running(fleet, victim)
            active = fleet.app.control.inspect(destination=[worker.hostname], timeout=5).active()
            # When it is cancelled
            fleet.cancel(victim)
            outcome = wait_outcome(fleet, victim, timeout=60)
            bulk_running = fleet.result(bulk[0]) is None
            bulk_outcome = wait_outcome(fleet, bulk[0], timeout=300)
            time.sleep(0.5)
            leftovers = broker_leftovers(env)
        finally:
            worker.stop()
    log = worker.log()
    # Then `inspect active` listed it, it ends `cancelled` while the bulk job decodes on, and
    # its message was acknowledged
    assert active is not None
    assert victim in [t["id"] for t in active[worker.hostname]], active
    assert f"qfleet.generate[{victim}] received {LANE}" in log
    assert isinstance(outcome, JobError), outcome
    assert outcome.code == "cancelled"
    assert bulk_running
    assert isinstance(bulk_outcome, JobResult), bulk_outcome
    assert victim not in completions([log])
    assert leftovers == {"unacked": 0, "unacked_index": 0, "queued": 0}


def test_a_lane_job_killed_with_its_worker_is_delivered_again_and_runs_once(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    env = own_fleet(
        fleet_env, key_prefix, QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS),
        QFLEET_VISIBILITY_TIMEOUT_S="3", QFLEET_UNACKED_RESTORE_INTERVAL_S="1",
        QFLEET_JOB_HEARTBEAT_S="1",
    )  # fmt: skip
    with client(env) as fleet:
        # Given a long interactive job running in the lane of a worker full of bulk jobs
        first, bulk = busy_worker(env, tmp_path / "first.log", fleet, bulk=1)
        try:
            job_id = fleet.submit(long_job("survive a kill in the lane"))
            wait_running(fleet, job_id)
            time.sleep(0.5)
            # When the worker is SIGKILLed (an OOM kill) and a new one starts
            os.kill(first.pid, signal.SIGKILL)
            killed_at = time.monotonic()
        finally:
            first.stop()
        second = WorkerProcess(env, tmp_path / "second.log", hostname="lane-second@test").start()
        try:
            outcome = wait_outcome(fleet, job_id, timeout=300)
            recovery_s = time.monotonic() - killed_at
            bulk_outcome = wait_outcome(fleet, bulk[0], timeout=300)
            time.sleep(0.5)
            leftovers = broker_leftovers(env)
        finally:
            second.stop()
    logs = [first.log(), second.log()]
    # Then its message came back after the visibility timeout and it ran to one result
    assert f"qfleet.generate[{job_id}] received {LANE}" in logs[0]
    assert RECEIVED.findall(logs[1]).count(job_id) >= 1
    assert isinstance(outcome, JobResult), outcome
    assert outcome.usage.completion_tokens == LONG_TOKENS
    assert completions(logs)[job_id] == 1
    assert isinstance(bulk_outcome, JobResult), bulk_outcome
    assert completions(logs)[bulk[0]] == 1
    assert leftovers == {"unacked": 0, "unacked_index": 0, "queued": 0}
    report("lane job, worker SIGKILLed", submitted=2, completed=2, duplicates=0, lost=0,
           recovery_s=recovery_s)  # fmt: skip


def test_a_warm_shutdown_lets_a_running_lane_job_finish_and_ack(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    env = own_fleet(fleet_env, key_prefix, QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS))
    with client(env) as fleet:
        # Given a long interactive job running in the lane of a worker full of bulk jobs
        worker, bulk = busy_worker(env, tmp_path / "w.log", fleet, bulk=1)
        job_id = fleet.submit(long_job("finish before the worker goes"))
        wait_running(fleet, job_id)
        # When the worker gets SIGTERM (a warm shutdown) while both run
        code = worker.stop(timeout=300)
        # Then both jobs finished before it exited, and nothing is left unacknowledged
        outcome = fleet.result(job_id)
        bulk_outcome = fleet.result(bulk[0])
        leftovers = broker_leftovers(env)
    log = worker.log()
    assert code == 0, log[-3000:]
    assert f"qfleet.generate[{job_id}] received {LANE}" in log
    assert isinstance(outcome, JobResult), outcome
    assert outcome.usage.completion_tokens == LONG_TOKENS
    assert isinstance(bulk_outcome, JobResult), bulk_outcome
    assert completions([log]) == {job_id: 1, bulk[0]: 1}
    assert leftovers == {"unacked": 0, "unacked_index": 0, "queued": 0}
    assert log.index("interactive lane closed") > log.index(f"job {job_id} done:")


def test_an_interactive_retry_waits_its_countdown_in_the_lane_and_dead_letters_once(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    from tests.support.faulty_tasks import ALWAYS_FAILS

    env = own_fleet(
        fleet_env, key_prefix, QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS), QFLEET_MAX_ATTEMPTS="3",
        QFLEET_RETRY_BACKOFF_S="0.4", QFLEET_RETRY_BACKOFF_MAX_S="1",
        QFLEET_TASK_MODULES=json.dumps(["tests.support.faulty_tasks"]),
    )  # fmt: skip
    with client(env) as fleet:
        # Given a worker whose only job thread decodes a long bulk job
        worker, bulk = busy_worker(env, tmp_path / "w.log", fleet, bulk=1)
        try:
            # When an interactive (priority 0) job that always fails arrives
            job_id = "lane-retry-" + os.urandom(4).hex()
            fleet.app.send_task(ALWAYS_FAILS, kwargs={"job": {"n": 1}}, task_id=job_id,
                                queue=QUEUE_GENERATE, priority=0)  # fmt: skip
            deadline = time.monotonic() + 60
            while (letter := fleet.dead_letters.get(job_id)) is None:
                assert time.monotonic() < deadline, "never dead-lettered"
                time.sleep(0.05)
            bulk_running = fleet.result(bulk[0]) is None
            bulk_outcome = wait_outcome(fleet, bulk[0], timeout=300)
            time.sleep(0.5)
            leftovers = broker_leftovers(env)
        finally:
            worker.stop()
    log = worker.log()
    # Then every attempt, the retries after their countdown too, ran in the lane while the bulk
    # job decoded, and the job was dead-lettered once after its attempt budget
    lane_received = f"qfleet.test.always_fails[{job_id}] received {LANE}"
    assert log.count(lane_received) == 3, log[-3000:]
    assert letter.attempts == 3
    assert bulk_running
    assert isinstance(bulk_outcome, JobResult), bulk_outcome
    assert leftovers == {"unacked": 0, "unacked_index": 0, "queued": 0}


def test_a_cold_shutdown_puts_a_running_lane_job_back_and_it_runs_once(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    env = own_fleet(fleet_env, key_prefix, QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS),
                    QFLEET_JOB_HEARTBEAT_S="1")  # fmt: skip
    with client(env) as fleet:
        # Given a long interactive job running in the lane of a worker full of bulk jobs
        first, bulk = busy_worker(env, tmp_path / "first.log", fleet, bulk=1)
        job_id = fleet.submit(long_job("put me back"))
        wait_running(fleet, job_id)
        # When the worker gets SIGQUIT (a cold shutdown) and exits
        os.kill(first.pid, signal.SIGQUIT)
        first.stop(timeout=60)
        after_exit = broker_leftovers(env)
        # Then the lane's message went back to its queue at once (not after the visibility
        # timeout), and the job has one result (its thread, which nothing can kill, finished it
        # before the process exited; the new worker finds that result instead of running it)
        second = WorkerProcess(env, tmp_path / "second.log", hostname="lane-cold@test").start()
        try:
            outcome = wait_outcome(fleet, job_id, timeout=300)
            wait_outcome(fleet, bulk[0], timeout=300)
            time.sleep(0.5)
            leftovers = broker_leftovers(env)
        finally:
            second.stop()
    logs = [first.log(), second.log()]
    cold = logs[0].find("interactive lane: cold stop")
    assert 0 <= cold < logs[0].index("Restoring 1 unacknowledged message(s)", cold)
    assert after_exit["queued"] >= 1, after_exit
    assert isinstance(outcome, JobResult), outcome
    assert completions(logs)[job_id] == 1
    assert leftovers == {"unacked": 0, "unacked_index": 0, "queued": 0}
