"""The fields-reminder prompt variant: the fields again, after the document."""

from __future__ import annotations

from qfleet.tasks.schemas import ExtractJob
from qfleet.workers.extraction.prompt import extraction_messages, reminder

SCHEMA = {
    "type": "object",
    "properties": {
        "total": {"type": "number", "description": "the amount due, tax included"},
        "kind": {"type": "string", "enum": ["lease", "sale"]},
        "currency": {"type": "string", "enum": ["USD", "EUR"]},
    },
}


def test_the_reminder_names_every_field_with_its_description_or_options() -> None:
    assert reminder(SCHEMA) == (
        'Fields: total (the amount due, tax included); kind (one of "lease", "sale"); currency.'
    )


def test_only_the_reminder_style_adds_it_after_the_document() -> None:
    job = ExtractJob(documents=[{"id": "a", "text": "Total 5 USD"}], json_schema=SCHEMA)

    with_reminder = extraction_messages(job, "Total 5 USD", "fields-reminder")[-1].content
    plain = extraction_messages(job, "Total 5 USD")[-1].content

    assert with_reminder == plain + "\n\n" + reminder(SCHEMA)
    assert "Fields:" not in plain
