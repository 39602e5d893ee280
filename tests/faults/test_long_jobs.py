"""Jobs of any length: owned locks, heartbeats past the visibility timeout, time limits enforced
by qfleet on the threads pool (Celery's threads pool enforces none, celery#9203)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import redis

from ops.localfleet import WorkerProcess
from qfleet.tasks.deadletters import DeadLetterStore
from qfleet.tasks.schemas import GenerateJob, JobError, JobResult
from tests.faults.scenarios import (
    LONG_TOKENS,
    RECEIVED,
    client,
    completions,
    long_job,
    own_fleet,
    report,
    wait_outcome,
)

pytestmark = pytest.mark.integration


def test_a_late_first_copy_cannot_release_the_second_copys_lock(redis_url: str) -> None:
    from qfleet.workers.running import RunningLock

    client_ = redis.Redis.from_url(redis_url)
    key = f"qfleet-test-{uuid.uuid4().hex}:qfleet:running:job"
    try:
        # Given a first copy whose lock lapsed (its worker stalled past three heartbeats)
        first = RunningLock(client_, key, ttl_s=0.2)
        assert first.acquire()
        time.sleep(0.3)
        # And a second copy that took the lock since
        second = RunningLock(client_, key, ttl_s=30)
        assert second.acquire()
        # When the first copy finishes late and releases, or renews, its lock
        released = first.release()
        renewed = first.renew()
        # Then the second copy's lock stands: only its owner can renew or delete it
        assert not released
        assert not renewed
        assert client_.get(key) == second.token.encode()
        assert second.renew()
        assert second.release()
        assert client_.get(key) is None
    finally:
        client_.delete(key)
        client_.close()


def test_the_heartbeat_keeps_a_running_delivery_in_kombus_unacked_index(redis_url: str) -> None:
    from qfleet.workers.running import UNACKED_INDEX, JobWatch, RunningLock

    client_ = redis.Redis.from_url(redis_url)
    prefix = f"qfleet-test-{uuid.uuid4().hex}:"
    try:
        # Given a running job's delivery fetched long ago (as kombu scores it) and a finished one
        client_.zadd(prefix + UNACKED_INDEX, {"running-tag": 1.0})
        lock = RunningLock(client_, prefix + "lock", ttl_s=5)
        assert lock.acquire()
        client_.pexpire(prefix + "lock", 1_000)  # most of its time already gone
        watch = JobWatch(client_, client_, key_prefix=prefix, heartbeat_s=1, poll_s=0.05)
        running = watch.watch("job-a", lock, "running-tag")
        finished = watch.watch("job-b", None, "acked-tag")
        # When a heartbeat passes, and the job is cancelled
        watch.heartbeat([running, finished])
        client_.set(watch.cancel_key("job-a"), "1")
        deadline = time.monotonic() + 5
        while not running.cancelled.is_set():
            assert time.monotonic() < deadline, "the watcher never saw the cancel key"
            time.sleep(0.02)
        watch.close()
        # Then the running delivery looks freshly fetched, the acked one is not brought back,
        # the lock was renewed, and only the cancelled job's flag is set
        score = client_.zscore(prefix + UNACKED_INDEX, "running-tag")
        assert score is not None
        assert score > time.time() - 10
        assert client_.zscore(prefix + UNACKED_INDEX, "acked-tag") is None
        assert client_.pttl(prefix + "lock") > 4_000
        assert not finished.cancelled.is_set()
    finally:
        for key in client_.scan_iter(match=f"{prefix}*"):
            client_.delete(key)
        client_.close()


def test_a_job_longer_than_the_visibility_timeout_runs_once(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    # Given a broker that redelivers unacknowledged messages after 0.5 s (looked for twice a
    # second), so a job of 1 s has outlived its visibility timeout at one look at least
    env = own_fleet(
        fleet_env,
        key_prefix,
        QFLEET_VISIBILITY_TIMEOUT_S="0.5",
        QFLEET_UNACKED_RESTORE_INTERVAL_S="0.5",
        QFLEET_TASK_SOFT_TIME_LIMIT_S="120",
        QFLEET_TASK_TIME_LIMIT_S="130",
        QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS),
    )
    worker = WorkerProcess(env, tmp_path / "w.log", hostname="long@test", concurrency=2).start()
    try:
        with client(env) as fleet:
            # When one job generates for several times that long
            job_id = fleet.submit(long_job())
            outcome = wait_outcome(fleet, job_id, timeout=180)
            time.sleep(3)  # a redelivery, had there been one, would show in this time
            dead = DeadLetterStore(fleet.redis, env["QFLEET_REDIS_KEY_PREFIX"]).count()
    finally:
        worker.stop()
    # Then it was delivered once, ran once, finished with its own result, and nothing died
    assert isinstance(outcome, JobResult), outcome
    assert outcome.usage.completion_tokens == LONG_TOKENS
    assert outcome.timings.total_ms > 1_000, "the job did not outlast the visibility timeout"
    log = worker.log()
    assert RECEIVED.findall(log).count(job_id) == 1, log[-3000:]
    assert completions([log])[job_id] == 1
    assert dead == 0
    report(
        "long job (visibility 0.5 s)",
        submitted=1,
        completed=1,
        duplicates=RECEIVED.findall(log).count(job_id) - 1,
        lost=0,
        recovery_s=None,
    )


def test_a_row_past_the_soft_limit_ends_timeout_and_its_batch_mates_go_on(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    # Given a soft time limit of 0.5 s on the threads pool (the tiny model decodes LONG_TOKENS
    # in one and a half to two seconds through a worker on the fast CPUs seen so far)
    env = own_fleet(
        fleet_env,
        key_prefix,
        QFLEET_TASK_SOFT_TIME_LIMIT_S="0.5",
        QFLEET_TASK_TIME_LIMIT_S="1",
        QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS),
    )
    worker = WorkerProcess(env, tmp_path / "w.log", hostname="limit@test", concurrency=2).start()
    try:
        with client(env) as fleet:
            # When a long job and a short one are served together
            slow = fleet.submit(long_job())
            quick = fleet.submit(GenerateJob(prompt="short", max_tokens=8))
            slow_outcome = wait_outcome(fleet, slow, timeout=120)
            quick_outcome = wait_outcome(fleet, quick, timeout=120)
            letter = DeadLetterStore(fleet.redis, env["QFLEET_REDIS_KEY_PREFIX"]).get(slow)
    finally:
        worker.stop()
    # Then the long one ends with a `timeout` JobError, dead-lettered, and the short one is served
    assert isinstance(slow_outcome, JobError), slow_outcome
    assert slow_outcome.code == "timeout"
    assert letter is not None
    assert letter.error_code == "timeout"
    assert isinstance(quick_outcome, JobResult), quick_outcome
    assert quick_outcome.usage.completion_tokens == 8
