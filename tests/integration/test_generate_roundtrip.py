"""A generate job travels producer → Redis → worker process → result, and back."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kombu import Connection, Exchange, Producer

from ops.localfleet import WorkerProcess, run_cli
from qfleet.producer.client import FleetClient
from qfleet.tasks.constants import QUEUE_GENERATE, TASK_GENERATE
from qfleet.tasks.errors import InvalidJobError, JobFailedError
from qfleet.tasks.schemas import GenerateJob, JobError, JobResult

pytestmark = pytest.mark.integration

# What an attacker with broker access would send: qfleet itself never serializes with it.
HOSTILE_SERIALIZER = "pickle"


def test_roundtrip_through_a_separate_worker(worker: WorkerProcess, fleet: FleetClient) -> None:
    # Given a worker process serving the tiny model
    # When a job is submitted and awaited
    job_id = fleet.submit(GenerateJob(prompt="Say hello", max_tokens=12))
    result = fleet.wait(job_id, timeout=60)
    # Then the answer came back from that worker, with usage, timings and the model id
    assert result.job_id == job_id
    assert result.worker == worker.hostname
    assert result.model.id.startswith("qfleet-tiny-qwen2")
    assert result.model.device == "cpu"
    assert result.model.compute_type == "int8"
    assert result.text
    assert result.usage.prompt_tokens > 0
    assert 0 < result.usage.completion_tokens <= 12
    assert result.timings.total_ms >= result.timings.generate_ms > 0
    assert fleet.status(job_id) == "succeeded"


def test_max_tokens_is_respected(worker: WorkerProcess, fleet: FleetClient) -> None:
    results = [fleet.wait(fleet.submit(GenerateJob(prompt="Count", max_tokens=n))) for n in (1, 7)]
    assert [r.usage.completion_tokens for r in results] == [1, 7]
    assert all(r.finish_reason == "length" for r in results)


def test_stop_string_ends_the_answer(worker: WorkerProcess, fleet: FleetClient) -> None:
    # Given the greedy answer of the tiny model to a prompt
    free = fleet.wait(fleet.submit(GenerateJob(prompt="Tell me a story", max_tokens=24)))
    stop = free.text[5:8]
    assert stop.strip(), f"the tiny model's answer is too short to test stops: {free.text!r}"
    # When the same prompt is asked with a stop string taken from that answer
    stopped = fleet.wait(
        fleet.submit(GenerateJob(prompt="Tell me a story", max_tokens=24, stop=[stop]))
    )
    # Then the answer ends right before the stop string
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[: free.text.find(stop)]
    assert stopped.usage.completion_tokens < free.usage.completion_tokens


def test_chat_messages_are_accepted(worker: WorkerProcess, fleet: FleetClient) -> None:
    job = GenerateJob(
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Again"},
        ],
        max_tokens=4,
    )
    result = fleet.wait(fleet.submit(job))
    assert result.usage.completion_tokens == 4


def test_malformed_job_gets_a_clear_job_error(worker: WorkerProcess, fleet: FleetClient) -> None:
    # Given a payload that skipped producer validation (any client can write to the queue)
    job_id = uuid.uuid4().hex
    fleet.app.send_task(
        TASK_GENERATE,
        kwargs={"job": {"prompt": "hi", "max_tokens": -5, "colour": "red"}},
        task_id=job_id,
        queue=QUEUE_GENERATE,
    )
    # When its result arrives
    with pytest.raises(JobFailedError) as failed:
        fleet.wait(job_id, timeout=60)
    # Then it is a JobError that names each problem, and the worker keeps serving
    error = failed.value.error
    assert isinstance(error, JobError)
    assert error.code == "invalid_job"
    assert error.retryable is False
    assert "max_tokens" in error.message
    assert "colour" in error.message
    assert fleet.status(job_id) == "failed"
    assert fleet.wait(fleet.submit(GenerateJob(prompt="still there?", max_tokens=2)))


def test_prompt_longer_than_the_context_is_refused(
    worker: WorkerProcess, fleet: FleetClient
) -> None:
    job_id = fleet.submit(GenerateJob(prompt="word " * 3000, max_tokens=2000))
    with pytest.raises(JobFailedError) as failed:
        fleet.wait(job_id, timeout=60)
    assert failed.value.error.code == "prompt_too_long"
    assert "max_tokens" in failed.value.error.message


def test_producer_refuses_an_invalid_job_before_sending(fleet: FleetClient) -> None:
    with pytest.raises(InvalidJobError, match="exactly one of"):
        fleet.submit({"prompt": "a", "messages": [{"role": "user", "content": "b"}]})


def test_same_job_id_is_enqueued_once(worker: WorkerProcess, fleet: FleetClient) -> None:
    # Given a caller-supplied job id, submitted twice (a retried HTTP request, say)
    job = GenerateJob(job_id=f"order-{uuid.uuid4().hex[:8]}", prompt="Hi", max_tokens=3)
    assert fleet.submit(job) == fleet.submit(job) == job.job_id
    first = fleet.wait(job.job_id)
    time.sleep(0.5)
    # Then the worker received it once
    assert worker.log().count(f"qfleet.generate[{job.job_id}] received") == 1
    assert fleet.wait(job.job_id) == first


def test_pickle_message_is_refused_and_worker_survives(
    worker: WorkerProcess, fleet: FleetClient, fleet_env: dict[str, str]
) -> None:
    # Given a message whose content type is pickle, written straight onto the queue
    job_id = uuid.uuid4().hex
    with Connection(
        fleet_env["QFLEET_BROKER_URL"],
        transport_options={"global_keyprefix": fleet_env["QFLEET_REDIS_KEY_PREFIX"]},
    ) as conn:
        Producer(conn).publish(
            ((), {"job": {"prompt": "pwned"}}, {}),
            exchange=Exchange("qfleet", type="direct"),
            routing_key=QUEUE_GENERATE,
            serializer=HOSTILE_SERIALIZER,
            headers={
                "task": TASK_GENERATE,
                "id": job_id,
                "lang": "py",
                "argsrepr": "",
                "kwargsrepr": "",
            },
        )
    # When the worker reads it
    deadline = time.monotonic() + 30
    while "untrusted content" not in worker.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    # Then it is refused and logged, nothing ran, and the worker still serves jobs
    assert "Refusing to deserialize untrusted content of type pickle" in worker.log()
    assert fleet.result(job_id) is None
    assert worker.alive()
    assert fleet.wait(fleet.submit(GenerateJob(prompt="after", max_tokens=2))).text is not None


def test_cli_generate_and_result(worker: WorkerProcess, fleet_env: dict[str, str]) -> None:
    # When a user runs the CLI as the README shows
    done = run_cli(["generate", "Say hello", "--max-tokens", "5", "--json"], fleet_env)
    assert done.returncode == 0, done.stderr
    result = JobResult.model_validate_json(done.stdout)
    assert result.usage.completion_tokens == 5
    # Then `qfleet result` reads the same result back
    again = run_cli(["result", result.job_id, "--json"], fleet_env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == json.loads(done.stdout)
    plain = run_cli(["generate", "Say hello", "--max-tokens", "5"], fleet_env)
    assert plain.returncode == 0
    assert plain.stdout.strip() == result.text.strip()
    assert "tok/s" in plain.stderr


def test_cli_exit_codes(worker: WorkerProcess, fleet_env: dict[str, str]) -> None:
    invalid = run_cli(["generate", "x", "--max-tokens", "0"], fleet_env)
    assert invalid.returncode == 6
    assert "max_tokens" in invalid.stderr
    missing = run_cli(["result", "no-such-job"], fleet_env)
    assert missing.returncode == 5
    assert "unknown" in missing.stdout
    too_long = run_cli(["generate", "x " * 3000, "--max-tokens", "2000"], fleet_env)
    assert too_long.returncode == 1
    assert "prompt_too_long" in too_long.stdout


def test_cli_reports_an_unreachable_broker(fleet_env: dict[str, str]) -> None:
    env = {**fleet_env, "QFLEET_BROKER_URL": "redis://127.0.0.1:1/0"}
    done = run_cli(["generate", "hi", "--timeout", "5"], env, timeout=60)
    assert done.returncode == 4
    assert "could not use the broker" in done.stderr
    assert "Traceback" not in done.stderr
