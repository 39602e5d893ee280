"""`tasks.limits`, the one place a job is checked: each check applied once per job and side."""

from __future__ import annotations

from typing import Any

import pytest

from qfleet.tasks import schemas
from qfleet.tasks.errors import InvalidJobError
from qfleet.tasks.extract_schema import UnsupportedSchemaError
from qfleet.tasks.limits import LimitExceededError, check_job, document_refusal
from qfleet.tasks.schemas import MAX_TEXT_CHARS, ExtractJob, GenerateJob
from qfleet.tasks.settings import Settings

SCHEMA = {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]}
DEEP = {
    "type": "object",
    "properties": {"x": {"type": "object", "properties": {"y": {"type": "boolean"}}}},
}


@pytest.fixture
def schema_walks(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The keyword arguments of every walk of an extraction schema."""
    calls: list[dict[str, Any]] = []
    real = schemas.check_extract_schema

    def counting(schema: object, **limits: Any) -> dict[str, Any]:
        calls.append(limits)
        return real(schema, **limits)

    monkeypatch.setattr(schemas, "check_extract_schema", counting)
    monkeypatch.setattr("qfleet.tasks.limits.check_extract_schema", counting)
    return calls


def _extract(**fields: Any) -> dict[str, Any]:
    return {"kind": "extract", "documents": [{"id": "a", "text": "t"}], **fields}


def test_a_payload_schema_is_walked_once_with_this_fleets_limits(
    schema_walks: list[dict[str, Any]],
) -> None:
    settings = Settings(max_schema_depth=3)

    job = check_job(_extract(json_schema=SCHEMA), settings)

    assert isinstance(job, ExtractJob)
    assert schema_walks == [{"max_chars": settings.max_schema_chars, "max_depth": 3}]


def test_a_built_job_is_walked_again_only_under_tighter_limits(
    schema_walks: list[dict[str, Any]],
) -> None:
    job = ExtractJob.model_validate(_extract(json_schema=DEEP))
    assert len(schema_walks) == 1  # construction, against the hard caps

    check_job(job, Settings())
    assert len(schema_walks) == 1  # this fleet's limits are the hard caps: nothing to add

    with pytest.raises(UnsupportedSchemaError, match="QFLEET_MAX_SCHEMA_DEPTH"):
        check_job(job, Settings(max_schema_depth=1))
    assert len(schema_walks) == 2


def test_a_prompt_over_this_fleets_limit_names_the_setting_even_above_the_hard_cap() -> None:
    payload = {"prompt": "p" * (MAX_TEXT_CHARS + 1)}

    with pytest.raises(LimitExceededError, match="QFLEET_MAX_PROMPT_CHARS"):
        check_job(payload, Settings())
    assert isinstance(check_job({"prompt": "hi"}, Settings()), GenerateJob)


def test_a_document_over_a_limit_fails_alone_or_not_at_all() -> None:
    settings = Settings(max_document_chars=10)

    assert document_refusal("short", settings) == ""
    assert "QFLEET_MAX_DOCUMENT_CHARS" in document_refusal("x" * 11, settings)
    with pytest.raises(InvalidJobError):
        document_refusal("x" * (MAX_TEXT_CHARS + 1), Settings(max_document_chars=10**7))
