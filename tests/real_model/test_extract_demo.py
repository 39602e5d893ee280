"""Guided extraction on the demo model, where each failure class is real, not forced.

One job of five short documents: each writes its date another way, its amount with thousands
separators, and names its languages twice. The demo model copies what it reads; the decoder
and the reader must turn it into the schema's values without inventing any.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qfleet.tasks.schemas import ExtractJob
from qfleet.workers.engine.guided import GuidedDecoder
from qfleet.workers.engine.model import EngineOptions, LoadedModel, load_model
from qfleet.workers.extraction import guided_decoder, run_extract

pytestmark = pytest.mark.real_model

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "signed": {"type": "string", "format": "date"},
        "total": {"type": "number", "minimum": 0},
        "languages": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
    },
    "required": ["name", "signed", "total", "languages"],
}
SPELLINGS = ["March 12, 2024", "12 March 2024", "2024年3月12日", "3/12/2024", "Mar. 12th, 2024"]


@pytest.fixture(scope="module")
def model(demo_model: Path) -> Iterator[LoadedModel]:
    loaded = load_model(demo_model, EngineOptions(device="cpu", cpu_threads=2))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def decoder(model: LoadedModel, demo_model: Path) -> GuidedDecoder:
    return guided_decoder(model, demo_model)


def _document(spelling: str) -> str:
    return (
        f"Agreement signed by Ana Costa on {spelling}. The total due is US$2,943.50. "
        "Ana speaks Portuguese, English and Spanish; Portuguese and English are used daily."
    )


def test_dates_amounts_and_lists_are_read_as_written(
    model: LoadedModel, decoder: GuidedDecoder
) -> None:
    job = ExtractJob(
        documents=[{"id": f"d{n}", "text": _document(s)} for n, s in enumerate(SPELLINGS)],
        json_schema=SCHEMA,
        max_tokens=96,
    )

    result = run_extract(model, decoder, job, submitted_at=None, worker="test")

    for item in result.items:
        assert item.object is not None, item
        # Never a date made up digit by digit: the one the document says, or none from code.
        assert item.object.get("signed") == "2024-03-12" or "signed" in item.code_fields, item
        assert item.object.get("total") == 2943.5, item
        languages = item.object.get("languages", [])
        assert len(languages) == len({x.casefold() for x in languages}), item
        coded = {k for k, v in item.provenance.items() if v in ("repaired", "closed")}
        assert (item.status == "succeeded") == (not coded and item.finish_reason == "stop")
    assert sum(item.status == "succeeded" for item in result.items) >= 4


def test_an_exhausted_budget_is_incomplete_never_succeeded(
    model: LoadedModel, decoder: GuidedDecoder
) -> None:
    job = ExtractJob(
        documents=[{"id": "a", "text": _document(SPELLINGS[0])}], json_schema=SCHEMA, max_tokens=12
    )

    [item] = run_extract(model, decoder, job, submitted_at=None, worker="test").items

    assert item.status == "incomplete"
    assert item.finish_reason == "length"
    assert item.completion_tokens <= 12
    assert "languages" in item.code_fields
