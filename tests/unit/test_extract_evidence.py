"""Read values held to their document: ungrounded nulls, lists written together, currencies."""

from __future__ import annotations

import json
from typing import Any

from qfleet.workers.engine.guided import GuidedOutput
from qfleet.workers.extraction.evidence import check_evidence
from qfleet.workers.extraction.items import Reading, read_output
from qfleet.workers.extraction.values import currency_marks

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


def test_a_currency_the_amounts_are_not_written_in_takes_the_one_they_are() -> None:
    # The model wrote the amount bare and the first currency listed; the document writes its
    # amounts in one currency only, next to the figures.
    yuan = _read({"total": 15000000, "currency": "USD"}, "合同金额: 人民币15,000,000元, 多元化")
    pounds = _read({"total": 10390.25, "currency": "USD"}, "Total due: 10,390.25 pounds sterling")
    two = _read({"total": 12, "currency": "USD"}, "12 euros, or $13 by card")
    word_only = _read(
        {"total": 12, "currency": "USD"}, "公司坚持多元化发展战略，客户遍及全国各地。本次共采购12项"
    )

    assert (yuan.values["currency"], yuan.provenance["currency"]) == ("CNY", "repaired")
    assert "CNY only" in yuan.notes["currency"]
    assert pounds.values["currency"] == "GBP"
    assert two.values["currency"] == "USD"  # two currencies: nothing to go by
    assert word_only.values["currency"] == "USD"  # 元 in a word, by no figure: no currency


def test_a_null_currency_beside_a_stated_amount_takes_the_documents() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "amount": {"type": ["number", "null"]},
            "currency": {"anyOf": [{"type": "string", "enum": ["USD", "CNY"]}, {"type": "null"}]},
        },
    }
    given = _read_with(schema, {"amount": 2600000, "currency": None}, "涉及金额达¥260万。")
    none = _read_with(schema, {"amount": None, "currency": None}, "涉及金额达¥260万。")

    assert (given.values["currency"], given.provenance["currency"]) == ("CNY", "repaired")
    assert none.values["currency"] is None  # no amount read: no currency to give it


DATES: dict[str, Any] = {
    "type": "object",
    "properties": {
        "issued": {"type": "string", "format": "date"},
        "due": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
        "ends": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
        "kind": {"type": "string", "enum": ["lease", "employment", "service"]},
    },
}


def _read_with(schema: dict[str, Any], obj: dict[str, Any], document: str) -> Reading:
    output = GuidedOutput([], json.dumps(obj, ensure_ascii=False), "stop", 0, 0.0)
    reading = read_output(output, schema)
    check_evidence(reading, schema, document)
    return reading


def test_a_nullable_field_copying_text_written_once_for_another_field_becomes_null() -> None:
    reading = _read_with(
        DATES,
        {"issued": "March 5, 2024", "due": "March 5, 2024"},
        "Invoice issued March 5, 2024. Payable on receipt.",
    )

    assert reading.values["issued"] == "2024-03-05"  # the field that must have a value keeps it
    assert (reading.values["due"], reading.provenance["due"]) == (None, "repaired")
    assert "once" in reading.notes["due"]


def test_text_written_twice_or_shared_by_nullable_fields_only_is_kept() -> None:
    twice = _read_with(
        DATES,
        {"issued": "March 5, 2024", "due": "March 5, 2024"},
        "Issued March 5, 2024 and due March 5, 2024.",
    )
    nullable_only = _read_with(
        DATES, {"due": "May 1, 2024", "ends": "May 1, 2024"}, "Runs until May 1, 2024."
    )

    assert twice.values["due"] == "2024-03-05"
    assert nullable_only.values["due"] == nullable_only.values["ends"] == "2024-05-01"


def test_items_joined_by_a_conjunction_split_when_the_document_names_them_apart() -> None:
    english = _read(
        {"languages": ["Infineon and BMW Group"]},
        "Partners: Infineon and BMW Group. Infineon supplies chips; BMW Group builds cars.",
    )
    chinese = _read(
        {"languages": ["蔚来汽车和合肥建投"]},
        "蔚来汽车和合肥建投签约。蔚来汽车表示，合肥建投将出资。",
    )

    assert english.values["languages"] == ["Infineon", "BMW Group"]
    assert chinese.values["languages"] == ["蔚来汽车", "合肥建投"]
    assert chinese.provenance["languages"] == "normalised"


