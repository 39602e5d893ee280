"""Failing and worker-killing jobs end in the dead-letter store; the fleet keeps serving."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.localfleet import Supervisor, run_cli
from qfleet.producer.client import FleetClient
from qfleet.tasks.constants import QUEUE_GENERATE
from qfleet.tasks.errors import JobFailedError
from qfleet.tasks.schemas import GenerateJob
from qfleet.tasks.settings import Settings
from tests.support.faulty_tasks import ALWAYS_FAILS, KILLS_WORKER

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
def fault_env(fleet_env: dict[str, str]) -> dict[str, str]:
    return {
        **fleet_env,
        "QFLEET_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "QFLEET_RETRY_BACKOFF_S": "0.2",
        "QFLEET_RETRY_BACKOFF_MAX_S": "0.5",
        # Short, so a killed worker's messages come back within seconds.
        "QFLEET_VISIBILITY_TIMEOUT_S": "6",
        "QFLEET_TASK_SOFT_TIME_LIMIT_S": "4",
        "QFLEET_TASK_TIME_LIMIT_S": "5",
        "QFLEET_UNACKED_RESTORE_INTERVAL_S": "1",
        "QFLEET_TASK_MODULES": json.dumps(["tests.support.faulty_tasks"]),
    }


@pytest.fixture
def client(fault_env: dict[str, str]) -> Iterator[FleetClient]:
    settings = Settings(
        broker_url=fault_env["QFLEET_BROKER_URL"],
        redis_key_prefix=fault_env["QFLEET_REDIS_KEY_PREFIX"],
    )
    with FleetClient(settings) as fleet:
        yield fleet


def _send(fleet: FleetClient, task: str, payload: object) -> str:
    job_id = uuid.uuid4().hex
    fleet.app.send_task(task, kwargs={"job": payload}, task_id=job_id, queue=QUEUE_GENERATE)
    return job_id


def _wait_dead(fleet: FleetClient, job_id: str, supervisor: Supervisor, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.keep_alive()
        letter = fleet.dead_letters.get(job_id)
        if letter is not None:
            return letter
        time.sleep(0.2)
    raise AssertionError(f"{job_id} not dead-lettered in {timeout}s")


def test_failing_and_crashing_jobs_are_dead_lettered(
    fault_env: dict[str, str], client: FleetClient, tmp_path: Path
) -> None:
    supervisor = Supervisor(fault_env, tmp_path, name="fault")
    try:
        # Given a job that always raises, and then one that SIGKILLs its worker (one after the
        # other: a crash also counts a start against every job its worker had begun)
        failing = _send(client, ALWAYS_FAILS, {"n": 1})
        fail_letter = _wait_dead(client, failing, supervisor, timeout=60)
        crashing = _send(client, KILLS_WORKER, {"n": 2})
        # When the fleet has worked on them (restarting the worker as a supervisor would)
        crash_letter = _wait_dead(client, crashing, supervisor, timeout=90)
        # Then both are dead-lettered after the attempt budget, with payload and reason
        assert fail_letter.attempts == MAX_ATTEMPTS
        assert fail_letter.error_code == "internal"
        assert "always fails (attempt 3)" in fail_letter.error_message
        assert fail_letter.payload == {"n": 1}
        assert crash_letter.attempts == MAX_ATTEMPTS + 1
        assert crash_letter.error_code == "too_many_attempts"
        assert supervisor.starts == MAX_ATTEMPTS + 1  # killed once per attempt, then refused
        # And producers waiting on them hear back with a JobError
        for job_id, code in ((failing, "internal"), (crashing, "too_many_attempts")):
            with pytest.raises(JobFailedError) as failed:
                client.wait(job_id, timeout=10)
            assert failed.value.error.code == code
        # And the fleet keeps serving ordinary jobs
        supervisor.keep_alive()
        result = client.wait(client.submit(GenerateJob(prompt="still up?", max_tokens=3)))
        assert result.usage.completion_tokens == 3
    finally:
        supervisor.stop()


def test_dlq_cli_lists_shows_redrives_and_purges(
    fault_env: dict[str, str], client: FleetClient, tmp_path: Path
) -> None:
    supervisor = Supervisor(fault_env, tmp_path, name="fault")
    try:
        # Given a dead-lettered generate job (invalid payload: a permanent error, no retries)
        bad = _send(client, "qfleet.generate", {"prompt": "x", "max_tokens": 0})
        letter = _wait_dead(client, bad, supervisor, timeout=30)
        assert letter.attempts == 1
        assert letter.error_code == "invalid_job"
        listed = run_cli(["dlq", "list", "--json"], fault_env)
        assert bad in [entry["job_id"] for entry in json.loads(listed.stdout)]
        shown = run_cli(["dlq", "show", bad], fault_env)
        assert json.loads(shown.stdout)["payload"] == {"prompt": "x", "max_tokens": 0}
        # When it is redriven it fails again (the payload is still bad) and comes back
        redriven = run_cli(["dlq", "redrive", bad], fault_env)
        assert redriven.returncode == 0, redriven.stderr
        assert _wait_dead(client, bad, supervisor, timeout=30).attempts == 1
        # And purge empties the store
        assert run_cli(["dlq", "purge"], fault_env).returncode == 2
        assert run_cli(["dlq", "purge", "--yes"], fault_env).returncode == 0
        assert client.dead_letters.count() == 0
        assert run_cli(["dlq", "show", bad], fault_env).returncode == 5
    finally:
        supervisor.stop()
