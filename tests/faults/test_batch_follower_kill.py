"""A batch survives its follower being SIGKILLed: another follower completes it, once per id."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from ops.localfleet import WorkerProcess
from ops.services import QfleetService, start_batch_runner, start_gateway
from qfleet.producer.gateway.keys import KeyStore
from qfleet.tasks.redisconn import PRODUCER_RETRIES, fleet_redis
from qfleet.tasks.settings import Settings

pytestmark = pytest.mark.integration

LINES = 240
_SUCCEEDED = re.compile(r"Task qfleet\.generate\[([^\]]+)\] succeeded")


@pytest.fixture(scope="module")
def runner_env(fleet_env: dict[str, str]) -> dict[str, str]:
    """The gateway serves HTTP only; batch runners follow the batches."""
    return {**fleet_env, "QFLEET_GATEWAY_FOLLOW_BATCHES": "false", "QFLEET_BATCH_WINDOW": "8"}


@pytest.fixture(scope="module")
def busy_worker(
    fleet_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    hostname = f"kill-{uuid.uuid4().hex[:6]}@test"
    process = WorkerProcess(fleet_env, log, hostname=hostname, concurrency=4).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def gateway(
    runner_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[QfleetService]:
    service = start_gateway(runner_env, tmp_path_factory.mktemp("gateway") / "gateway.log")
    yield service
    service.stop()


@pytest.fixture(scope="module")
def api_key(fleet_env: dict[str, str]) -> Iterator[str]:
    settings = Settings(
        broker_url=fleet_env["QFLEET_BROKER_URL"],
        redis_key_prefix=fleet_env["QFLEET_REDIS_KEY_PREFIX"],
    )
    redis = fleet_redis(settings, retries=PRODUCER_RETRIES)
    key, _ = KeyStore(redis, settings.redis_key_prefix).create("acme", name="fault test")
    yield key
    redis.close()


def _request(n: int) -> str:
    body = {"messages": [{"role": "user", "content": f"Count to {n}"}], "max_tokens": 4}
    line = {"custom_id": f"r{n:04d}", "method": "POST", "url": "/v1/chat/completions"}
    return json.dumps({**line, "body": body}) + "\n"


def _completed(client: openai.OpenAI, batch_id: str) -> int:
    counts = client.batches.retrieve(batch_id).request_counts
    assert counts is not None
    return counts.completed + counts.failed


def test_a_killed_follower_is_replaced_and_nothing_is_lost_or_redone(
    busy_worker: WorkerProcess,
    gateway: QfleetService,
    api_key: str,
    runner_env: dict[str, str],
    tmp_path: Path,
) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=api_key, max_retries=0)
    # Given a batch of 240 requests followed by batch runner A
    first = start_batch_runner(runner_env, tmp_path / "runner-a.log")
    text = "".join(_request(n) for n in range(LINES))
    file_id = client.files.create(file=("in.jsonl", text.encode()), purpose="batch").id
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 120
    while _completed(client, batch.id) < LINES // 5:
        assert time.monotonic() < deadline, first.log()
        time.sleep(0.05)
    # When A is killed with SIGKILL mid-run, and runner B starts
    os.kill(first.pid, signal.SIGKILL)
    killed_at, done_at_kill = time.monotonic(), _completed(client, batch.id)
    assert done_at_kill < LINES, "the batch finished before the kill"
    second = start_batch_runner(runner_env, tmp_path / "runner-b.log")
    try:
        while _completed(client, batch.id) <= done_at_kill:
            assert time.monotonic() < killed_at + 60, second.log()
            time.sleep(0.05)
        recovered_s = time.monotonic() - killed_at
        while (finished := client.batches.retrieve(batch.id)).status != "completed":
            assert finished.status in ("in_progress", "finalizing"), finished
            assert time.monotonic() < killed_at + 240, second.log()
            time.sleep(0.2)
    finally:
        second.stop()
        first.stop()
    # Then B completed it: every custom_id exactly once (0 lost, 0 duplicated)
    assert finished.output_file_id is not None
    lines = client.files.content(finished.output_file_id).text.splitlines()
    if finished.error_file_id:
        lines += client.files.content(finished.error_file_id).text.splitlines()
    ids = Counter(json.loads(line)["custom_id"] for line in lines)
    lost = {f"r{n:04d}" for n in range(LINES)} - set(ids)
    duplicated = {cid for cid, count in ids.items() if count > 1}
    assert (lost, duplicated) == (set(), set())
    # And no request that had finished was computed again (each job succeeded once)
    runs = Counter(_SUCCEEDED.findall(busy_worker.log()))
    assert {job for job, count in runs.items() if job.startswith(batch.id) and count > 1} == set()
    print(
        f"\nrecovery: {recovered_s:.2f}s from SIGKILL to runner B's first new line "
        f"({done_at_kill}/{LINES} done at the kill)"
    )
