"""Read values held to their document: ungrounded nulls, lists written together, currencies."""

from __future__ import annotations

import json
from typing import Any

from qfleet.workers.engine.guided import GuidedOutput
from qfleet.workers.extraction.evidence import check_evidence, currency_marks
from qfleet.workers.extraction.items import Reading, read_output

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "employer": {"type": ["string", "null"]},
        "email": {"anyOf": [{"type": "string", "format": "email"}, {"type": "null"}]},
        "languages": {"type": "array", "items": {"type": "string"}, "maxItems": 6},
        "total": {"type": "number"},
        "currency": {"type": "string", "enum": ["USD", "CNY", "EUR", "GBP", "JPY"]},
    },
    "required": ["name", "employer", "email", "languages", "total", "currency"],
}


def _read(obj: dict[str, Any], document: str) -> Reading:
    output = GuidedOutput([], json.dumps(obj, ensure_ascii=False), "stop", 0, 0.0)
    reading = read_output(output, SCHEMA)
    check_evidence(reading, SCHEMA, document)
    return reading


def test_a_nullable_string_the_document_never_states_becomes_null_from_code() -> None:
    document = "Tom Becker lives in Hamburg. He speaks German and English."
    reading = _read(
        {"name": "Tom", "employer": "Elbe Shipping", "email": "tom.becker@example.com"}, document
    )

    assert reading.values["employer"] is None
    assert reading.values["email"] is None
    assert reading.provenance["employer"] == reading.provenance["email"] == "repaired"
    assert "does not occur" in reading.notes["email"]
    # A required string is never nulled, grounded or not.
    assert reading.values["name"] == "Tom"


def test_a_stated_value_is_kept_whatever_its_case_or_spacing() -> None:
    reading = _read(
        {"employer": " infosys ", "email": "Priya@Example.com"},
        "Works at Infosys, priya@example.com",
    )

    assert reading.values["employer"] == " infosys "
    assert reading.values["email"] == "Priya@Example.com"
    assert reading.provenance["employer"] == "model"


def test_items_the_document_lists_together_are_split() -> None:
    english = _read(
        {"languages": ["English", "Tamil and Hindi"]}, "Languages: English, Tamil and Hindi."
    )
    chinese = _read({"languages": ["普通话、英语、韩语"]}, "会说普通话、英语、韩语。")

    assert english.values["languages"] == ["English", "Tamil", "Hindi"]
    assert chinese.values["languages"] == ["普通话", "英语", "韩语"]
    assert english.provenance["languages"] == "normalised"


def test_a_name_with_and_is_not_split_unless_it_ends_a_written_list() -> None:
    reading = _read(
        {"languages": ["Marks and Spencer", "Tate and Lyle"]},
        "Clients: Marks and Spencer; Tate and Lyle.",
    )

    assert reading.values["languages"] == ["Marks and Spencer", "Tate and Lyle"]
    assert reading.provenance["languages"] == "model"


def test_the_currency_agrees_with_the_mark_copied_with_the_amount() -> None:
    reading = _read({"total": "¥44,086.19", "currency": "USD"}, "合计¥44,086.19")
    agreeing = _read({"total": "$12.00", "currency": "USD"}, "Total $12.00")
    mixed = _read({"total": "12 euros or $13", "currency": "USD"}, "12 euros or $13")

    assert (reading.values["currency"], reading.provenance["currency"]) == ("CNY", "normalised")
    assert (agreeing.values["currency"], agreeing.provenance["currency"]) == ("USD", "model")
    assert mixed.values["currency"] == "USD"  # two marks: nothing to go by


def test_currency_marks_take_the_longest_spelling() -> None:
    assert currency_marks("38,071.56美元") == {"USD"}
    assert currency_marks("人民币35万元") == {"CNY"}
    assert currency_marks("US$3") == {"USD"}
    assert currency_marks("10,390.25 pounds sterling") == {"GBP"}
    assert currency_marks("1,200 people in Europe") == set()


def test_a_nullable_currency_the_document_never_shows_becomes_null() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "amount": {"type": ["number", "null"]},
            "currency": {"anyOf": [{"type": "string", "enum": ["USD", "JPY"]}, {"type": "null"}]},
        },
    }

    def read(obj: dict[str, Any], document: str) -> Reading:
        output = GuidedOutput([], json.dumps(obj), "stop", 0, 0.0)
        reading = read_output(output, schema)
        check_evidence(reading, schema, document)
        return reading

    unstated = read({"amount": None, "currency": "USD"}, "About 300 people attended.")
    stated = read({"amount": None, "currency": "USD"}, "Tickets cost $20.")
    yen = read({"amount": "¥5,000", "currency": "JPY"}, "入場料¥5,000")

    assert (unstated.values["currency"], unstated.provenance["currency"]) == (None, "repaired")
    assert stated.values["currency"] == "USD"
    assert yen.values["currency"] == "JPY"  # ¥ is yen too where yuan is not allowed
