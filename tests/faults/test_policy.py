"""One job policy for every task: the six qfleet tasks are `JobTask`s, and a knowledge task that
fails for good is dead-lettered with its payload like a generate job."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from ops.localfleet import ChildProcess, WorkerProcess
from qfleet.tasks.constants import (
    QUEUE_INGEST,
    TASK_EXTRACT,
    TASK_GENERATE,
    TASK_INGEST,
    TASK_KB_ADMIN,
    TASK_RAG_RETRIEVE,
    TASK_RETRIEVE,
)
from qfleet.tasks.deadletters import DeadLetterStore
from qfleet.tasks.schemas import GenerateJob, JobError, JobResult
from qfleet.tasks.settings import Settings
from tests.faults.scenarios import client, own_fleet, wait_outcome

ALL_TASKS = (
    TASK_GENERATE,
    TASK_EXTRACT,
    TASK_INGEST,
    TASK_KB_ADMIN,
    TASK_RETRIEVE,
    TASK_RAG_RETRIEVE,
)


def test_every_task_runs_under_the_job_policy() -> None:
    from qfleet.workers.context import context_of
    from qfleet.workers.main import create_worker_app
    from qfleet.workers.policy import JobTask

    # Given a worker app built from explicit settings (no environment involved)
    app = create_worker_app(Settings(redis_key_prefix="policy-test:", worker_concurrency=3))
    app.loader.import_default_modules()
    # Then each of the six tasks is a JobTask, and they share the context built once
    for name in ALL_TASKS:
        assert isinstance(app.tasks[name], JobTask), name
        assert app.tasks[name].context is context_of(app)
    assert context_of(app).settings.worker_concurrency == 3


@pytest.mark.integration
def test_a_knowledge_job_that_fails_for_good_is_dead_lettered_with_its_payload(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    env = own_fleet(fleet_env, key_prefix)
    worker = WorkerProcess(env, tmp_path / "w.log", hostname="kb@test", queues=QUEUE_INGEST).start()
    try:
        with client(env) as fleet:
            # Given an administration job that cannot be valid
            job_id = uuid.uuid4().hex
            payload = {"job_id": job_id, "action": "no-such-action"}
            fleet.app.send_task(
                TASK_KB_ADMIN, kwargs={"job": payload}, task_id=job_id, queue=QUEUE_INGEST
            )
            # When a worker receives it
            outcome = wait_outcome(fleet, job_id, timeout=60)
            letter = DeadLetterStore(fleet.redis, env["QFLEET_REDIS_KEY_PREFIX"]).get(job_id)
    finally:
        worker.stop()
    # Then the caller gets a JobError and the dead letter keeps the payload, like any job
    assert isinstance(outcome, JobError), outcome
    assert outcome.code == "invalid_job"
    assert letter is not None
    assert letter.payload == payload
    assert letter.task == TASK_KB_ADMIN


@pytest.mark.integration
def test_qfleet_worker_options_reach_the_worker_without_the_environment(
    fleet_env: dict[str, str], key_prefix: str, tiny_model: Path, tmp_path: Path
) -> None:
    # Given an environment that names no model
    env = own_fleet(fleet_env, key_prefix)
    del env["QFLEET_MODEL_DIR"]
    # When `qfleet worker` is given the model and the concurrency as options
    args = [sys.executable, "-m", "qfleet.producer.cli", "worker", "--model-dir", str(tiny_model),
            "--concurrency", "3", "--hostname", "cli@test"]  # fmt: skip
    worker = ChildProcess(args, env, tmp_path / "cli-worker.log")
    worker._launch(lambda: " ready." in worker.log(), 90, "qfleet worker", poll=0.1)
    try:
        with client(env) as fleet:
            outcome = wait_outcome(fleet, fleet.submit(GenerateJob(prompt="hi", max_tokens=3)), 60)
    finally:
        worker.stop()
    # Then the worker serves that model with that concurrency
    assert isinstance(outcome, JobResult), outcome
    assert outcome.usage.completion_tokens == 3
    assert "concurrency: 3" in worker.log()
