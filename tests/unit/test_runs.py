"""Bulk-run planning and files, without a fleet: items, chunks, job ids, sinks, OpenAI lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from qfleet.producer.openai_batch import error_line, output_line
from qfleet.producer.runs import (
    RunItem,
    RunSink,
    RunSpec,
    build_job,
    default_run_id,
    detect_format,
    plan_chunks,
    read_items,
    records_for,
)
from qfleet.tasks.errors import InvalidJobError
from qfleet.tasks.retrieval import SourceRef
from qfleet.tasks.schemas import ExtractJob, GenerateJob, JobError, JobResult

SCHEMA = {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]}


def _spec(tmp_path: Path, lines: list[dict[str, Any]], **fields: Any) -> RunSpec:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return RunSpec(
        run_id="r1",
        input=source,
        output=tmp_path / "out.jsonl",
        errors=tmp_path / "err.jsonl",
        **fields,
    )


def test_extract_items_batch_per_schema_and_job_ids_are_stable(tmp_path: Path) -> None:
    spec = _spec(tmp_path, [{"id": f"x{i}", "text": "t"} for i in range(5)], json_schema=SCHEMA)

    chunks = plan_chunks(read_items(spec), batch=2)
    jobs = [build_job("r1", chunk) for chunk in chunks]

    assert [len(c) for c in chunks] == [2, 2, 1]
    assert all(isinstance(job, ExtractJob) for job in jobs)
    assert [j.job_id for j in jobs] == [build_job("r1", c).job_id for c in chunks]
    assert len({j.job_id for j in jobs}) == 3


def test_generate_items_get_run_dot_item_job_ids(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path, [{"id": "q1", "prompt": "hi"}, {"id": "a b", "prompt": "x"}], kind="generate"
    )

    jobs = [build_job("r1", chunk) for chunk in plan_chunks(read_items(spec), batch=8)]

    assert all(isinstance(job, GenerateJob) for job in jobs)
    assert jobs[0].job_id == "r1.q1"
    assert jobs[1].job_id.startswith("r1.")  # "a b" is not a job-id character set: digested


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([{"id": "a", "text": "t"}, {"id": "a", "text": "u"}], "in.jsonl:2: duplicate id"),
        ([{"text": "t"}], "in.jsonl:1"),
        ([{"id": "a"}], 'needs "text"'),
    ],
)
def test_bad_input_lines_are_named(
    tmp_path: Path, lines: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(InvalidJobError, match=message):
        read_items(_spec(tmp_path, lines, json_schema=SCHEMA))


def test_the_sink_cuts_a_torn_line_and_knows_what_is_done(tmp_path: Path) -> None:
    spec = _spec(tmp_path, [{"id": "a", "text": "t"}], json_schema=SCHEMA)
    sink = RunSink(spec)
    sink.write("a", {"id": "a", "status": "succeeded"}, failed=False)
    sink.write("b", {"id": "b", "status": "failed"}, failed=True)
    with spec.output.open("a") as stream:
        stream.write('{"id": "c", "sta')  # a producer killed mid-write

    assert sink.finished_ids() == {"a", "b"}
    assert spec.output.read_text().count("\n") == 2
    assert [json.loads(x)["id"] for x in spec.errors.read_text().splitlines()] == ["b"]


def test_a_whole_job_error_fails_each_of_its_items(tmp_path: Path) -> None:
    spec = _spec(tmp_path, [], format="openai")
    items = [RunItem(id=i, kind="extract") for i in ("p", "q")]

    records = records_for(spec, items, JobError(job_id="j", code="boom", message="why"))

    assert [(r[0], r[2]) for r in records] == [("p", True), ("q", True)]
    assert records[0][1] == error_line("p", code="boom", message="why")


def test_openai_requests_become_extract_or_generate_items(tmp_path: Path) -> None:
    def line(custom_id: str, **body: Any) -> dict[str, Any]:
        messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "doc"}]
        return {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": messages, **body},
        }

    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA}}
    spec = _spec(tmp_path, [line("r1", response_format=fmt, max_tokens=9), line("r2", stop="x")])

    extract, generate = read_items(spec.model_copy(update={"format": detect_format(spec.input)}))

    assert isinstance(extract.job, ExtractJob)
    assert (extract.kind, extract.text, extract.job.instructions) == ("extract", "doc", "sys")
    assert extract.job.max_tokens == 9
    assert isinstance(generate.job, GenerateJob)
    assert (generate.kind, generate.job.stop) == ("generate", ["x"])
    with pytest.raises(InvalidJobError, match="only POST"):
        read_items(_spec(tmp_path, [{**line("r3"), "url": "/v1/embeddings"}], format="openai"))


def test_openai_output_lines_have_the_batch_shape() -> None:
    out = output_line("c1", job_id="j", model="m", content="{}", finish_reason="stop",
                      prompt_tokens=3, completion_tokens=2)  # fmt: skip

    assert set(out) == {"id", "custom_id", "response", "error"}
    assert out["response"]["status_code"] == 200
    assert out["response"]["body"]["usage"]["total_tokens"] == 5
    assert out["response"]["body"]["choices"][0]["message"]["content"] == "{}"


def test_the_default_run_id_follows_input_and_output(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"

    assert default_run_id(a, b) == default_run_id(a, b)
    assert default_run_id(a, b) != default_run_id(b, a)


class Person(BaseModel):
    """A model a run can name with --schema-model."""

    name: str
    age: int | None = None


def test_a_pydantic_model_is_resolved_at_the_producer() -> None:
    from qfleet.producer.commands.run import _load_schema

    schema = _load_schema(None, "tests.unit.test_runs:Person")

    assert schema == Person.model_json_schema()
    with pytest.raises(SystemExit):
        _load_schema(None, "tests.unit.test_runs:missing")


def test_run_commands_name_an_unreachable_broker() -> None:
    from ops.localfleet import run_cli

    done = run_cli(["run", "status", "r1"], {"QFLEET_BROKER_URL": "redis://127.0.0.1:1/0"})

    assert done.returncode == 4
    assert "could not reach Redis" in done.stderr


def test_generate_items_go_at_bulk_priority_unless_their_line_says_otherwise(
    tmp_path: Path,
) -> None:
    lines = [{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y", "priority": "interactive"}]
    native = read_items(_spec(tmp_path, lines, kind="generate"))
    openai_line = {
        "custom_id": "c",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"messages": [{"role": "user", "content": "z"}]},
    }
    openai = read_items(_spec(tmp_path, [openai_line], format="openai"))

    jobs = [build_job("r1", [item]) for item in [*native, *openai]]

    assert [(j.job_id, getattr(j, "priority", None)) for j in jobs] == [
        ("r1.a", "bulk"),
        ("r1.b", "interactive"),
        ("r1.c", "bulk"),
    ]


def test_a_rag_item_keeps_its_sources_in_the_output(tmp_path: Path) -> None:
    lines = [{"id": "k", "prompt": "What changed?", "retrieval": {"top_k": 2}}]
    spec = _spec(tmp_path, lines, kind="generate")
    [item] = read_items(spec)
    source = SourceRef(source_url="https://kb/a", version="v2", chunk_id="a#0", score=0.9)
    result = JobResult.model_validate(
        {
            "job_id": "r1.k",
            "text": "A changed.",
            "finish_reason": "stop",
            "usage": {"prompt_tokens": 9, "completion_tokens": 3},
            "timings": {"queued_ms": 1, "generate_ms": 2, "total_ms": 3, "tokens_per_s": 1},
            "model": {"id": "m", "device": "cpu", "compute_type": "int8"},
            "worker": "w",
            "sources": [source.model_dump()],
        }
    )

    [record] = records_for(spec, [item], result)

    assert record.record["sources"] == [source.model_dump(mode="json")]
    assert record.record["text"] == "A changed."


def test_a_run_checks_its_schema_once_not_once_per_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qfleet.tasks import schemas

    calls = []
    real = schemas.check_extract_schema

    def counting(schema: object, **limits: Any) -> dict[str, Any]:
        calls.append(limits)
        return real(schema, **limits)

    monkeypatch.setattr(schemas, "check_extract_schema", counting)
    spec = _spec(tmp_path, [{"id": f"x{i}", "text": "t"} for i in range(9)], json_schema=SCHEMA)

    jobs = [build_job("r1", chunk) for chunk in plan_chunks(read_items(spec), batch=4)]

    assert [len(job.documents) for job in jobs if isinstance(job, ExtractJob)] == [4, 4, 1]
    assert len(calls) == 1


def test_a_cancelled_item_is_recorded_but_not_counted_as_written(tmp_path: Path) -> None:
    spec = _spec(tmp_path, [{"id": "a", "text": "t"}], json_schema=SCHEMA)
    sink = RunSink(spec)
    items = [RunItem(id="a", kind="extract"), RunItem(id="b", kind="extract")]
    cancelled = JobError(job_id="j", code="cancelled", message="the run was cancelled")

    for record in records_for(spec, items, cancelled):
        sink.put(record)

    assert not spec.output.exists()
    assert [json.loads(x)["status"] for x in spec.errors.read_text().splitlines()] == [
        "cancelled",
        "cancelled",
    ]
    assert sink.finished_ids() == set()
