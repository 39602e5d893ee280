"""The pieces of the operations tooling that need no running fleet."""

from __future__ import annotations

import base64
import json
import time

import pytest
from click.testing import CliRunner

from qfleet.producer.cli import main
from qfleet.producer.flower import (
    BASIC_AUTH_ENV,
    FlowerConfigError,
    flower_command,
    flower_environment,
)
from qfleet.producer.queues import queue_keys, submitted_at
from qfleet.producer.status import FleetStatus, QueueStatus, RunStatus, WorkerStatus, render
from qfleet.tasks.settings import Settings


def kombu_message(kwargs: dict[str, object]) -> bytes:
    """A message as kombu's Redis transport stores it (Celery protocol 2, base64 body)."""
    body = json.dumps([[], kwargs, {"callbacks": None}]).encode()
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"task": "qfleet.generate"},
            "properties": {"body_encoding": "base64", "delivery_tag": "x"},
        }
    ).encode()


def test_flower_refuses_to_start_without_a_password() -> None:
    done = CliRunner().invoke(main, ["flower"])
    assert done.exit_code == 2
    assert "QFLEET_FLOWER_PASSWORD" in done.output
    assert "--no-auth" in done.output


def test_flower_password_travels_in_the_environment_only() -> None:
    settings = Settings(flower_user="ops", flower_password="pw-123")
    env = flower_environment(settings, no_auth=False, base={"PATH": "/bin"})
    assert env == {"PATH": "/bin", BASIC_AUTH_ENV: "ops:pw-123"}
    argv = flower_command("127.0.0.1", 5555)
    assert "--address=127.0.0.1" in argv
    assert not [arg for arg in argv if "pw-123" in arg]
    assert "pw-123" not in repr(settings)


def test_flower_without_auth_drops_inherited_credentials() -> None:
    env = flower_environment(Settings(), no_auth=True, base={BASIC_AUTH_ENV: "old:creds"})
    assert BASIC_AUTH_ENV not in env


@pytest.mark.parametrize(("user", "password"), [("ops", "a,b"), ("o:ps", "pw"), ("o,ps", "pw")])
def test_flower_rejects_credentials_it_would_misread(user: str, password: str) -> None:
    with pytest.raises(FlowerConfigError):
        flower_environment(Settings(flower_user=user, flower_password=password), no_auth=False)


def test_queue_keys_follow_kombu_priority_naming() -> None:
    keys = queue_keys("qfleet.generate", "p:")
    assert keys[0] == "p:qfleet.generate"
    assert keys[6] == "p:qfleet.generate\x06\x166"
    assert len(keys) == 10


def test_submitted_at_is_read_from_the_message_body() -> None:
    assert submitted_at(kombu_message({"job": {}, "submitted_at": 1700000000.5})) == 1700000000.5
    assert submitted_at(kombu_message({"job": {}})) is None
    assert submitted_at(b"not json") is None
    assert submitted_at(json.dumps({"body": "%%%", "properties": {}})) is None
    assert submitted_at(None) is None


def test_status_table_shows_workers_and_runs() -> None:
    status = FleetStatus(
        taken_at=time.time(),
        queues=[QueueStatus(name="qfleet.generate", depth=12, oldest_age_s=754.0, rate_per_min=3)],
        workers=[
            WorkerStatus(
                name="qfleet@gpu-a",
                host="gpu-a",
                model="qwen2.5-1.5b",
                device="cuda:0",
                compute_type="int8_float16",
                pool="thread",
                concurrency=4,
                batch={"max_batch_size": 8},
                jobs_done=10,
                jobs={"succeeded": 9, "failed": 1},
                tokens_per_s=412.5,
                active=2,
            )
        ],
        runs=[RunStatus(run_id="run-1", state="running", done=3, total=10)],
    )
    table = render(status)
    assert "qfleet.generate  12     12.6m   3.0" in table
    assert "cuda:0 int8_float16" in table
    assert "max_batch_size=8" in table
    assert "9/1" in table
    assert "412.5" in table
    assert "2/4" in table
    assert "run-1  running  3/10 (30%)" in table
    assert "no runs" not in table


def test_status_table_says_when_nothing_answers() -> None:
    table = render(FleetStatus(taken_at=time.time(), queues=[], workers=[], runs=[]))
    assert "0 worker(s): none answered" in table
    assert table.endswith("no runs")


def test_worker_stats_count_outcomes_and_forget_old_rates() -> None:
    from qfleet.workers.metrics import RATE_WINDOW_S, WorkerStats

    stats = WorkerStats()
    stats.add("generate", "succeeded", tokens=40, generate_s=0.5, batch_size=4)
    stats.add("generate", "failed")
    stats.recent.appendleft((time.monotonic() - RATE_WINDOW_S - 1, "generate", 1000, 0))
    snapshot = stats.snapshot()
    assert snapshot["jobs"] == {"succeeded": 1, "failed": 1}
    assert snapshot["jobs_done"] == 2
    assert snapshot["tokens_per_s"] == 80
    assert snapshot["recent_jobs_per_min_by_kind"] == {"generate": 2.0}
    assert snapshot["recent_tokens_per_s"] == 40 / RATE_WINDOW_S
    assert snapshot["recent_batch_size"] == 4  # the failed job ran in no batch
