"""Delivery under faults: killed workers, duplicate and hostile messages, a restarted Redis."""

from __future__ import annotations

import collections
import re
import time
import uuid
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Producer

from ops.localfleet import RedisServer, Supervisor, WorkerProcess, run_cli
from qfleet.producer.client import FleetClient
from qfleet.tasks.constants import QUEUE_GENERATE, TASK_GENERATE
from qfleet.tasks.errors import JobFailedError
from qfleet.tasks.schemas import GenerateJob
from qfleet.tasks.settings import Settings
from tests.faults.scenarios import wait_all

pytestmark = pytest.mark.integration

DONE = re.compile(r"job (\S+) done:")
STORED = re.compile(r"Task qfleet\.generate\[(\w+)\] succeeded")
REPLAYED = re.compile(r"job (\S+) delivered again after it finished")
FAST_RECOVERY = {
    # A killed worker's messages come back after the visibility timeout: keep it short here.
    "QFLEET_VISIBILITY_TIMEOUT_S": "8",
    "QFLEET_TASK_SOFT_TIME_LIMIT_S": "5",
    "QFLEET_TASK_TIME_LIMIT_S": "6",
    "QFLEET_UNACKED_RESTORE_INTERVAL_S": "1",
    # And a message lost in the fetch itself (celery#7924) is found and sent again.
    "QFLEET_LEDGER_SWEEP_INTERVAL_S": "1",
    "QFLEET_LEDGER_MIN_AGE_S": "3",
}


def _completions(*workers: WorkerProcess) -> collections.Counter[str]:
    """How often each job id's result was produced, across the logs of `workers`.

    A delivery of an already finished job hands back the stored result (logged as a replay)
    instead of producing one: that is not a second completion.
    """
    logs = [w.log() for w in workers]
    stored = collections.Counter(m for log in logs for m in STORED.findall(log))
    stored.subtract(m for log in logs for m in REPLAYED.findall(log))
    return +stored


def _own_fleet(fleet_env: dict[str, str], key_prefix: str, **extra: str) -> dict[str, str]:
    return {**fleet_env, **extra, "QFLEET_REDIS_KEY_PREFIX": f"{key_prefix}{uuid.uuid4().hex[:6]}:"}


def _client(env: dict[str, str]) -> FleetClient:
    return FleetClient(
        Settings(
            broker_url=env["QFLEET_BROKER_URL"], redis_key_prefix=env["QFLEET_REDIS_KEY_PREFIX"]
        )
    )