def test_a_joined_name_the_document_never_writes_apart_is_kept_whole() -> None:
    reading = _read(
        {"languages": ["Marks and Spencer", "人力资源和社会保障部"]},
        "Marks and Spencer and 人力资源和社会保障部 met. Marks said little.",
    )

    assert reading.values["languages"] == ["Marks and Spencer", "人力资源和社会保障部"]


def test_an_enum_the_document_never_names_takes_the_one_option_it_does_name() -> None:
    reading = _read_with(DATES, {"kind": "lease"}, "Agreement: Employment Contract")

    assert (reading.values["kind"], reading.provenance["kind"]) == ("employment", "repaired")


def test_an_enum_the_document_names_or_with_several_named_options_is_kept() -> None:
    named = _read_with(DATES, {"kind": "lease"}, "Lease and employment terms")
    several = _read_with(DATES, {"kind": "lease"}, "Employment and service terms")
    none = _read_with(DATES, {"kind": "lease"}, "租赁合同")

    assert named.values["kind"] == several.values["kind"] == none.values["kind"] == "lease"


def test_a_date_stated_once_in_another_spelling_is_still_one_occurrence() -> None:
    reading = _read_with(
        DATES,
        {"issued": "the 17th of October 2022", "due": "2022-10-17"},
        "Issued the 17th of October 2022. Payable on receipt.",
    )

    assert reading.values["issued"] == "2022-10-17"
    assert reading.values["due"] is None


def test_a_copy_a_character_off_takes_the_documents_spelling() -> None:
    reading = _read(
        {"name": "北京市嘉禾餐饮管理有限公司", "languages": ["上海经信委", "华为"]},
        "开票单位: 北京嘉禾餐饮管理有限公司。上海市经信委、华为在上海举行相关活动。",
    )

    assert reading.values["name"] == "北京嘉禾餐饮管理有限公司"
    assert reading.values["languages"] == ["上海市经信委", "华为"]
    assert reading.provenance["name"] == reading.provenance["languages"] == "repaired"


def test_copies_far_from_any_passage_or_near_two_are_not_respelt() -> None:
    reading = _read(
        {"name": "Harbour Lane Supply Company", "languages": ["Gamma", "Dutch"]},
        "Harbor Lane Supplies Ltd. Teams Gamme and Gammy. Speaks Dutch.",
    )

    assert reading.values["name"] == "Harbour Lane Supply Company"  # many edits away
    assert reading.values["languages"] == ["Gamma", "Dutch"]  # two passages one edit away


def test_a_number_a_power_of_ten_off_the_documents_only_amount_is_read_from_it() -> None:
    reading = _read({"total": "1200000000"}, "Signed 2022-12-12; the value is EUR 1.2 million.")
    chinese = _read({"total": "3500000000"}, "合同金额: 35万RMB, 期限: 24个月")

    assert (reading.values["total"], reading.provenance["total"]) == (1200000, "repaired")
    assert chinese.values["total"] == 350000


def test_a_bare_number_a_power_of_ten_off_is_read_from_the_document_too() -> None:
    reading = _read({"total": 1200000000}, "The total contract value is US$1.2 million.")

    assert (reading.values["total"], reading.provenance["total"]) == (1200000, "repaired")


def test_a_number_the_document_writes_or_with_two_candidates_is_kept() -> None:
    written = _read({"total": "1,200"}, "Total 1,200 euros, 12 items.")
    spelt = _read({"total": "1200"}, "Total 1,200 euros; 120 were paid.")
    two = _read({"total": "1200"}, "Totals of 12 and 120 euros.")

    assert written.values["total"] == spelt.values["total"] == two.values["total"] == 1200


