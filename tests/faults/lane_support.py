"""Helpers of the interactive-lane fault tests: a worker whose job threads all hold bulk jobs,
and what the broker still holds afterwards."""

from __future__ import annotations

from pathlib import Path

import redis

from ops.localfleet import WorkerProcess
from qfleet.producer.client import FleetClient
from qfleet.tasks.constants import PRIORITY_SEPARATOR, QUEUE_GENERATE
from tests.faults.scenarios import long_job, wait_running

# How a worker's log marks a job its interactive lane received.
LANE = "(interactive lane)"


def busy_worker(
    env: dict[str, str], log: Path, fleet: FleetClient, bulk: int = 2
) -> tuple[WorkerProcess, list[str]]:
    """A worker with `bulk` job threads, each holding a long bulk job that is decoding."""
    worker = WorkerProcess(env, log, hostname=f"lane-{log.stem}@test", concurrency=bulk).start()
    ids = [fleet.submit(long_job(f"bulk {i}", priority="bulk")) for i in range(bulk)]
    for job_id in ids:
        wait_running(fleet, job_id)
    return worker, ids


def broker_leftovers(env: dict[str, str]) -> dict[str, int]:
    """What the fleet's broker still holds: unacknowledged messages and queued ones."""
    prefix = env["QFLEET_REDIS_KEY_PREFIX"]
    r = redis.Redis.from_url(env["QFLEET_BROKER_URL"])
    try:
        lists = [prefix + QUEUE_GENERATE] + [
            f"{prefix}{QUEUE_GENERATE}{PRIORITY_SEPARATOR}{level}" for level in range(1, 10)
        ]
        return {
            "unacked": int(r.hlen(prefix + "unacked")),
            "unacked_index": int(r.zcard(prefix + "unacked_index")),
            "queued": sum(int(r.llen(name)) for name in lists),
        }
    finally:
        r.close()
