"""Extraction jobs and bulk runs through real worker processes, on the tiny random model.

The tiny model's weights are random: every valid object below is the decoder's doing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from ops.localfleet import WorkerProcess, run_cli
from qfleet.producer.client import FleetClient
from qfleet.tasks.errors import JobFailedError
from qfleet.tasks.extract_schema import UnsupportedSchemaError
from qfleet.tasks.schemas import ExtractJob, ExtractResult

pytestmark = pytest.mark.integration

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "born": {"type": "string", "format": "date"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 2},
        "nickname": {"type": ["string", "null"], "maxLength": 10},
    },
    "required": ["name", "age", "born", "tags", "nickname"],
}


@pytest.fixture(scope="module")
def extract_worker(
    fleet_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A worker serving both the generate and the extract queue."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    process = WorkerProcess(
        fleet_env,
        log,
        hostname=f"x1-{uuid.uuid4().hex[:6]}@test",
        queues="qfleet.generate,qfleet.extract",
    ).start()
    yield process
    process.stop()


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    normalised = ExtractJob(documents=[{"id": "x", "text": ""}], json_schema=schema).json_schema
    return Draft202012Validator(normalised, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _check(status: str, finish_reason: str | None, obj: Any, schema: dict[str, Any]) -> None:
    """Random weights: succeeded (valid), or incomplete (what is there is valid: a closed field
    is left out)."""
    assert status in ("succeeded", "incomplete")
    assert status == "incomplete" or finish_reason == "stop"
    if status == "incomplete":
        _validator({**schema, "required": []}).validate(obj)
    else:
        _validator(schema).validate(obj)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_an_extract_job_returns_one_valid_object_per_document(
    extract_worker: WorkerProcess, fleet: FleetClient
) -> None:
    # Given an extract job of three documents
    job = ExtractJob(
        documents=[{"id": f"p{i}", "text": f"Person {i} is {20 + i}."} for i in range(3)],
        json_schema=PERSON,
        max_tokens=48,
    )
    # When it runs on the worker
    result = fleet.wait(fleet.submit(job), timeout=120)
    # Then every document has an object that validates against the schema
    assert isinstance(result, ExtractResult)
    assert [item.id for item in result.items] == ["p0", "p1", "p2"]
    for item in result.items:
        _check(item.status, item.finish_reason, item.object, PERSON)
        # And whatever code chose or left out is named
        coded = {k for k, v in item.provenance.items() if v in ("repaired", "closed")}
        assert set(item.code_fields) == coded
    assert result.worker == extract_worker.hostname


def test_an_unsupported_schema_is_refused_before_sending(fleet: FleetClient) -> None:
    # Given a schema with a keyword qfleet cannot guarantee
    schema = {"type": "object", "properties": {"a": {"type": "string", "format": "hostname"}}}
    # When it is submitted, Then it is refused, naming the keyword
    with pytest.raises(UnsupportedSchemaError, match="'hostname'"):
        fleet.submit(
            {"kind": "extract", "documents": [{"id": "a", "text": "t"}], "json_schema": schema}
        )


def test_a_bulk_extract_run_writes_one_valid_line_per_document(
    extract_worker: WorkerProcess, fleet_env: dict[str, str], tmp_path: Path
) -> None:
    # Given 20 documents and a schema file
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "".join(json.dumps({"id": f"doc-{i}", "text": f"Text {i}"}) + "\n" for i in range(20))
    )
    schema = tmp_path / "person.json"
    schema.write_text(json.dumps(PERSON))
    out = tmp_path / "people.jsonl"
    args = ["run", "submit", str(docs), "--kind", "extract", "--schema", str(schema),
            "--out", str(out), "--batch", "6", "--max-tokens", "40",
            "--run-id", "people"]  # fmt: skip
    # When the run is submitted with the CLI
    done = run_cli(args, fleet_env)
    # Then it finished with every document's object in the output file, once
    assert done.returncode == 0, done.stderr
    lines = _lines(out)
    assert sorted(line["id"] for line in lines) == sorted(f"doc-{i}" for i in range(20))
    for line in lines:
        _check(line["status"], line["finish_reason"], line["object"], PERSON)
        assert set(line["provenance"]) <= set(PERSON["properties"])
    # And its status says so
    status = run_cli(["run", "status", "people", "--json"], fleet_env)
    progress = json.loads(status.stdout)
    assert (progress["status"], progress["done"], progress["failed"], progress["total"]) == (
        "finished", 20, 0, 20,
    )  # fmt: skip
    # When the same command runs again, Then nothing is redone or duplicated
    again = run_cli(args, fleet_env)
    assert again.returncode == 0, again.stderr
    assert _lines(out) == lines


def test_a_generate_run_writes_text_per_prompt(
    extract_worker: WorkerProcess, fleet_env: dict[str, str], tmp_path: Path
) -> None:
    # Given prompts, one with an invalid setting
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"id": "a", "prompt": "Hello"}, {"id": "b", "prompt": "Bye", "max_tokens": 4}]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "answers.jsonl"
    # When they run as a generate run
    done = run_cli(["run", "submit", str(prompts), "--kind", "generate", "--out", str(out),
                    "--max-tokens", "6", "--json"], fleet_env)  # fmt: skip
    # Then each prompt has its answer
    assert done.returncode == 0, done.stderr
    lines = {line["id"]: line for line in _lines(out)}
    assert set(lines) == {"a", "b"}
    assert lines["b"]["usage"]["completion_tokens"] <= 4
    assert json.loads(done.stdout)["status"] == "finished"


def test_an_openai_batch_file_round_trips(
    extract_worker: WorkerProcess, fleet_env: dict[str, str], tmp_path: Path
) -> None:
    # Given an OpenAI batch input file: two structured-output requests and one plain chat
    def request(custom_id: str, body: dict[str, Any]) -> str:
        line = {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": body,
        }
        return json.dumps(line) + "\n"

    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "person", "strict": True, "schema": PERSON},
    }
    structured = {
        "model": "qwen",
        "messages": [
            {"role": "system", "content": "Extract the person."},
            {"role": "user", "content": "Ann, 31, born 1993-04-02."},
        ],
        "max_tokens": 48,
        "temperature": 0,
        "response_format": response_format,
    }
    plain = {"model": "qwen", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
    bad = {"model": "qwen", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}
    batch = tmp_path / "batch.jsonl"
    batch.write_text(
        request("req-1", structured) + request("req-2", structured) + request("req-3", plain)
    )
    out, errors = tmp_path / "batch-output.jsonl", tmp_path / "batch-errors.jsonl"
    # When it runs (format detected from the file)
    done = run_cli(
        ["run", "submit", str(batch), "--out", str(out), "--errors", str(errors)], fleet_env
    )
    # Then the output file is in OpenAI's batch output format, one line per request
    assert done.returncode == 0, done.stderr
    lines = {line["custom_id"]: line for line in _lines(out)}
    assert set(lines) == {"req-1", "req-2", "req-3"}
    for custom_id, line in lines.items():
        assert line["error"] is None
        assert line["id"].startswith("batch_req_")
        response = line["response"]
        assert response["status_code"] == 200
        body = response["body"]
        assert body["object"] == "chat.completion"
        assert body["usage"]["total_tokens"] == (
            body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
        )
        content = body["choices"][0]["message"]["content"]
        if custom_id != "req-3":
            # "length": the object is not whole (code chose or left out values)
            finish = body["choices"][0]["finish_reason"]
            status = "incomplete" if finish == "length" else "succeeded"
            _check(status, finish, json.loads(content), PERSON)
    assert not errors.exists() or not errors.read_text().strip()
    # And a request that cannot be valid is refused naming its line, before anything is sent
    batch.write_text(request("req-4", bad))
    refused = run_cli(["run", "submit", str(batch), "--out", str(tmp_path / "o.jsonl")], fleet_env)
    assert refused.returncode == 6
    assert "batch.jsonl:1" in refused.stderr


TABLES = {
    "html": "<table><tr><th>name</th><th>age</th></tr><tr><td>Ann</td><td>31</td></tr>"
    "<tr><td>Bob</td><td>27</td></tr><tr><td>Cy</td><td>29</td></tr></table>",
    "markdown": "| name | age |\n|------|-----|\n| Ann  | 31  |\n| Bob  | 27  |\n| Cy   | 29  |",
}
ROWS = {
    "type": "object",
    "properties": {
        "people": {
            "type": "array",
            "maxItems": 10,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 10},
                    "age": {"type": "integer", "minimum": 0, "maximum": 150},
                },
                "required": ["name", "age"],
            },
        },
        "youngest": {"type": "string", "enum": ["Ann", "Bob", "Cy"]},
        "average_age": {"type": "number", "minimum": 0, "maximum": 150},
    },
    "required": ["people", "youngest", "average_age"],
}


def test_tables_in_documents_extract_to_valid_answers(
    extract_worker: WorkerProcess, fleet: FleetClient
) -> None:
    # Given documents holding an HTML and a Markdown table, and a schema asking for the rows,
    # who is youngest and the average age
    job = ExtractJob(
        documents=[{"id": name, "text": text} for name, text in TABLES.items()],
        json_schema=ROWS,
        instructions="List the table's rows, then who is youngest and the average age.",
        examples=[
            {
                "text": "| name | age |\n| Al | 40 |",
                "output": {
                    "people": [{"name": "Al", "age": 40}],
                    "youngest": "Ann",
                    "average_age": 40,
                },
            }
        ],
        max_tokens=40,
    )
    # When they are extracted
    result = fleet.wait(fleet.submit(job), timeout=120)
    # Then each answer is a valid object: rows to compute from, and a name from the table
    assert isinstance(result, ExtractResult)
    for item in result.items:
        _check(item.status, item.finish_reason, item.object, ROWS)
        assert item.object is not None
        assert item.object.get("youngest", "Ann") in {"Ann", "Bob", "Cy"}


def test_a_bad_extract_payload_becomes_a_job_error(
    extract_worker: WorkerProcess, fleet: FleetClient
) -> None:
    # Given a message on the extract queue that bypassed the producer's validation
    job_id = f"raw-{uuid.uuid4().hex[:8]}"
    fleet.app.send_task(
        "qfleet.extract",
        kwargs={"job": {"kind": "extract", "documents": [], "json_schema": {}}},
        task_id=job_id,
        queue="qfleet.extract",
    )
    # When the worker runs it, Then the outcome is a JobError naming the problem
    with pytest.raises(JobFailedError) as failure:
        fleet.wait(job_id, timeout=60)
    assert failure.value.error.code in ("invalid_job", "unsupported_schema")
    assert extract_worker.alive()
