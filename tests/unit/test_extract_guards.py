"""Each failure class of guided extraction, forced on the tiny model.

The tiny model's weights are random, so the decoded text starts with what a test forces (a
`GuidedRow.prefix`, as a model would have written it) and the decoder must take it from there:
read a date or an amount as written, end an array that repeats itself, cut a looping string,
stop at the budget. Then the item must say truthfully where each value came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from qfleet.tasks.schemas import ExtractJob
from qfleet.workers.engine.guided import GuidedDecoder, GuidedOutput, GuidedRow
from qfleet.workers.engine.guided_batch import Call, Interrupts
from qfleet.workers.engine.model import LoadedModel
from qfleet.workers.extraction import run_extract
from qfleet.workers.extraction.fields import decode_schema
from qfleet.workers.extraction.items import build_item, read_output


def _normalised(schema: dict[str, Any]) -> dict[str, Any]:
    return ExtractJob(documents=[{"id": "x", "text": ""}], json_schema=schema).json_schema


def _decode(
    tiny_decoder: GuidedDecoder, schema: dict[str, Any], prefix: str, budget: int = 64
) -> GuidedOutput:
    [output] = tiny_decoder.decode(
        [GuidedRow([1, 2, 3], decode_schema(schema), budget, prefix.encode())]
    )
    return output


DATED = _normalised(
    {
        "type": "object",
        "properties": {"when": {"type": "string", "format": "date"}},
        "required": ["when"],
    }
)


@pytest.mark.parametrize(
    "spelling", ["March 12, 2024", "12 March 2024", "2024年3月12日", "3/12/2024", "Mar. 12th, 2024"]
)
def test_a_date_as_the_document_writes_it_is_decoded_and_normalised(
    tiny_decoder: GuidedDecoder, spelling: str
) -> None:
    # The old ISO-only grammar refused the model's first token here and invented a year.
    output = _decode(tiny_decoder, DATED, '{"when": "' + spelling + '"}')

    item = build_item("a", output, read_output(output, DATED), DATED)

    assert item.status == "succeeded"
    assert item.object == {"when": "2024-03-12"}
    assert item.provenance == {"when": "normalised"}
    if spelling == "3/12/2024":
        assert "ambiguous" in item.notes["when"]


TOTALLED = _normalised(
    {
        "type": "object",
        "properties": {"total": {"type": "number"}, "n": {"type": "integer"}},
        "required": ["total", "n"],
    }
)


def test_a_number_with_thousands_separators_is_read_whole(tiny_decoder: GuidedDecoder) -> None:
    output = _decode(tiny_decoder, TOTALLED, '{"total": "2,943.50", "n": "1.2万"}')

    item = build_item("a", output, read_output(output, TOTALLED), TOTALLED)

    assert item.object == {"total": 2943.5, "n": 12000}
    assert item.status == "succeeded"


@pytest.mark.parametrize(("number", "then"), [("2,", "943.50"), ("1.2", "万"), ("3.5", " million")])
def test_a_bare_number_the_model_goes_on_writing_is_quoted_whole(
    tiny_decoder: GuidedDecoder, number: str, then: str
) -> None:
    # As JSON, `2,943.50` ends at its comma (the issue's `2`); the decoder quotes the model's
    # own bytes instead, and the reader reads them. Forced: the row as speculation leaves it,
    # the model's tokens taken one by one until the grammar refuses the next one.
    row = tiny_decoder._start(GuidedRow([1, 2, 3], decode_schema(TOTALLED), 64, b'{"total": '))
    for token in tiny_decoder.tokenizer.encode(number):
        assert row.on_token(_Step(token)) is False
    refused = tiny_decoder.tokenizer.encode(then)[0]
    assert row.on_token(_Step(refused)) is True
    assert row.refused

    tiny_decoder._repair(row, Call([], None, Interrupts(None, None), True, True))

    word = tiny_decoder.guide.ll_tokenizer.decode_bytes([refused])
    assert bytes(row.trail.text) == b'{"total": "' + number.encode() + word
    assert row.repaired_fields == set()
    assert row.repairs == 0


@dataclass
class _Step:
    token_id: int


MAILED = _normalised(
    {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "email": {"type": "string"}},
        "required": ["n", "email"],
    }
)
COUNTED = _normalised(
    {
        "type": "object",
        "properties": {"email": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["email", "n"],
    }
)


@pytest.mark.parametrize(
    ("schema", "written", "then", "closed"),
    [
        (MAILED, '{"n": 3, "email": "a@b.com', '",', b'{"n": 3, "email": "a@b.com"}'),
        (COUNTED, '{"email": "a@b.com", "n": 300', ",", b'{"email": "a@b.com", "n": 300}'),
    ],
)
def test_punctuation_past_the_last_field_closes_the_object_without_an_engine_call(
    tiny_decoder: GuidedDecoder, schema: dict[str, Any], written: str, then: str, closed: bytes
) -> None:
    # The model goes on as if another field came (`",` or `,` after the last one): the part of
    # its punctuation the grammar allows is kept and the object closed, by code alone.
    row = tiny_decoder._start(GuidedRow([1, 2, 3], decode_schema(schema), 64, written.encode()))
    refused = tiny_decoder.guide.ll_tokenizer.tokenize_bytes(then.encode())
    assert len(refused) == 1
    assert row.on_token(_Step(refused[0])) is True
    assert row.refused
    calls = []
    tiny_decoder._logits_of = lambda *a: calls.append(a)  # type: ignore[method-assign]

    tiny_decoder._repair(row, Call([], None, Interrupts(None, None), True, True))

    del tiny_decoder._logits_of
    assert calls == []
    assert bytes(row.trail.text) == closed
    assert row.complete
    assert row.repaired_fields == set()
    assert row.repairs == 0


def test_a_bare_number_is_taken_as_the_model_wrote_it(tiny_decoder: GuidedDecoder) -> None:
    output = _decode(tiny_decoder, TOTALLED, '{"total": 3492.56, "n": 12}')

    item = build_item("a", output, read_output(output, TOTALLED), TOTALLED)

    assert item.object == {"total": 3492.56, "n": 12}
    assert item.provenance == {"total": "model", "n": "model"}


LISTED = _normalised(
    {
        "type": "object",
        "properties": {
            "langs": {"type": "array", "items": {"type": "string"}, "maxItems": 40},
            "done": {"type": "boolean"},
        },
        "required": ["langs", "done"],
    }
)


@pytest.mark.parametrize(
    "looping",
    ['{"langs": ["English", "Tamil", "Hindi", "English"', '{"langs": ["普通话", "英语", "null"'],
)
def test_an_array_that_repeats_itself_ends_there(tiny_decoder: GuidedDecoder, looping: str) -> None:
    output = _decode(tiny_decoder, LISTED, looping)

    value = json.loads(output.text) if output.finish_reason == "stop" else None
    assert value is not None, output
    first = json.loads(looping + "]}")["langs"]
    assert value["langs"] == first[:-1]
    assert output.trimmed_fields == ["langs"]
    item = build_item("a", output, read_output(output, LISTED), LISTED)
    assert item.provenance["langs"] == "normalised"


def test_a_looping_string_is_cut_and_reported(tiny_decoder: GuidedDecoder) -> None:
    schema = _normalised(
        {"type": "object", "properties": {"note": {"type": "string"}}, "required": ["note"]}
    )
    output = _decode(tiny_decoder, schema, '{"note": "' + "ab ha " * 12, budget=200)

    assert output.finish_reason == "stop"
    assert json.loads(output.text)["note"] == "ab ha "
    item = build_item("a", output, read_output(output, schema), schema)
    assert item.status == "incomplete"
    assert item.code_fields == ["note"]


def test_run_extract_never_reports_a_value_from_code_as_succeeded(
    tiny_loaded: LoadedModel, tiny_decoder: GuidedDecoder
) -> None:
    # Random weights: dates and amounts are noise the reader cannot read, so the repair pass
    # chooses them under the schema's own constraint, and says so.
    schema = {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date"},
            "total": {"type": "number", "minimum": 0},
        },
        "required": ["when", "total"],
    }
    job = ExtractJob(
        documents=[{"id": f"d{n}", "text": f"Paid {n},000 on March {n}, 2024"} for n in range(3)],
        json_schema=schema,
        max_tokens=48,
    )

    result = run_extract(tiny_loaded, tiny_decoder, job, submitted_at=None, worker="test")

    for item in result.items:
        assert item.completion_tokens <= 48
        coded = {k for k, v in item.provenance.items() if v in ("repaired", "closed")}
        assert set(item.code_fields) == coded
        assert (item.status == "succeeded") == (not coded and item.finish_reason == "stop")
