"""Chat answers under a schema on the tiny random-weight model: the decoder makes them valid."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from qfleet.tasks.errors import InvalidJobError, PromptTooLongError
from qfleet.tasks.schemas import GenerateJob, validate_generate_job
from qfleet.workers.answer_cache import AnswerCache
from qfleet.workers.engine.model import EngineOptions, LoadedModel, load_model
from qfleet.workers.structured_generate import (
    close_object,
    run_structured_generate,
    structured_messages,
)

TICKET = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 30},
        "priority": {"enum": ["low", "high"]},
        "hours": {"type": "number", "minimum": 0, "maximum": 40},
        "done": {"type": "boolean"},
    },
    "required": ["title", "priority", "done"],
}


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> Iterator[LoadedModel]:
    loaded = load_model(tiny_model, EngineOptions(device="cpu", cpu_threads=1))
    yield loaded
    loaded.close()


def job(**fields: object) -> GenerateJob:
    return GenerateJob(messages=[{"role": "user", "content": "File a ticket"}], **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_schema_answers_validate(model: LoadedModel, tiny_model: Path, temperature: float) -> None:
    pieces: list[str] = []
    result = run_structured_generate(
        model, tiny_model, job(json_schema=TICKET, max_tokens=200, temperature=temperature),
        submitted_at=None, worker="w", on_text=pieces.append,
    )  # fmt: skip
    assert result.finish_reason == "stop"
    value = json.loads(result.text)
    assert not list(Draft202012Validator(TICKET).iter_errors(value))
    assert pieces == [result.text]  # a streamed structured answer is one piece
    assert result.usage.completion_tokens > 0


def test_json_object_answers_parse_even_when_the_budget_runs_out(
    model: LoadedModel, tiny_model: Path
) -> None:
    result = run_structured_generate(
        model, tiny_model, job(json_object=True, max_tokens=8, temperature=1.0),
        submitted_at=None, worker="w",
    )  # fmt: skip
    assert result.finish_reason == "length"
    assert result.usage.completion_tokens <= 8
    assert isinstance(json.loads(result.text), dict)


@pytest.mark.parametrize(
    ("cut", "closed"),
    [
        ('{"a": 1, "b": "x,y', '{"a": 1}'),
        ('{"a": [1, 2, {"c": "d"', '{"a": [1, 2]}'),
        ('{"a": "q\\"q", "b', '{"a": "q\\"q"}'),
        ('{"a', "{}"),
    ],
)
def test_a_cut_object_is_closed_after_its_last_whole_member(cut: str, closed: str) -> None:
    assert close_object(cut) == closed


def test_the_instruction_goes_into_the_system_turn() -> None:
    with_system = GenerateJob(prompt="Hi", system="Be brief.", json_schema=TICKET)
    system = structured_messages(with_system)[0]
    assert system.role == "system"
    assert system.content.startswith("Be brief.\n\nReply with one JSON object")
    assert '"priority"' in system.content
    assert structured_messages(GenerateJob(prompt="Hi", json_object=True))[0].role == "system"


def test_prompt_over_the_context_is_refused(model: LoadedModel, tiny_model: Path) -> None:
    long = GenerateJob(prompt="word " * 5000, json_object=True, max_tokens=8)
    with pytest.raises(PromptTooLongError):
        run_structured_generate(model, tiny_model, long, submitted_at=None, worker="w")


def test_schema_is_checked_like_an_extraction_schema() -> None:
    with pytest.raises(InvalidJobError, match="'not'"):
        job(json_schema={"type": "object", "properties": {"a": {"not": {"type": "string"}}}})
    with pytest.raises(InvalidJobError, match="at most one"):
        validate_generate_job({"prompt": "x", "json_schema": TICKET, "json_object": True})


def test_cache_keys_tell_structured_from_plain_answers() -> None:
    cache = AnswerCache(redis=None)
    plain, shaped = GenerateJob(prompt="Hi"), GenerateJob(prompt="Hi", json_schema=TICKET)
    assert cache.key("m", plain, 1) != cache.key("m", shaped, 1)
    assert cache.key("m", shaped, 1) != cache.key(
        "m", GenerateJob(prompt="Hi", json_object=True), 1
    )
