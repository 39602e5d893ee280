"""The four schemas of the extraction development set (ops/bench/data/extract_dev.jsonl).

Each has 8 fields: dates, numbers, enums, nullable fields and a string array, the kinds business
documents are mined for. Shared by the set's generator, the scorer and the benchmark.
"""

from __future__ import annotations

from typing import Any

CURRENCIES = ["USD", "CNY", "EUR", "GBP", "JPY"]


def _date(description: str, *, nullable: bool = False) -> dict[str, Any]:
    date = {"type": "string", "format": "date", "description": description}
    return {"anyOf": [date, {"type": "null"}]} if nullable else date


def _strings(description: str, max_items: int) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": "string", "maxLength": 60},
        "maxItems": max_items,
        "description": description,
    }


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}


INVOICE = _object(
    {
        "vendor": {"type": "string", "maxLength": 80, "description": "who issued the invoice"},
        "invoice_number": {"type": "string", "maxLength": 40},
        "issue_date": _date("the date the invoice was issued"),
        "due_date": _date("the payment due date, null if none is given", nullable=True),
        "total": {"type": "number", "minimum": 0, "description": "the amount due, tax included"},
        "currency": {"type": "string", "enum": CURRENCIES},
        "items": _strings("the products or services billed, one entry each", 8),
        "paid": {"type": "boolean", "description": "true only if the invoice says it is paid"},
    }
)

CONTRACT = _object(
    {
        "parties": _strings("the names of the contracting parties", 4),
        "contract_type": {
            "type": "string",
            "enum": ["lease", "employment", "service", "sale", "loan"],
        },
        "signed_date": _date("the date the contract was signed"),
        "end_date": _date("when the contract ends, null if open-ended", nullable=True),
        "value": {"type": "number", "minimum": 0, "description": "the contract's total value"},
        "currency": {"type": "string", "enum": CURRENCIES},
        "term_months": {
            "type": ["integer", "null"],
            "minimum": 0,
            "description": "the term in months, null if not stated",
        },
        "governing_city": {
            "type": ["string", "null"],
            "maxLength": 40,
            "description": "the city whose courts settle disputes, null if not stated",
        },
    }
)

NEWS = _object(
    {
        "headline": {"type": "string", "maxLength": 120},
        "event_date": _date("the date the event happened (not the publication date)"),
        "location": {"type": "string", "maxLength": 60, "description": "the city of the event"},
        "category": {
            "type": "string",
            "enum": ["business", "technology", "sports", "health", "politics"],
        },
        "organizations": _strings("organizations named in the article", 6),
        "amount": {
            "type": ["number", "null"],
            "minimum": 0,
            "description": "the money amount the article is about, null if none",
        },
        "currency": {"anyOf": [{"type": "string", "enum": CURRENCIES}, {"type": "null"}]},
        "attendees": {
            "type": ["integer", "null"],
            "minimum": 0,
            "description": "how many people attended or took part, null if not stated",
        },
    }
)

PERSON = _object(
    {
        "name": {"type": "string", "maxLength": 60},
        "birth_date": _date("date of birth"),
        "city": {"type": "string", "maxLength": 40, "description": "the city the person lives in"},
        "occupation": {
            "type": ["string", "null"],
            "maxLength": 60,
            "description": "job title, null if the profile does not state one",
        },
        "employer": {"type": ["string", "null"], "maxLength": 60},
        "languages": _strings("languages the person speaks, each once", 6),
        "years_experience": {"type": "integer", "minimum": 0, "maximum": 70},
        "email": {"anyOf": [{"type": "string", "format": "email"}, {"type": "null"}]},
    }
)

SCHEMAS: dict[str, dict[str, Any]] = {
    "invoice": INVOICE,
    "contract": CONTRACT,
    "news": NEWS,
    "person": PERSON,
}
