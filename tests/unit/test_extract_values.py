"""Reading values as documents write them: dates, amounts, currencies, enum words."""

from __future__ import annotations

from typing import Any

import pytest

from qfleet.workers.extraction.fields import decode_schema, read_value
from qfleet.workers.extraction.mentions import document_dates, number_mentions, unit_mentions
from qfleet.workers.extraction.values import (
    UnreadableError,
    date_mentions,
    match_enum,
    parse_date,
    parse_number,
)


@pytest.mark.parametrize(
    "spelling",
    [
        "July 10, 2024",
        "10 July 2024",
        "Jul. 10th, 2024",
        "the 10th of July 2024",
        "2024年7月10日",
        "2024年07月10日",
        "二〇二四年七月十日",
        "2024/7/10",
        "2024.07.10",
        "2024-07-10",
    ],
)
def test_a_date_in_any_common_spelling_reads_as_iso(spelling: str) -> None:
    assert parse_date(spelling) == ("2024-07-10", None)


def test_an_ambiguous_day_month_order_is_read_and_said() -> None:
    iso, note = parse_date("7/10/2024")

    assert iso == "2024-07-10"
    assert note is not None
    assert "ambiguous" in note
    assert parse_date("25/07/2024") == ("2024-07-25", None)


@pytest.mark.parametrize("text", ["2024-02-30", "13/13/2024", "sometime in spring", "2024"])
def test_what_is_not_a_date_is_unreadable(text: str) -> None:
    with pytest.raises(UnreadableError):
        parse_date(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2,943.50", 2943.5),
        ("US$2,943.50", 2943.5),
        ("2.943,50", 2943.5),
        ("1.2万", 12000),
        ("人民币35万元", 350000),
        ("3亿", 300000000),
        ("3.5 million", 3500000),
        ("12,000 euros", 12000),
        ("¥7,000", 7000),
    ],
)
def test_amounts_read_with_separators_scales_and_currency_marks(text: str, value: float) -> None:
    number, changed = parse_number(text, integer=False)

    assert number == value
    assert changed


@pytest.mark.parametrize(("text", "value"), [("twelve years", 12), ("十二年", 12), ("9年", 9)])
def test_counts_read_from_words(text: str, value: int) -> None:
    assert parse_number(text, integer=True) == (value, True)


def test_a_fraction_is_not_an_integer() -> None:
    with pytest.raises(UnreadableError):
        parse_number("2.5", integer=True)


@pytest.mark.parametrize(
    ("text", "code"),
    [("¥", "CNY"), ("元", "CNY"), ("人民币", "CNY"), ("US dollars", "USD"), ("€", "EUR"),
     ("pounds sterling", "GBP"), ("日元", "JPY"), ("usd", "USD")],
)  # fmt: skip
def test_currency_words_and_symbols_read_as_codes(text: str, code: str) -> None:
    assert match_enum(text, ["USD", "CNY", "EUR", "GBP", "JPY"])[0] == code


def test_an_enum_word_matches_by_case_or_a_unique_part_else_is_unreadable() -> None:
    options = ["lease", "employment", "service"]
    assert match_enum("Employment", options) == ("employment", None)
    assert match_enum("Lease Agreement", options)[0] == "lease"
    with pytest.raises(UnreadableError):
        match_enum("partnership", options)


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "when": {"type": "string", "format": "date"},
        "total": {"type": ["number", "null"], "minimum": 0},
        "currency": {"type": "string", "enum": ["USD", "CNY"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "code": {"type": "string", "pattern": "^[A-Z]+$"},
    },
    "required": ["when", "total", "currency", "tags", "code"],
}


def test_the_decode_schema_relaxes_only_copied_values() -> None:
    relaxed = decode_schema(SCHEMA)["properties"]

    assert relaxed["when"]["type"] == "string"
    assert "format" not in relaxed["when"]
    assert relaxed["total"]["type"] == ["string", "number", "null"]  # a bare number too
    assert "minimum" not in relaxed["total"]
    assert "enum" not in relaxed["currency"]
    assert relaxed["tags"] == SCHEMA["properties"]["tags"]
    assert relaxed["code"] == SCHEMA["properties"]["code"]


def test_reading_an_object_normalises_and_drops_repeated_list_items() -> None:
    decoded = {
        "when": "March 12, 2024",
        "total": "2,943.50",
        "currency": "¥",
        "tags": ["a", "b", "a"],
        "code": "X",
    }

    reading = read_value(decoded, SCHEMA)

    assert reading.value == {
        "when": "2024-03-12",
        "total": 2943.5,
        "currency": "CNY",
        "tags": ["a", "b"],
        "code": "X",
    }
    assert reading.changed


@pytest.mark.parametrize("text", ["null", "None", "N/A", " unknown ", "无"])
def test_null_written_as_text_reads_as_null_only_where_null_is_allowed(text: str) -> None:
    reading = read_value(text, {"type": ["string", "null"]})

    assert reading.value is None
    assert reading.changed
    assert read_value(text, {"type": "string"}).value == text


def test_date_mentions_find_every_spelling_in_running_text() -> None:
    text = (
        "Issued March 13, 2025; the 17th of October 2022, 2024年3月5日, 2024/3/5, Aug. 1, 2022, "
        "1 Aug 2022, 二〇二三年四月五日 and 2025-09-09. Ref 12-99-7 is no date."
    )

    assert date_mentions(text) == [
        "2025-03-13", "2022-10-17", "2024-03-05", "2024-03-05", "2022-08-01", "2022-08-01",
        "2023-04-05", "2025-09-09",
    ]  # fmt: skip


def test_number_mentions_read_scale_words_and_leave_dates_out() -> None:
    text = "Value EUR 1.2 million, 35万RMB, signed 2022-12-12, US$18,225.60 and 300 people."

    assert number_mentions(text) == [1200000.0, 350000.0, 18225.6, 300.0]


def test_number_mentions_tell_money_from_bare_figures() -> None:
    text = (
        "Total due: yen27,475.32; 涉及金额达120万RMB; 15 million US dollars; A4 paper; 参与人数: 60"
    )

    assert number_mentions(text) == [27475.32, 1200000.0, 15000000.0, 60.0]
    assert number_mentions(text, money=True) == [27475.32, 1200000.0, 15000000.0]
    assert number_mentions(text, money=False) == [60.0]


def test_unit_mentions_read_counts_in_figures_and_words() -> None:
    assert unit_mentions("runs for twenty-four months; renewable", "months") == [24]
    assert unit_mentions("期限: 6个月，工作经验十一年，2014年起", "months") == [6]
    assert unit_mentions("工作经验十一年，2014年起", "years") == [11]


def test_document_dates_are_the_dates_stated_only_as_the_documents_own() -> None:
    text = (
        "From: a@example.com\nDate: 2022-04-28\n\nSigned April 14, 2022; effective 2022-04-28."
        " This copy was printed on Mar. 14, 2025. （本报二〇二三年八月十八日电）"
    )

    assert document_dates(text) == {"2025-03-14", "2023-08-18"}


def test_a_date_line_outside_an_e_mail_header_is_a_reported_date() -> None:
    form = "Invoice No: INV-1\nDate: 2024-03-05\nDue: 2024-04-05"

    assert document_dates(form) == set()
