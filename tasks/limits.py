"""This fleet's input limits, checked by the producer before sending and by the worker again."""

from __future__ import annotations

from tasks.errors import InvalidJobError
from tasks.schemas import GenerateJob, validate_generate_job
from tasks.settings import Settings


def parse_generate_job(payload: object, settings: Settings) -> GenerateJob:
    """Validate a generate payload against the schema and this deployment's limits.

    Raises:
        InvalidJobError: naming every problem, and the setting that sets a limit.
    """
    job = validate_generate_job(payload)
    prompt_chars = sum(len(m.content) for m in job.chat())
    if prompt_chars > settings.max_prompt_chars:
        raise InvalidJobError(
            f"prompt has {prompt_chars} characters; this fleet accepts at most "
            f"{settings.max_prompt_chars} (QFLEET_MAX_PROMPT_CHARS)"
        )
    if job.max_tokens > settings.max_new_tokens:
        raise InvalidJobError(
            f"max_tokens={job.max_tokens} exceeds this fleet's limit of "
            f"{settings.max_new_tokens} (QFLEET_MAX_NEW_TOKENS)"
        )
    return job
