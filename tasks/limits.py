"""This fleet's input limits, checked by the producer before sending and by the worker again.

The schemas in `tasks.schemas` hold hard caps nothing may exceed; the settings here are each
deployment's own, lower limits. Every refusal names the limit and the setting that sets it.
A document over its size limit is an item-level failure at the worker (its batch-mates still
run); the producer refuses it before sending.
"""

from __future__ import annotations

import json

from qfleet.tasks.errors import InvalidJobError
from qfleet.tasks.extract_schema import check_extract_schema, json_nesting
from qfleet.tasks.schemas import (
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
    job = validate_generate_job(payload)
    prompt_chars = sum(len(m.content) for m in job.chat())
    if prompt_chars > settings.max_prompt_chars:
        raise LimitExceededError(prompt_too_large(prompt_chars, settings))
    _check_max_tokens(job.max_tokens, settings)
    if job.json_schema is not None:
        check_extract_schema(
            job.json_schema,
            max_chars=settings.max_schema_chars,
            max_depth=settings.max_schema_depth,
        )
    return job


def prompt_too_large(chars: int, settings: Settings) -> str:
    """The reason a prompt of `chars` characters is refused."""
    return (
        f"prompt has {chars} characters; this fleet accepts at most "
        f"{settings.max_prompt_chars} (QFLEET_MAX_PROMPT_CHARS)"
    )


def parse_extract_job(payload: object, settings: Settings) -> ExtractJob:
    """Validate an extract payload against the schema and this deployment's job-level limits.

    Document sizes are item-level: see `oversize_documents`.

    Raises:
        InvalidJobError: naming the problem and the setting that sets the limit.
    """
    job = validate_extract_job(payload)
    if len(job.documents) > settings.max_documents_per_job:
        raise LimitExceededError(
            f"the job has {len(job.documents)} documents; this fleet accepts at most "
            f"{settings.max_documents_per_job} per job (QFLEET_MAX_DOCUMENTS_PER_JOB)"
        )
    _check_max_tokens(job.max_tokens, settings)
    _check_shared_prompt(job, settings)
    check_extract_schema(
        job.json_schema, max_chars=settings.max_schema_chars, max_depth=settings.max_schema_depth
    )
    return job


def oversize_documents(job: ExtractJob, settings: Settings) -> dict[str, str]:
    """Document id → reason, for each document of `job` longer than this fleet accepts."""
    return {
        d.id: document_too_large(len(d.text), settings)
        for d in job.documents
        if len(d.text) > settings.max_document_chars
    }


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