def test_a_date_the_document_never_states_takes_the_one_a_part_off_else_null() -> None:
    slipped = _read_with(
        DATES, {"issued": "2025-09-12"}, "王丽华，1994年09月12日出生。日期：2025/2/11"
    )
    invented = _read_with(
        DATES, {"issued": "2020-07-06", "due": "2020-07-10"}, "Issued 2020-07-06, sent 2020-07-07."
    )

    assert (slipped.values["issued"], slipped.provenance["issued"]) == ("1994-09-12", "repaired")
    assert (invented.values["due"], invented.provenance["due"]) == (None, "repaired")


def test_a_stated_date_or_one_near_several_stated_dates_is_kept() -> None:
    stated = _read_with(DATES, {"issued": "2020-07-06"}, "Issued 6 July 2020.")
    ambiguous = _read_with(DATES, {"issued": "2019-06-28"}, "Signed 2019-05-28, from 2019-06-11.")

    assert stated.values["issued"] == "2020-07-06"
    assert stated.provenance["issued"] == "model"
    assert ambiguous.values["issued"] == "2019-06-28"  # a required date is never nulled


def test_a_total_that_is_a_part_of_a_written_sum_takes_the_sum() -> None:
    english = _read(
        {"total": "$3,090.76"},
        "The subtotal is $3,090.76 and tax comes to US$401.80, for a total of US$3,492.56.",
    )
    chinese = _read(
        {"total": "人民币28,318.58元"},
        "不含税金额: 人民币28,318.58元\n税额(13%): 人民币3,681.42元\n价税合计: 3.2万元",
    )

    assert (english.values["total"], english.provenance["total"]) == (3492.56, "repaired")
    assert "sum" in english.notes["total"]
    assert chinese.values["total"] == 32000


def test_a_total_with_no_sum_or_two_sums_or_a_field_not_asking_for_one_is_kept() -> None:
    alone = _read({"total": "3,090.76"}, "Amount: 3,090.76; 12 items.")
    two = _read({"total": "100"}, "Parts 100, 20 and 50; sums 120 and 150.")
    schema = {"type": "object", "properties": {"subtotal": {"type": "number"}}}
    part = _read_with(schema, {"subtotal": "90"}, "Subtotal 90, tax 10, total 100.")

    assert alone.values["total"] == 3090.76
    assert two.values["total"] == 100
    assert (part.values["subtotal"], part.provenance["subtotal"]) == (90, "model")


def test_the_documents_own_date_gives_way_to_the_one_date_it_reports() -> None:
    emailed = _read_with(
        DATES,
        {"issued": "2022-04-28"},
        "From: office@example.com\nDate: 2022-04-28\n\nThe invoice was issued on April 14, 2022.",
    )
    printed = _read_with(
        DATES,
        {"issued": "2025-03-13", "due": "Mar. 14, 2025"},
        "Issued March 13, 2025. This copy was printed on Mar. 14, 2025 for your records.",
    )
    chinese = _read_with(
        DATES,
        {"issued": "2025-11-30"},
        "开票日期：2025年11月29日。本副本打印于2025/11/30，仅供存档。",
    )

    assert (emailed.values["issued"], emailed.provenance["issued"]) == ("2022-04-14", "repaired")
    assert (printed.values["due"], printed.provenance["due"]) == (None, "repaired")
    assert chinese.values["issued"] == "2025-11-29"


def test_a_date_the_document_also_reports_or_a_field_asking_for_its_own_date_is_kept() -> None:
    reported = _read_with(
        DATES, {"issued": "2022-04-28"}, "Date: 2022-04-28\n\nIt takes effect on 2022-04-28."
    )
    schema = {"type": "object", "properties": {"published": {"type": "string", "format": "date"}}}
    asked = _read_with(
        schema, {"published": "2025-09-10"}, "Published 2025-09-10. Held 2025-09-09."
    )

    assert (reported.values["issued"], reported.provenance["issued"]) == ("2022-04-28", "model")
    assert (asked.values["published"], asked.provenance["published"]) == ("2025-09-10", "model")


COUNTS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "term_months": {"type": ["integer", "null"]},
        "years_experience": {"type": "integer"},
    },
}