def test_kill_9_mid_batch_every_job_completes_once(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    env = _own_fleet(fleet_env, key_prefix, **FAST_RECOVERY)
    with _client(env) as fleet:
        # Given a 300-job run on one worker that batches 8 at a time
        first = WorkerProcess(
            env, tmp_path / "w1.log", hostname="victim@test", concurrency=8
        ).start()
        ids = [fleet.submit(GenerateJob(prompt=f"item {i}", max_tokens=8)) for i in range(300)]
        # When the worker is SIGKILLed in the middle of the run, with a batch in flight
        while len(DONE.findall(first.log())) < 60:
            time.sleep(0.05)
        first.process.kill()  # type: ignore[union-attr]
        first.stop()
        killed_at = time.monotonic()
        in_flight = [i for i in ids if fleet.result(i) is None]
        # And a replacement starts (as a supervisor would)
        second = WorkerProcess(
            env, tmp_path / "w2.log", hostname="heir@test", concurrency=8
        ).start()
        try:
            results = [fleet.wait(i, timeout=120) for i in ids]
            recovery_s = time.monotonic() - killed_at
        finally:
            second.stop()
    # Then every job has exactly one result, and none completed twice
    assert len(results) == 300
    assert all(r.usage.completion_tokens == 8 for r in results)
    completions = _completions(first, second)
    # A kill between storing a batch's results and logging them hides at most that batch's lines
    assert len(completions) >= 300 - 8
    assert max(completions.values()) == 1, completions.most_common(3)
    assert in_flight, "the kill came after the run had finished"
    print(f"kill -9: 300 submitted, 300 completed once, {len(in_flight)} redone by the heir, "
          f"recovered in {recovery_s:.1f}s")  # fmt: skip


def test_duplicate_delivery_runs_once(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    env = _own_fleet(fleet_env, key_prefix)
    worker = WorkerProcess(env, tmp_path / "w.log", hostname="dup@test", concurrency=4).start()
    try:
        with _client(env) as fleet:
            # Given the same message delivered twice at once (the producer's dedupe bypassed)
            job_id = uuid.uuid4().hex
            payload = {
                "job": GenerateJob(job_id=job_id, prompt="twice", max_tokens=40).model_dump()
            }
            for _ in range(2):
                fleet.app.send_task(TASK_GENERATE, kwargs=payload, task_id=job_id)
            first = fleet.wait(job_id, timeout=60)
            # And once more after it finished
            fleet.app.send_task(TASK_GENERATE, kwargs=payload, task_id=job_id)
            deadline = time.monotonic() + 20
            while "delivered again after it finished" not in worker.log():
                assert time.monotonic() < deadline, worker.log()[-2000:]
                time.sleep(0.1)
            # Then it ran once, and its one result stands
            assert _completions(worker)[job_id] == 1
            assert "running elsewhere; this copy checks again" in worker.log()
            assert fleet.wait(job_id) == first
    finally:
        worker.stop()


def test_malformed_messages_are_refused_and_the_worker_survives(
    worker: WorkerProcess, fleet: FleetClient, fleet_env: dict[str, str]
) -> None:
    # Given messages that are not valid jobs: a broken JSON body, an unknown task, no payload
    with Connection(
        fleet_env["QFLEET_BROKER_URL"],
        transport_options={"global_keyprefix": fleet_env["QFLEET_REDIS_KEY_PREFIX"]},
    ) as conn:
        Producer(conn).publish(
            b"{not json",
            exchange=Exchange("qfleet", type="direct"),
            routing_key=QUEUE_GENERATE,
            content_type="application/json",
            content_encoding="utf-8",
            headers={"task": TASK_GENERATE, "id": uuid.uuid4().hex},
        )
    fleet.app.send_task("qfleet.no_such_task", kwargs={}, queue=QUEUE_GENERATE)
    empty = uuid.uuid4().hex
    fleet.app.send_task(TASK_GENERATE, kwargs={}, task_id=empty)
    # Then each is refused with a log line or a JobError, and the worker keeps serving
    with pytest.raises(JobFailedError) as failed:
        fleet.wait(empty, timeout=30)
    assert failed.value.error.code == "invalid_job"
    deadline = time.monotonic() + 20
    while not ("Can't decode message body" in worker.log() and "unregistered task" in worker.log()):
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.1)
    assert worker.alive()
    assert (
        fleet.wait(fleet.submit(GenerateJob(prompt="fine", max_tokens=2))).usage.completion_tokens
        == 2
    )


def test_redis_restart_mid_run(fleet_env: dict[str, str], tiny_model: Path, tmp_path: Path) -> None:
    # Given a fleet on its own Redis (AOF on) and a run in progress, its worker supervised: kombu
    # can crash a worker while it reconnects (AttributeError in Channel.close, kombu#582/#970),
    # which in production a supervisor answers by restarting it
    redis_server = RedisServer(tmp_path / "redis").start()
    env = {**fleet_env, "QFLEET_BROKER_URL": redis_server.url, "QFLEET_REDIS_KEY_PREFIX": ""}
    env.update(FAST_RECOVERY)
    supervisor = Supervisor(env, tmp_path, name="restart", concurrency=4)
    try:
        with _client(env) as fleet:
            ids = [fleet.submit(GenerateJob(prompt=f"r {i}", max_tokens=6)) for i in range(60)]
            while sum(fleet.result(i) is not None for i in ids[:20]) < 10:
                time.sleep(0.05)
            # When Redis restarts
            redis_server.stop()
            time.sleep(2)
            redis_server.start()
            restarted_at = time.monotonic()
            # Then the run completes, and a worker consumes jobs submitted after the restart
            results = wait_all(fleet, ids, supervisor, timeout=120)
            after = [fleet.submit(GenerateJob(prompt=f"after {i}", max_tokens=4)) for i in range(5)]
            late = wait_all(fleet, after, supervisor, timeout=60)
            recovery_s = time.monotonic() - restarted_at
        assert len(results) == 60
        assert all(r.usage.completion_tokens == 4 for r in late)
        logs = supervisor.logs()
        stored = collections.Counter(m for log in logs for m in STORED.findall(log))
        stored.subtract(m for log in logs for m in REPLAYED.findall(log))
        assert max(stored.values()) == 1
        assert supervisor.worker.alive()
        print(f"redis restart: 60 + 5 jobs completed once, recovered in {recovery_s:.1f}s, "
              f"worker starts: {supervisor.starts}")  # fmt: skip
    finally:
        supervisor.stop()
        redis_server.stop()


def test_redis_password_is_required_and_never_shown(
    fleet_env: dict[str, str], tmp_path: Path
) -> None:
    # Given a Redis that requires a password
    secret = f"pw-{uuid.uuid4().hex}"
    redis_server = RedisServer(tmp_path / "redis", password=secret).start()
    env = {**fleet_env, "QFLEET_BROKER_URL": redis_server.url, "QFLEET_REDIS_KEY_PREFIX": ""}
    try:
        # When a client has no password, or a wrong one, it fails clearly
        for password in (None, "wrong"):
            attempt = {**env, **({"QFLEET_REDIS_PASSWORD": password} if password else {})}
            done = run_cli(["generate", "hi", "--timeout", "5"], attempt, timeout=60)
            assert done.returncode == 4, done.stderr
            assert re.search(r"(?i)auth|password", done.stderr), done.stderr
            assert "Traceback" not in done.stderr
        # And with the password a worker and the CLI work, and the secret appears nowhere
        env["QFLEET_REDIS_PASSWORD"] = secret
        worker = WorkerProcess(env, tmp_path / "w.log", hostname="auth@test").start()
        try:
            done = run_cli(["generate", "hi", "--max-tokens", "3"], env)
            assert done.returncode == 0, done.stderr
        finally:
            worker.stop()
        assert secret not in worker.log() + done.stdout + done.stderr
    finally:
        redis_server.stop()
