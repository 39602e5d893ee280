"""Operating a fleet: Flower behind auth, worker and queue exporters, `qfleet status`.

One fleet for the module: two worker processes with their own exporters, Flower, the queue
exporter, and an outsider worker under another key prefix that none of them may see.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from ops.localfleet import REPO_ROOT, WorkerProcess, qfleet_env, run_cli
from ops.services import (
    QfleetService,
    free_port,
    free_port_range,
    http_get,
    start_exporter,
    start_flower,
)
from qfleet.producer.client import FleetClient
from qfleet.tasks.constants import (
    QUEUE_EXTRACT,
    QUEUE_GENERATE,
    QUEUE_INGEST,
    QUEUE_RETRIEVE,
    TASK_GENERATE,
)
from qfleet.tasks.errors import JobFailedError
from qfleet.tasks.schemas import GenerateJob

pytestmark = pytest.mark.integration

FLOWER_USER = "operator"
FLOWER_PASSWORD = "correct-horse-" + uuid.uuid4().hex[:8]
GOOD_JOBS = 8


@dataclass
class OpsFleet:
    env: dict[str, str]
    workers: list[WorkerProcess]
    metrics_ports: dict[str, int]
    flower: QfleetService
    exporter: QfleetService
    outsider: WorkerProcess

    def flower_get(self, path: str, **auth: Any) -> tuple[int, bytes]:
        return http_get(self.flower.url + path, **auth)

    def flower_json(self, path: str) -> Any:
        status, body = self.flower_get(path, user=FLOWER_USER, password=FLOWER_PASSWORD)
        assert status == 200, body
        return json.loads(body)


def _start_all(workers: list[WorkerProcess]) -> None:
    with ThreadPoolExecutor(len(workers)) as pool:
        list(pool.map(lambda w: w.start(), workers))


@pytest.fixture(scope="module")
def ops_fleet(
    fleet_env: dict[str, str], redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OpsFleet]:
    logs = tmp_path_factory.mktemp("ops")
    env = {
        **fleet_env,
        "QFLEET_FLOWER_USER": FLOWER_USER,
        "QFLEET_FLOWER_PASSWORD": FLOWER_PASSWORD,
    }
    ports, workers = {}, []
    for n in (1, 2):
        name, port = f"ops{n}-{uuid.uuid4().hex[:6]}@test", free_port()
        ports[name] = port
        worker_env = {**env, "QFLEET_METRICS_PORT": str(port)}
        workers.append(WorkerProcess(worker_env, logs / f"{name}.log", hostname=name))
    outsider_prefix = f"qfleet-test-{uuid.uuid4().hex[:10]}:"
    outsider = WorkerProcess(
        {**env, "QFLEET_REDIS_KEY_PREFIX": outsider_prefix},
        logs / "outsider.log",
        hostname=f"outsider-{uuid.uuid4().hex[:6]}@test",
    )
    started: list[Any] = []
    try:
        _start_all([*workers, outsider])
        started += [*workers, outsider]
        started.append(start_flower(env, logs / "flower.log"))
        started.append(start_exporter(env, logs / "exporter.log"))
        yield OpsFleet(env, workers, ports, started[-2], started[-1], outsider)
    finally:
        for process in reversed(started or [*workers, outsider]):
            process.stop()
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{outsider_prefix}*"):
            client.delete(key)
        client.close()


@pytest.fixture(scope="module")
def jobs_ran(ops_fleet: OpsFleet) -> dict[str, str]:
    """Eight good jobs and one malformed one, all finished; returns job id -> outcome."""
    settings_env = ops_fleet.env
    from qfleet.tasks.settings import Settings

    settings = Settings(
        broker_url=settings_env["QFLEET_BROKER_URL"],
        redis_key_prefix=settings_env["QFLEET_REDIS_KEY_PREFIX"],
    )
    outcomes = {}
    with FleetClient(settings) as fleet:
        ids = [fleet.submit(GenerateJob(prompt=f"Job {n}", max_tokens=4)) for n in range(GOOD_JOBS)]
        bad_id = uuid.uuid4().hex
        fleet.app.send_task(
            TASK_GENERATE, kwargs={"job": {"prompt": "x", "max_tokens": -1}}, task_id=bad_id
        )
        for job_id in ids:
            outcomes[job_id] = fleet.wait(job_id, timeout=60).status
        with pytest.raises(JobFailedError):
            fleet.wait(bad_id, timeout=60)
        outcomes[bad_id] = "failed"
    return outcomes


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of http://127.0.0.1:PORT/metrics as {(name, sorted labels): value}."""
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def total(samples: dict[Any, float], name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


def status_json(env: dict[str, str]) -> dict[str, Any]:
    done = run_cli(["status", "--json", "--timeout", "1.5"], env)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_flower_refuses_requests_without_credentials(ops_fleet: OpsFleet) -> None:
    # Given Flower started by `qfleet flower` with a password from settings
    # When its dashboard and API are asked without credentials, or with a wrong password
    # Then both answer 401
    for path in ("/", "/api/workers"):
        assert ops_fleet.flower_get(path)[0] == 401
        assert ops_fleet.flower_get(path, user=FLOWER_USER, password="wrong")[0] == 401
    # And the password is on no command line (it travels in Flower's environment)
    cmdline = Path(f"/proc/{ops_fleet.flower.process.pid}/cmdline").read_bytes()  # type: ignore[union-attr]
    assert FLOWER_PASSWORD.encode() not in cmdline


def test_flower_lists_our_workers_and_their_queues(ops_fleet: OpsFleet) -> None:
    # When Flower's API is asked with the credentials
    workers = ops_fleet.flower_json("/api/workers?refresh=1")
    # Then it lists exactly our two workers (not the outsider under another prefix) and each
    # consumes the generate queue
    assert set(workers) == {w.hostname for w in ops_fleet.workers}
    for info in workers.values():
        assert [q["name"] for q in info["active_queues"]] == [QUEUE_GENERATE]


def test_metrics_flower_and_status_agree_on_counts(
    ops_fleet: OpsFleet, jobs_ran: dict[str, str]
) -> None:
    # Given nine finished jobs: eight succeeded, one failed validation at the worker
    # When each worker's exporter is scraped, Flower asked, and `qfleet status --json` run
    metrics = {name: scrape(port) for name, port in ops_fleet.metrics_ports.items()}
    flower_workers = ops_fleet.flower_json("/api/workers?refresh=1")
    status = status_json(ops_fleet.env)
    by_status = {w["name"]: w for w in status["workers"]}
    # Then the fleet-wide totals are the jobs that ran
    ok = sum(total(m, "qfleet_jobs_total", outcome="succeeded") for m in metrics.values())
    failed = sum(
        total(m, "qfleet_jobs_total", outcome="failed", code="invalid_job")
        for m in metrics.values()
    )
    assert (ok, failed) == (GOOD_JOBS, 1)
    # And for every worker the three views agree, and its series are non-zero where jobs ran
    assert set(by_status) == set(metrics)
    for name, samples in metrics.items():
        done = total(samples, "qfleet_jobs_total")
        succeeded = total(samples, "qfleet_jobs_total", outcome="succeeded")
        assert flower_workers[name]["stats"]["total"].get(TASK_GENERATE, 0) == done
        assert by_status[name]["jobs_done"] == done
        assert by_status[name]["jobs"].get("succeeded", 0) == succeeded
        assert total(samples, "qfleet_job_duration_seconds_count") == done
        assert total(samples, "qfleet_batch_size_count") == succeeded
        assert (total(samples, "qfleet_tokens_generated_total") > 0) == (succeeded > 0)
        assert (by_status[name]["tokens_per_s"] > 0) == (succeeded > 0)
        assert total(samples, "qfleet_worker_rss_bytes") > 10_000_000
        assert total(samples, "qfleet_worker_info", model=by_status[name]["model"]) == 1
        assert total(samples, "qfleet_model_load_seconds") > 0
        assert by_status[name]["device"] == "cpu"
    # And Flower's event stream saw every job succeed as a Celery task
    assert _flower_task_count(ops_fleet) == GOOD_JOBS + 1
    # And the queue is drained, with the rate of the last minute counted
    [generate] = [q for q in status["queues"] if q["name"] == QUEUE_GENERATE]
    assert generate["depth"] == 0
    assert generate["rate_per_min"] == GOOD_JOBS + 1
    assert status["runs"] == []


def _flower_task_count(ops_fleet: OpsFleet) -> int:
    # Task events reach Flower asynchronously: give them a moment.
    deadline = time.monotonic() + 10
    while True:
        tasks = ops_fleet.flower_json("/api/tasks?state=SUCCESS")
        if len(tasks) >= GOOD_JOBS + 1 or time.monotonic() > deadline:
            return len(tasks)
        time.sleep(0.2)


def test_exporter_reports_backlog_depth_and_age(ops_fleet: OpsFleet, fleet: FleetClient) -> None:
    # Given jobs waiting in a queue no worker consumes, one of them on a priority sub-queue,
    # the oldest submitted 30 seconds ago
    submitted = time.time() - 30
    for priority, at in ((0, submitted), (6, submitted + 10), (0, submitted + 20)):
        fleet.app.send_task(
            TASK_GENERATE,
            kwargs={"job": {"prompt": "later"}, "submitted_at": at},
            queue=QUEUE_EXTRACT,
            priority=priority,
        )
    # When the queue exporter is scraped and `qfleet status --json` run
    samples = scrape(ops_fleet.exporter.port)
    status = status_json(ops_fleet.env)
    # Then both count the three messages and date the oldest at least 30 seconds back
    assert total(samples, "qfleet_queue_depth", queue=QUEUE_EXTRACT) == 3
    assert 30 <= total(samples, "qfleet_queue_oldest_age_seconds", queue=QUEUE_EXTRACT) < 60
    assert total(samples, "qfleet_exporter_redis_up") == 1
    [extract] = [q for q in status["queues"] if q["name"] == QUEUE_EXTRACT]
    assert extract["depth"] == 3
    assert 30 <= extract["oldest_age_s"] < 60


def test_status_table_is_readable(ops_fleet: OpsFleet, jobs_ran: dict[str, str]) -> None:
    # When an operator runs `qfleet status`
    done = run_cli(["status"], ops_fleet.env)
    # Then the table names the queues, both workers with their model, and says there are no runs
    assert done.returncode == 0, done.stderr
    assert QUEUE_GENERATE in done.stdout
    for worker in ops_fleet.workers:
        assert worker.hostname in done.stdout
    assert ops_fleet.outsider.hostname not in done.stdout
    assert "qfleet-tiny-qwen2" in done.stdout
    assert done.stdout.rstrip().endswith("no runs")


def test_prefork_children_each_export_their_own_metrics(
    fleet_env: dict[str, str], fleet: FleetClient, tmp_path: Path
) -> None:
    # Given a prefork worker with two children and a metrics base port, alone on a queue
    base = free_port_range(2)
    worker = WorkerProcess(
        {**fleet_env, "QFLEET_METRICS_PORT": str(base)},
        tmp_path / "prefork.log",
        hostname=f"prefork-{uuid.uuid4().hex[:6]}@test",
        queues=QUEUE_RETRIEVE,
        pool="prefork",
        concurrency=2,
    ).start()
    try:
        # When six jobs run on it
        ids = [uuid.uuid4().hex for _ in range(6)]
        for job_id in ids:
            job = GenerateJob(job_id=job_id, prompt="Fork", max_tokens=3).model_dump(mode="json")
            fleet.app.send_task(
                TASK_GENERATE, kwargs={"job": job}, task_id=job_id, queue=QUEUE_RETRIEVE
            )
        results = [fleet.wait(job_id, timeout=60) for job_id in ids]
        # Then child i answers on base + i with its own model series and its own counts,
        # which add up to the six jobs
        children = [scrape(base + i) for i in range(2)]
    finally:
        worker.stop()
    assert {r.worker for r in results} == {worker.hostname}
    for samples in children:
        assert total(samples, "qfleet_worker_info", pool="prefork", worker=worker.hostname) == 1
    assert sum(total(s, "qfleet_jobs_total", outcome="succeeded") for s in children) == len(ids)


def test_drained_worker_takes_no_new_jobs_and_stops_warm(
    fleet_env: dict[str, str], fleet: FleetClient, tmp_path: Path
) -> None:
    # Given a worker alone on a queue
    worker = WorkerProcess(
        fleet_env,
        tmp_path / "drain.log",
        hostname=f"drain-{uuid.uuid4().hex[:6]}@test",
        queues=QUEUE_INGEST,
    ).start()
    try:
        # When it is drained with the runbook's command, then sent a job
        drained = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "qfleet.producer.celeryapp", "control",
             "cancel_consumer", QUEUE_INGEST, "-d", worker.hostname],
            cwd=REPO_ROOT, env=qfleet_env(fleet_env), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert drained.returncode == 0, drained.stderr
        job = GenerateJob(prompt="after the drain", max_tokens=2).model_dump(mode="json")
        fleet.app.send_task(TASK_GENERATE, kwargs={"job": job}, queue=QUEUE_INGEST)
        time.sleep(2)
        status = status_json(fleet_env)
    finally:
        # And stopped with SIGTERM
        exit_code = worker.stop()
    # Then it stayed online without consuming, left the job queued, and exited cleanly
    [listed] = [w for w in status["workers"] if w["name"] == worker.hostname]
    assert listed["queues"] == []
    [ingest] = [q for q in status["queues"] if q["name"] == QUEUE_INGEST]
    assert ingest["depth"] == 1
    assert exit_code == 0