def test_a_count_field_takes_the_one_count_the_document_writes_in_its_unit() -> None:
    months = _read_with(COUNTS, {"term_months": None}, "It runs for six months from 2024-05-01.")
    figures = _read_with(COUNTS, {"term_months": None}, "期限: 24个月，至2023年11月17日终止。")
    years = _read_with(COUNTS, {"years_experience": 10}, "2014年起从事护理工作，工作经验十一年。")

    assert (months.values["term_months"], months.provenance["term_months"]) == (6, "repaired")
    assert figures.values["term_months"] == 24
    assert (years.values["years_experience"], years.provenance["years_experience"]) == (
        11,
        "repaired",
    )


def test_a_count_the_document_writes_or_two_counts_in_the_unit_are_kept() -> None:
    written = _read_with(COUNTS, {"years_experience": 12}, "Twelve years in sales; 12 years here.")
    two = _read_with(COUNTS, {"term_months": None}, "Runs 6 months, renewable for 12 months.")

    assert written.values["years_experience"] == 12
    assert two.values["term_months"] is None


PARTIES: dict[str, Any] = {
    "type": "object",
    "properties": {
        "parties": {"type": "array", "items": {"type": "string"}},
        "governing_city": {"type": ["string", "null"]},
    },
}


def test_a_nullable_name_another_field_holds_and_the_document_states_once_becomes_null() -> None:
    reading = _read_with(
        PARTIES,
        {"parties": ["Orbit Logistics Ltd", "Maria Alvarez"], "governing_city": "Orbit Logistics"},
        "Made between Orbit Logistics Ltd and Maria Alvarez in London.",
    )
    named_twice = _read_with(
        PARTIES,
        {"parties": ["London Transit", "Maria Alvarez"], "governing_city": "London"},
        "London Transit and Maria Alvarez agree that the courts of London decide disputes.",
    )

    assert (reading.values["governing_city"], reading.provenance["governing_city"]) == (
        None,
        "repaired",
    )
    assert named_twice.values["governing_city"] == "London"


def test_one_list_item_joining_two_capitalised_names_is_split() -> None:
    joined = _read({"languages": ["Port of Rotterdam and Vestas"]}, "Port of Rotterdam and Vestas")
    lower = _read({"languages": ["bread and butter"]}, "We sell bread and butter.")
    two = _read(
        {"languages": ["Marks and Spencer", "Tate and Lyle"]}, "Marks and Spencer; Tate and Lyle."
    )

    assert joined.values["languages"] == ["Port of Rotterdam", "Vestas"]
    assert joined.provenance["languages"] == "normalised"
    assert lower.values["languages"] == ["bread and butter"]
    assert two.values["languages"] == ["Marks and Spencer", "Tate and Lyle"]


NEWS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "amount": {"type": ["number", "null"]},
        "attendees": {"type": ["integer", "null"]},
    },
}


def test_a_count_written_only_as_money_and_an_amount_written_only_as_a_count_become_null() -> None:
    money = _read_with(
        NEWS,
        {"amount": 120000, "attendees": 120000},
        "| Amount | 120,000 euros |\n| Location | Munich |",
    )
    count = _read_with(NEWS, {"amount": "60", "attendees": "60"}, "参与人数: 60\n地点: 广州")
    scaled = _read_with(NEWS, {"amount": "120万RMB", "attendees": "120万"}, "涉及金额达120万RMB。")

    assert money.values == {"amount": 120000, "attendees": None}
    assert money.provenance["attendees"] == "repaired"
    assert count.values == {"amount": None, "attendees": 60}
    assert scaled.values == {"amount": 1200000, "attendees": None}


def test_figures_written_both_ways_or_apart_stay() -> None:
    both = _read_with(NEWS, {"amount": 300, "attendees": 300}, "300 guests paid €300 in all.")
    apart = _read_with(NEWS, {"amount": "€5,000", "attendees": 1200}, "€5,000 raised; 1,200 came.")

    assert both.values == {"amount": 300, "attendees": 300}
    assert apart.values == {"amount": 5000, "attendees": 1200}
