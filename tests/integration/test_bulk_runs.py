"""Bulk runs against real Redis (and a real worker where one is needed): priorities, cancel, and
the answer-cache metric of the worker that serves them."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from ops.localfleet import WorkerProcess
from ops.services import free_port, http_get
from qfleet.producer.client import FleetClient
from qfleet.producer.runs import BulkRun, RunSink, RunSpec, RunStore, cancel_run
from qfleet.tasks.constants import CANCEL_KEY, JOB_KEY, PRIORITY_BULK, PRIORITY_INTERACTIVE
from qfleet.tasks.ledger import LedgerRecord
from qfleet.tasks.schemas import GenerateJob, JobResult
from qfleet.tasks.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def fleet_env(fleet_env: dict[str, str], metrics_port: int) -> dict[str, str]:
    """The shared fleet settings, with the worker's metrics exporter on."""
    return {**fleet_env, "QFLEET_METRICS_PORT": str(metrics_port)}


def _spec(tmp_path: Path, run_id: str, lines: list[dict[str, Any]], **fields: Any) -> RunSpec:
    source = tmp_path / f"{run_id}.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return RunSpec(
        run_id=run_id,
        kind="generate",
        input=source,
        output=tmp_path / f"{run_id}.out.jsonl",
        errors=tmp_path / f"{run_id}.errors.jsonl",
        **fields,
    )


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_generate_run_sends_at_bulk_priority_unless_a_line_says_otherwise(
    worker: WorkerProcess, fleet: FleetClient, tmp_path: Path
) -> None:
    # Given a generate run: one line without a priority, one asking for interactive
    run_id = f"prio-{uuid.uuid4().hex[:8]}"
    lines = [{"id": "a", "prompt": "Hi"}, {"id": "b", "prompt": "Yo", "priority": "interactive"}]
    spec = _spec(tmp_path, run_id, lines, max_tokens=4)
    # When it is followed to its end on a worker
    progress = BulkRun(fleet, spec, poll_s=0.05).execute()
    # Then both answered
    assert (progress.status, progress.done, progress.failed) == ("finished", 2, 0)
    # And each job was sent at the priority its line asked for, bulk by default
    prefix = fleet.settings.redis_key_prefix

    def sent_priority(item_id: str) -> int:
        raw = fleet.redis.get(prefix + JOB_KEY.format(job_id=f"{run_id}.{item_id}"))
        assert raw is not None
        return LedgerRecord.model_validate_json(raw).priority

    assert (sent_priority("a"), sent_priority("b")) == (PRIORITY_BULK, PRIORITY_INTERACTIVE)


@pytest.fixture
def unserved_fleet(redis_url: str) -> Iterator[FleetClient]:
    """A fleet under a key prefix no worker serves: its jobs stay queued."""
    prefix = f"qfleet-test-{uuid.uuid4().hex[:10]}:"
    client = FleetClient(Settings(broker_url=redis_url, redis_key_prefix=prefix))
    yield client
    client.close()
    cleaner = redis.Redis.from_url(redis_url)
    for key in cleaner.scan_iter(match=f"{prefix}*"):
        cleaner.delete(key)
    cleaner.close()


def test_cancelling_a_run_cancels_each_job_in_flight_and_records_its_items(
    unserved_fleet: FleetClient, tmp_path: Path
) -> None:
    # Given a run with three jobs in flight that no worker has taken
    fleet = unserved_fleet
    run_id = f"cancel-{uuid.uuid4().hex[:8]}"
    spec = _spec(tmp_path, run_id, [{"id": f"q{n}", "prompt": f"Q{n}"} for n in range(10)],
                 window=3, max_tokens=4)  # fmt: skip
    store = RunStore(fleet, run_id)
    with ThreadPoolExecutor(1) as pool:
        following = pool.submit(BulkRun(fleet, spec, poll_s=0.05).execute)
        deadline = time.monotonic() + 30
        while len(store.pending()) < 3:
            assert time.monotonic() < deadline, "the run never had three jobs in flight"
            time.sleep(0.05)
        in_flight = store.pending()
        # When the run is cancelled
        assert cancel_run(fleet, run_id) is not None
        progress = following.result(timeout=60)
    # Then every job in flight was cancelled through FleetClient.cancel (its cancel key is set)
    prefix = fleet.settings.redis_key_prefix
    for job_id in in_flight:
        assert fleet.redis.exists(prefix + CANCEL_KEY.format(job_id=job_id))
    # And each of their items has a `cancelled` line in the errors file, and none in the output
    cancelled_ids = sorted(i for ids in in_flight.values() for i in ids)
    errors = _lines(spec.errors)
    assert sorted(line["id"] for line in errors) == cancelled_ids
    assert {(line["status"], line["error"]["code"]) for line in errors} == {
        ("cancelled", "cancelled")
    }
    assert _lines(spec.output) == []
    # And the run's progress says so, with nothing left in flight
    assert (progress.status, progress.done, progress.failed) == ("cancelled", 0, 0)
    assert (progress.cancelled, progress.in_flight) == (3, 0)
    assert store.pending() == {}
    # And the cancelled items do not count as written: a new run over the same files does them
    assert RunSink(spec).finished_ids() == set()


def _cache_hits(port: int) -> float:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return sum(
        sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == "qfleet_cache_hits_total" and sample.labels.get("cache") == "answer"
    )


def test_the_cache_hit_metric_counts_answers_from_the_cache(
    worker: WorkerProcess, fleet: FleetClient, metrics_port: int
) -> None:
    # Given a worker that has counted its cache hits so far
    before = _cache_hits(metrics_port)
    prompt = f"Cache me {uuid.uuid4().hex[:6]}"
    # When the same greedy prompt is asked twice, under two job ids
    first = fleet.wait(fleet.submit(GenerateJob(prompt=prompt, max_tokens=4)), timeout=120)
    second = fleet.wait(fleet.submit(GenerateJob(prompt=prompt, max_tokens=4)), timeout=120)
    # Then the second answer came from the cache, and the metric counted exactly that one
    assert isinstance(first, JobResult)
    assert isinstance(second, JobResult)
    assert (first.cached, second.cached) == (False, True)
    assert _settled_cache_hits(metrics_port, before + 1) == before + 1


def _settled_cache_hits(port: int, expected: float) -> float:
    # Counted on task_postrun, which Celery sends just after storing the result: give it a moment.
    deadline = time.monotonic() + 10
    hits = _cache_hits(port)
    while hits < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        hits = _cache_hits(port)
    return hits
