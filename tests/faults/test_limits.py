"""Bounded inputs end to end: every limit refused at the producer and again at the worker.

Each refusal names the limit and the setting behind it. A document or a bulk-run line over a
size limit fails alone: its batch-mates are decoded and written as usual.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.localfleet import WorkerProcess
from qfleet.producer.client import FleetClient
from qfleet.producer.runs import BulkRun, RunSpec, read_items
from qfleet.tasks.constants import QUEUE_EXTRACT, QUEUE_GENERATE, TASK_EXTRACT, TASK_GENERATE
from qfleet.tasks.errors import InvalidJobError, JobFailedError
from qfleet.tasks.schemas import ExtractResult, JobError
from qfleet.tasks.settings import Settings

pytestmark = pytest.mark.integration

# The worker's own limits, low enough that small payloads cross each one (the prompt-token
# limit leaves room for the extraction prompt's rules, ~480 tokens for a one-line document).
WORKER_LIMITS = {
    "QFLEET_MAX_PROMPT_CHARS": "4000",
    "QFLEET_MAX_PROMPT_TOKENS": "640",
    "QFLEET_MAX_NEW_TOKENS": "24",
    "QFLEET_MAX_DOCUMENT_CHARS": "120",
    "QFLEET_MAX_DOCUMENTS_PER_JOB": "3",
    "QFLEET_MAX_SCHEMA_CHARS": "400",
    "QFLEET_MAX_SCHEMA_DEPTH": "2",
}
NAME = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}},
    "required": ["name"],
}


def _deep_schema(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "maxLength": 4}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"x": schema}, "required": ["x"]}
    return schema


def _wide_schema(names: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {f"field_{n}": {"type": "boolean"} for n in range(names)},
    }


def _extract(documents: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "kind": "extract",
        "documents": [{"id": f"doc{n}", "text": text} for n, text in enumerate(documents)],
        "json_schema": fields.pop("json_schema", NAME),
        "max_tokens": 16,
        **fields,
    }


# (payload, the setting its refusal names); the worker's limits are the ones in WORKER_LIMITS.
OVER_LIMIT: list[tuple[dict[str, Any], str]] = [
    ({"prompt": "p" * 4001, "max_tokens": 4}, "QFLEET_MAX_PROMPT_CHARS"),
    ({"prompt": "word " * 700, "max_tokens": 4}, "QFLEET_MAX_PROMPT_TOKENS"),
    ({"prompt": "hi", "max_tokens": 25}, "QFLEET_MAX_NEW_TOKENS"),
    (_extract(["a", "b", "c", "d"]), "QFLEET_MAX_DOCUMENTS_PER_JOB"),
    (_extract(["a"], instructions="i" * 4001), "QFLEET_MAX_PROMPT_CHARS"),
    (_extract(["a"], max_tokens=25), "QFLEET_MAX_NEW_TOKENS"),
    (_extract(["a"], json_schema=_wide_schema(20)), "QFLEET_MAX_SCHEMA_CHARS"),
    (_extract(["a"], json_schema=_deep_schema(3)), "QFLEET_MAX_SCHEMA_DEPTH"),
]
PRODUCER_ONLY_OVER_LIMIT: list[tuple[dict[str, Any], str]] = [
    (_extract(["a", "d" * 121]), "QFLEET_MAX_DOCUMENT_CHARS"),
]


def _limited_settings(env: dict[str, str]) -> Settings:
    limits = {name.removeprefix("QFLEET_").lower(): int(v) for name, v in WORKER_LIMITS.items()}
    return Settings(
        broker_url=env["QFLEET_BROKER_URL"],
        redis_key_prefix=env["QFLEET_REDIS_KEY_PREFIX"],
        **limits,
    )


@pytest.fixture(scope="module")
def limited_env(fleet_env: dict[str, str]) -> dict[str, str]:
    return {**fleet_env, **WORKER_LIMITS}


@pytest.fixture(scope="module")
def limited_worker(
    limited_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A worker with low limits, serving the generate and extract queues."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    process = WorkerProcess(
        limited_env,
        log,
        hostname=f"lim-{uuid.uuid4().hex[:6]}@test",
        queues=f"{QUEUE_GENERATE},{QUEUE_EXTRACT}",
    ).start()
    yield process
    process.stop()


@pytest.fixture
def limited_fleet(limited_env: dict[str, str]) -> Iterator[FleetClient]:
    client = FleetClient(_limited_settings(limited_env))
    yield client
    client.close()


@pytest.mark.parametrize(
    ("payload", "setting"), OVER_LIMIT + PRODUCER_ONLY_OVER_LIMIT, ids=lambda v: str(v)[:40]
)
def test_the_producer_refuses_each_limit_naming_its_setting(
    limited_fleet: FleetClient, payload: dict[str, Any], setting: str
) -> None:
    # Given a fleet configured with low limits
    # When a payload over one of them is submitted
    # Then nothing is sent and the error names the setting (prompt tokens: counted by the worker)
    if setting == "QFLEET_MAX_PROMPT_TOKENS":
        assert limited_fleet.submit(payload)  # the producer cannot count tokens: it is sent
        return
    with pytest.raises(InvalidJobError, match=setting):
        limited_fleet.submit(payload)


def _send_raw(fleet: FleetClient, payload: dict[str, Any]) -> str:
    """Put `payload` on the queue as a hostile or outdated producer would, unchecked."""
    job_id = uuid.uuid4().hex
    extract = payload.get("kind") == "extract"
    fleet.app.send_task(
        TASK_EXTRACT if extract else TASK_GENERATE,
        kwargs={"job": {**payload, "job_id": job_id}},
        task_id=job_id,
        queue=QUEUE_EXTRACT if extract else QUEUE_GENERATE,
    )
    return job_id


def test_the_worker_refuses_each_limit_again_naming_its_setting(
    limited_worker: WorkerProcess, limited_fleet: FleetClient
) -> None:
    # Given a worker with low limits
    # When payloads over each limit reach its queues without the producer's checks
    sent = [(_send_raw(limited_fleet, payload), setting) for payload, setting in OVER_LIMIT]
    # Then each gets a JobError naming the setting, and the worker keeps serving
    for job_id, setting in sent:
        with pytest.raises(JobFailedError) as failure:
            limited_fleet.wait(job_id, timeout=60)
        error: JobError = failure.value.error
        assert error.code in ("invalid_job", "unsupported_schema", "prompt_too_long"), error
        assert setting in error.message, error.message
    assert limited_worker.alive()


def test_an_oversize_document_fails_alone_at_the_worker(
    limited_worker: WorkerProcess, limited_fleet: FleetClient
) -> None:
    # Given an extract job of three documents, the middle one over QFLEET_MAX_DOCUMENT_CHARS
    job_id = _send_raw(limited_fleet, _extract(["Ann", "x" * 500, "Bob"]))
    # When the worker runs it
    result = limited_fleet.wait(job_id, timeout=120)
    # Then that document fails with the reason and the other two hold valid objects
    assert isinstance(result, ExtractResult)
    by_id = {item.id: item for item in result.items}
    assert by_id["doc1"].status == "failed"
    assert by_id["doc1"].error_code == "document_too_large"
    assert "QFLEET_MAX_DOCUMENT_CHARS" in (by_id["doc1"].error or "")
    for ok in ("doc0", "doc2"):
        # Random weights: whole, or truthfully incomplete (what is there is still valid)
        assert by_id[ok].status in ("succeeded", "incomplete"), by_id[ok]
        assert isinstance(by_id[ok].object, dict)
        assert set(by_id[ok].object) <= {"name"}


def test_a_bulk_run_with_one_oversize_line_fails_that_line_only(
    limited_worker: WorkerProcess, limited_fleet: FleetClient, tmp_path: Path
) -> None:
    # Given a bulk extract file of four lines, one far over the document limit
    source = tmp_path / "people.jsonl"
    lines = [{"id": f"p{n}", "text": f"Person number {n}"} for n in range(4)]
    lines[2]["text"] = "long " * 200
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    spec = RunSpec(
        run_id=f"lim-{uuid.uuid4().hex[:8]}",
        input=source,
        output=tmp_path / "out.jsonl",
        errors=tmp_path / "errors.jsonl",
        json_schema=NAME,
        max_tokens=16,
    )
    # When the run is followed to its end
    progress = BulkRun(limited_fleet, spec, poll_s=0.05).execute()
    # Then three lines succeed and the oversize one is the only failure, with its reason
    assert (progress.done, progress.failed) == (3, 1)
    errors = [json.loads(line) for line in spec.errors.read_text().splitlines()]
    assert [e["id"] for e in errors] == ["p2"]
    assert "QFLEET_MAX_DOCUMENT_CHARS" in errors[0]["error"]["message"]
    output = {
        json.loads(line)["id"]: json.loads(line) for line in spec.output.read_text().splitlines()
    }
    statuses = {k: v["status"] for k, v in output.items()}
    assert statuses.pop("p2") == "failed"
    # Random weights: each other line whole, or truthfully incomplete
    assert set(statuses) == {"p0", "p1", "p3"}
    assert set(statuses.values()) <= {"succeeded", "incomplete"}


def test_a_generate_run_line_over_the_prompt_limit_fails_alone(tmp_path: Path) -> None:
    # Given a generate file whose second line is over QFLEET_MAX_PROMPT_CHARS
    source = tmp_path / "prompts.jsonl"
    source.write_text(
        json.dumps({"id": "a", "prompt": "hi"})
        + "\n"
        + json.dumps({"id": "b", "prompt": "p" * 300})
        + "\n"
    )
    spec = RunSpec(
        run_id="lim-gen",
        kind="generate",
        input=source,
        output=tmp_path / "o",
        errors=tmp_path / "e",
    )
    # When its items are read under the low limits
    items = read_items(spec, Settings(max_prompt_chars=200))
    # Then the first is ready to send and the second is rejected with the setting named
    assert [(i.id, bool(i.rejected)) for i in items] == [("a", False), ("b", True)]
    assert "QFLEET_MAX_PROMPT_CHARS" in items[1].rejected


def test_a_batch_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    # Given a 2 kB input file and a fleet that reads at most 1 kB
    source = tmp_path / "big.jsonl"
    source.write_text(
        "".join(json.dumps({"id": f"i{n}", "text": "x" * 90}) + "\n" for n in range(20))
    )
    spec = RunSpec(
        run_id="lim-file",
        input=source,
        output=tmp_path / "o",
        errors=tmp_path / "e",
        json_schema=NAME,
    )
    # When the run reads it / Then it is refused, naming the setting
    with pytest.raises(InvalidJobError, match="QFLEET_MAX_BATCH_FILE_BYTES"):
        read_items(spec, Settings(max_batch_file_bytes=1_000))
