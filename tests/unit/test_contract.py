"""The contract: settings, schemas and the Celery configuration."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from qfleet.tasks.app import celery_config, create_app
from qfleet.tasks.constants import ALL_QUEUES, CANARY_QUEUES
from qfleet.tasks.errors import InvalidJobError
from qfleet.tasks.schemas import (
    GenerateJob,
    JobError,
    JobResult,
    parse_outcome,
    validate_generate_job,
)
from qfleet.tasks.settings import Settings, redact_url


def test_settings_read_the_qfleet_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QFLEET_BROKER_URL", "redis://redis.internal:6380/3")
    monkeypatch.setenv("QFLEET_WORKER_CONCURRENCY", "8")
    settings = Settings()
    assert str(settings.broker_url) == "redis://redis.internal:6380/3"
    assert settings.result_backend == settings.broker
    assert settings.worker_concurrency == 8


def test_redis_password_is_secret_and_injected() -> None:
    settings = Settings(broker_url="rediss://cache:6379/0", redis_password="s3cr:t@")
    # TLS gets certificate checks unless the URL says otherwise (docs/security.md)
    assert settings.broker == "rediss://:s3cr%3At%40@cache:6379/0?ssl_cert_reqs=required"
    assert "s3cr" not in repr(settings)
    assert "s3cr" not in str(settings.model_dump())
    assert redact_url(settings.broker) == "rediss://:***@cache:6379/0?ssl_cert_reqs=required"


def test_four_heartbeats_fit_in_the_visibility_timeout() -> None:
    # A running job's heartbeat keeps its message from redelivery, so a job may outlast the
    # visibility timeout; two beats must fit in it.
    assert Settings(task_time_limit_s=4000, visibility_timeout_s=3600).heartbeat_s == 10
    assert Settings(job_heartbeat_s=5, visibility_timeout_s=8).heartbeat_s == 2
    with pytest.raises(ValidationError, match="soft"):
        Settings(task_soft_time_limit_s=700, task_time_limit_s=600)


def test_celery_config_is_json_only_and_at_least_once() -> None:
    conf = celery_config(Settings(redis_key_prefix="fleet-a:"))
    assert conf["accept_content"] == ["json"]
    assert conf["result_accept_content"] == ["json"]
    assert conf["task_serializer"] == conf["result_serializer"] == "json"
    assert conf["event_serializer"] == "json"
    assert "pickle" not in json.dumps(conf, default=str)
    assert conf["task_acks_late"] is True
    assert conf["task_reject_on_worker_lost"] is True
    assert conf["worker_prefetch_multiplier"] == 1
    for options in (conf["broker_transport_options"], conf["result_backend_transport_options"]):
        assert options["visibility_timeout"] == 900
        assert options["global_keyprefix"] == "fleet-a:"
    assert [q.name for q in conf["task_queues"]] == [*ALL_QUEUES, *CANARY_QUEUES]


def test_app_carries_the_configuration() -> None:
    app = create_app(Settings())
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_acks_late is True


def test_generate_job_takes_a_prompt_or_messages() -> None:
    job = GenerateJob(prompt="Hi", system="Be brief")
    assert [m.role for m in job.chat()] == ["system", "user"]
    chat = GenerateJob(messages=[{"role": "user", "content": "Hi"}])
    assert [m.content for m in chat.chat()] == ["Hi"]
    for bad in (
        {},
        {"prompt": "a", "messages": [{"role": "user", "content": "b"}]},
        {"messages": [{"role": "user", "content": "b"}], "system": "s"},
        {"messages": [{"role": "assistant", "content": "b"}]},
        {"messages": []},
    ):
        with pytest.raises(ValidationError):
            GenerateJob.model_validate(bad)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", 0),
        ("max_tokens", 10**6),
        ("temperature", -0.1),
        ("top_p", 0),
        ("top_k", -1),
        ("stop", ["x"] * 9),
        ("stop", [""]),
        ("job_id", "has spaces"),
        ("job_id", "x" * 200),
        ("unknown_field", 1),
    ],
)
def test_generate_job_bounds(field: str, value: object) -> None:
    with pytest.raises(InvalidJobError, match=field):
        validate_generate_job({"prompt": "hi", field: value})


def test_caller_job_id_is_kept_and_json_round_trips() -> None:
    job = GenerateJob(job_id="batch-7:doc-12", prompt="Hi", stop=["\n"])
    again = GenerateJob.model_validate_json(job.model_dump_json())
    assert again == job
    assert again.job_id == "batch-7:doc-12"
    assert GenerateJob(prompt="a").job_id != GenerateJob(prompt="a").job_id


def test_outcomes_are_told_apart_by_status() -> None:
    error = JobError(job_id="j", code="invalid_job", message="bad")
    assert parse_outcome(error.model_dump(mode="json")) == error
    result = {
        "status": "succeeded", "job_id": "j", "text": "hi", "finish_reason": "stop", "worker": "w",
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        "timings": {"queued_ms": 1, "generate_ms": 1, "total_ms": 2, "tokens_per_s": 1},
        "model": {"id": "m", "device": "cpu", "compute_type": "int8"},
    }  # fmt: skip
    assert isinstance(parse_outcome(result), JobResult)
