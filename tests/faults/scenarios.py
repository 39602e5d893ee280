"""Helpers the fault scenarios share: own fleets, counting deliveries and completions in logs,
and one line per scenario with its numbers (submitted, completed, duplicates, lost, recovery)."""

from __future__ import annotations

import collections
import contextlib
import re
import time
import uuid

from ops.localfleet import Supervisor
from qfleet.producer.client import BROKER_ERRORS, FleetClient
from qfleet.tasks.schemas import GenerateJob, JobError, JobResult
from qfleet.tasks.settings import Settings

RECEIVED = re.compile(r"Task qfleet\.generate\[(\w+)\] received")
STORED = re.compile(r"Task qfleet\.generate\[(\w+)\] succeeded")
REPLAYED = re.compile(r"job (\S+) delivered again after it finished")
DONE = re.compile(r"job (\S+) done:")
# A generation long enough to outlast a visibility timeout of a few seconds on the tiny model:
# a stop string that never matches makes the engine decode the growing text at every token.
LONG_TOKENS = 3_900
NEVER = "~never~"


def long_job(prompt: str = "a long one", **fields: object) -> GenerateJob:
    """A greedy job that decodes LONG_TOKENS tokens (seconds on the tiny model)."""
    return GenerateJob(prompt=prompt, max_tokens=LONG_TOKENS, stop=[NEVER], **fields)  # type: ignore[arg-type]


def own_fleet(fleet_env: dict[str, str], key_prefix: str, **extra: str) -> dict[str, str]:
    """`fleet_env` with `extra` settings and a key prefix no other test shares."""
    return {**fleet_env, **extra, "QFLEET_REDIS_KEY_PREFIX": f"{key_prefix}{uuid.uuid4().hex[:6]}:"}


def client(env: dict[str, str]) -> FleetClient:
    """A FleetClient for the fleet `env` describes."""
    return FleetClient(
        Settings(
            broker_url=env["QFLEET_BROKER_URL"],
            redis_key_prefix=env["QFLEET_REDIS_KEY_PREFIX"],
            max_new_tokens=int(env.get("QFLEET_MAX_NEW_TOKENS", LONG_TOKENS)),
        )
    )


def completions(logs: list[str]) -> collections.Counter[str]:
    """How often each job id ran to a result, across worker logs (replays are not runs)."""
    done = collections.Counter(m for log in logs for m in DONE.findall(log))
    return +done


def wait_outcome(fleet: FleetClient, job_id: str, timeout: float) -> JobResult | JobError:
    """The job's outcome (result or error), polling until it has one."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = fleet.result(job_id)
        if outcome is not None:
            assert isinstance(outcome, JobResult | JobError), outcome
            return outcome
        assert time.monotonic() < deadline, f"job {job_id} has no outcome after {timeout}s"
        time.sleep(0.05)


def wait_running(fleet: FleetClient, job_id: str, timeout: float = 60) -> None:
    """Block until a worker started `job_id`."""
    deadline = time.monotonic() + timeout
    while fleet.status(job_id) != "running":
        assert time.monotonic() < deadline, f"job {job_id} never started"
        time.sleep(0.02)


def report(
    scenario: str,
    *,
    submitted: int,
    completed: int,
    duplicates: int,
    lost: int,
    recovery_s: float | None,
) -> None:
    """Print the scenario's numbers (pytest -s shows them; docs/reliability.md quotes them)."""
    recovery = "n/a" if recovery_s is None else f"{recovery_s:.1f}s"
    print(
        f"\nSCENARIO {scenario}: submitted={submitted} completed={completed} "
        f"duplicates={duplicates} lost={lost} recovery={recovery}"
    )


def wait_all(
    fleet: FleetClient, ids: list[str], supervisor: Supervisor, timeout: float
) -> list[JobResult]:
    """Every job's result, keeping the supervised worker alive while Redis comes back."""
    deadline = time.monotonic() + timeout
    results: dict[str, JobResult] = {}
    while len(results) < len(ids):
        assert time.monotonic() < deadline, f"{len(ids) - len(results)} jobs without a result"
        supervisor.keep_alive()
        for job_id in ids:
            if job_id not in results:
                with contextlib.suppress(*BROKER_ERRORS):  # Redis may still be coming back
                    outcome = fleet.result(job_id)
                    if outcome is not None:
                        assert isinstance(outcome, JobResult), outcome
                        results[job_id] = outcome
        time.sleep(0.1)
    return [results[i] for i in ids]
