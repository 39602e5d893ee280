"""The one place a job is validated: the schemas plus this fleet's limits.

The producer (`FleetClient.submit`, bulk runs reading their file) and the worker (every task
body, because the broker is an input too) call the same functions here. The schemas in
`tasks.schemas` hold hard caps nothing may exceed; the settings are each deployment's own, lower
limits. Every refusal names the limit and the setting that sets it. A document over its size
limit is an item-level failure at the worker (its batch-mates still run); the producer refuses
it before sending.
"""

from __future__ import annotations

import json
from typing import Any

from qfleet.tasks.errors import InvalidJobError
from qfleet.tasks.extract_schema import (
    MAX_SCHEMA_CHARS,
    MAX_SCHEMA_DEPTH,
    check_extract_schema,
    json_nesting,
)
from qfleet.tasks.schemas import (
    MAX_TEXT_CHARS,
    SCHEMA_LIMITS,
    ExtractJob,
    GenerateJob,
    validate_extract_job,
    validate_generate_job,
)
from qfleet.tasks.settings import Settings

# Example outputs are shown to the model as JSON and validated recursively: deeper is hostile.
MAX_EXAMPLE_NESTING = 32


class LimitExceededError(InvalidJobError):
    """A well-formed input is larger than this fleet accepts (its code stays `invalid_job`)."""


def parse_generate_job(payload: object, settings: Settings) -> GenerateJob:
    """Validate a generate payload against the schema and this deployment's limits.

    Raises:
        InvalidJobError: naming every problem, and the setting that sets a limit
            (`LimitExceededError` when only a size limit was exceeded).
    """
    # Measured on the raw payload first: a prompt over this fleet's limit is refused naming the
    # setting, not the schema's (higher) hard cap.
    chars = prompt_chars(payload)
    if chars > settings.max_prompt_chars:
        raise LimitExceededError(prompt_too_large(chars, settings))
    job = validate_generate_job(payload)
    _check_max_tokens(job.max_tokens, settings)
    if job.json_schema is not None:
        check_extract_schema(
            job.json_schema,
            max_chars=settings.max_schema_chars,
            max_depth=settings.max_schema_depth,
        )
    return job


def prompt_chars(payload: object) -> int:
    """Characters of prompt text in a generate payload (a `GenerateJob` or its plain data)."""
    if isinstance(payload, GenerateJob):
        return sum(len(m.content) for m in payload.chat())
    if not isinstance(payload, dict):
        return 0
    texts = [payload.get("prompt"), payload.get("system")]
    messages = payload.get("messages")
    if isinstance(messages, list):
        texts += [m.get("content") for m in messages if isinstance(m, dict)]
    return sum(len(t) for t in texts if isinstance(t, str))


def prompt_too_large(chars: int, settings: Settings) -> str:
    """The reason a prompt of `chars` characters is refused."""
    return (
        f"prompt has {chars} characters; this fleet accepts at most "
        f"{settings.max_prompt_chars} (QFLEET_MAX_PROMPT_CHARS)"
    )


def parse_extract_job(payload: object, settings: Settings) -> ExtractJob:
    """Validate an extract payload against the schema and this deployment's job-level limits.

    Document sizes are item-level: see `oversize_documents`. The schema is walked once: plain
    data is validated against this fleet's schema limits directly; a job built earlier (checked
    against the hard caps) is checked again only when this fleet's limits are tighter.

    Raises:
        InvalidJobError: naming the problem and the setting that sets the limit.
    """
    limits = schema_limits(settings)
    job = validate_extract_job(payload, context={SCHEMA_LIMITS: limits})
    if isinstance(payload, ExtractJob) and _tighter_than_hard_caps(settings):
        check_extract_schema(job.json_schema, **limits)
    if len(job.documents) > settings.max_documents_per_job:
        raise LimitExceededError(
            f"the job has {len(job.documents)} documents; this fleet accepts at most "
            f"{settings.max_documents_per_job} per job (QFLEET_MAX_DOCUMENTS_PER_JOB)"
        )
    _check_max_tokens(job.max_tokens, settings)
    _check_shared_prompt(job, settings)
    return job


def schema_limits(settings: Settings) -> dict[str, Any]:
    """This fleet's schema limits, as keyword arguments of `check_extract_schema`."""
    return {"max_chars": settings.max_schema_chars, "max_depth": settings.max_schema_depth}


def _tighter_than_hard_caps(settings: Settings) -> bool:
    return (
        settings.max_schema_chars < MAX_SCHEMA_CHARS or settings.max_schema_depth < MAX_SCHEMA_DEPTH
    )


def check_job(payload: object, settings: Settings) -> GenerateJob | ExtractJob:
    """`payload` as the job its `kind` names (generate when it names none), fully checked:
    the schema, this fleet's limits, and (extract) every document's size.

    Raises:
        InvalidJobError: naming every problem, and the setting that sets a limit.
    """
    if isinstance(payload, ExtractJob) or (
        isinstance(payload, dict) and payload.get("kind") == "extract"
    ):
        return check_extract_documents(parse_extract_job(payload, settings), settings)
    return parse_generate_job(payload, settings)


def oversize_documents(job: ExtractJob, settings: Settings) -> dict[str, str]:
    """Document id → reason, for each document of `job` longer than this fleet accepts."""
    return {
        d.id: document_too_large(len(d.text), settings)
        for d in job.documents
        if len(d.text) > settings.max_document_chars
    }


def document_refusal(text: str, settings: Settings) -> str:
    """Why the extraction document `text` fails alone (over this fleet's size), or "".

    Raises:
        InvalidJobError: the text is over the schemas' hard cap, which no setting lifts.
    """
    if len(text) > settings.max_document_chars:
        return document_too_large(len(text), settings)
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidJobError(f"the document has {len(text)} characters; at most {MAX_TEXT_CHARS}")
    return ""


def document_too_large(chars: int, settings: Settings) -> str:
    """The reason a document of `chars` characters is refused."""
    return (
        f"the document has {chars} characters; this fleet accepts at most "
        f"{settings.max_document_chars} (QFLEET_MAX_DOCUMENT_CHARS)"
    )


def check_extract_documents(job: ExtractJob, settings: Settings) -> ExtractJob:
    """`job` unchanged, or `LimitExceededError` naming its first oversize document."""
    for document_id, reason in oversize_documents(job, settings).items():
        raise LimitExceededError(f"document {document_id!r}: {reason}")
    return job


def _check_shared_prompt(job: ExtractJob, settings: Settings) -> None:
    """Instructions and examples go into every document's prompt: they count as prompt text."""
    for n, example in enumerate(job.examples):
        if json_nesting(example.output) > MAX_EXAMPLE_NESTING:
            raise LimitExceededError(
                f"examples[{n}].output is nested more than {MAX_EXAMPLE_NESTING} levels deep"
            )
    chars = len(job.instructions or "") + sum(
        len(e.text) + len(json.dumps(e.output)) for e in job.examples
    )
    if chars > settings.max_prompt_chars:
        raise LimitExceededError(
            f"instructions and examples have {chars} characters; this fleet accepts at most "
            f"{settings.max_prompt_chars} (QFLEET_MAX_PROMPT_CHARS)"
        )


def _check_max_tokens(max_tokens: int, settings: Settings) -> None:
    if max_tokens > settings.max_new_tokens:
        raise LimitExceededError(
            f"max_tokens={max_tokens} exceeds this fleet's limit of "
            f"{settings.max_new_tokens} (QFLEET_MAX_NEW_TOKENS)"
        )
