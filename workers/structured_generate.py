"""Chat answers that must be one JSON object: a generate job with `json_schema` or `json_object`.

Such a job does not go through the batcher's free decoding: it is decoded by the same
schema-guided decoder as extraction (`engine.structured`), so the answer parses and, with a
schema, validates. The answer is checked again here before it is returned: the promise to the
caller is verified, not assumed. An answer cut by its `max_tokens` says so
(`finish_reason: "length"`): under `json_object` it is closed after its last complete member
(still one object, nothing invented); under `json_schema` it is left as the model wrote it, as
OpenAI does, since required fields may be missing. Streaming jobs get their whole object as one
piece at the end (the decoder repairs tokens, so earlier pieces could be taken back).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from qfleet.tasks.errors import ModelUnavailableError, PermanentError, PromptTooLongError
from qfleet.tasks.schemas import ChatMessage, GenerateJob, JobResult, Timings, Usage
from qfleet.workers.engine.generation import Sampling, TextSink
from qfleet.workers.engine.guided import GuidedOutput, GuidedRow
from qfleet.workers.engine.model import LoadedModel
from qfleet.workers.engine.structured import MIN_STATIC_PROMPT_TOKENS
from qfleet.workers.extraction import guided_decoder
from qfleet.workers.outcomes import DeadlineExceededError, JobCancelledError

# What `json_object` decodes under: any JSON object (llguidance allows any keys by default).
ANY_OBJECT: dict[str, Any] = {"type": "object"}
JSON_INSTRUCTION = "Reply with one JSON object and nothing else."
SCHEMA_INSTRUCTION = JSON_INSTRUCTION + " The object must follow this JSON Schema:\n{schema}"


class StructuredOutputError(PermanentError):
    """The decoder could not produce an object that parses and validates."""

    code = "invalid_output"


def structured_messages(job: GenerateJob) -> list[ChatMessage]:
    """The job's conversation with the JSON instruction (and the schema) in its system turn."""
    if job.json_schema is not None:
        note = SCHEMA_INSTRUCTION.format(schema=json.dumps(job.json_schema, ensure_ascii=False))
    else:
        note = JSON_INSTRUCTION
    chat = job.chat()
    if chat[0].role == "system":
        return [ChatMessage(role="system", content=f"{chat[0].content}\n\n{note}"), *chat[1:]]
    return [ChatMessage(role="system", content=note), *chat]


def run_structured_generate(
    model: LoadedModel,
    model_dir: Path | None,
    job: GenerateJob,
    *,
    submitted_at: float | None,
    worker: str,
    on_text: TextSink | None = None,
    max_prompt_tokens: int = 0,
    deadline: float | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> JobResult:
    """Answer `job` with one JSON object decoded under its schema (or any object).

    Past `deadline` (`time.monotonic()`) or once `cancelled()`, decoding stops and the job ends
    with a `timeout` / `cancelled` JobError.
    """
    if model_dir is None:
        raise ModelUnavailableError("no model configured: set QFLEET_MODEL_DIR")
    started = time.time()
    prompt = model.tokenizer.encode_chat(structured_messages(job))
    ids = [*prompt.static_ids, *prompt.ids]
    _check_fits(model, len(ids), job.max_tokens, max_prompt_tokens)
    static = len(prompt.static_ids)
    if static < MIN_STATIC_PROMPT_TOKENS or not model.static_prompts.admit(prompt.static_ids):
        static = 0
    output = _decode(model, model_dir, job, ids, static, deadline, cancelled)
    if output.finish_reason == "length" and job.json_schema is None:
        output.text = close_object(output.text)
    _check_answer(job, output)
    if on_text is not None:
        on_text(output.text)
    finished = time.time()
    submitted = submitted_at if submitted_at is not None else started
    tokens = len(output.token_ids)
    return JobResult(
        job_id=job.job_id,
        text=output.text,
        finish_reason="length" if output.finish_reason == "length" else "stop",
        usage=Usage(prompt_tokens=len(ids), completion_tokens=tokens),
        timings=Timings(
            queued_ms=max(started - submitted, 0.0) * 1000,
            generate_ms=output.generate_seconds * 1000,
            total_ms=max(finished - submitted, 0.0) * 1000,
            tokens_per_s=tokens / max(output.generate_seconds, 1e-9),
        ),
        model=model.info,
        worker=worker,
    )


def close_object(text: str) -> str:
    """`text` cut after its last complete member and closed: one JSON object, nothing invented.

    For `json_object` answers whose budget ran out: the unfinished member is dropped (never
    completed by code), so the answer still parses; `finish_reason` stays `length`.
    """
    cuts = [i for i, c in enumerate(_outside_strings(text)) if c == ","]
    start = text.find("{")
    for cut in [*reversed(cuts), start + 1] if start >= 0 else []:
        closed = text[:cut] + "".join(reversed(_open_brackets(text[:cut])))
        try:
            if isinstance(json.loads(closed), dict):
                return closed
        except json.JSONDecodeError:
            continue
    return "{}"


def _outside_strings(text: str) -> list[str]:
    """`text` with every character inside a JSON string replaced by a space."""
    out, inside, escaped = [], False, False
    for char in text:
        if inside:
            out.append(" ")
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                inside = False
        else:
            inside = char == '"'
            out.append(" " if inside else char)
    return out


def _open_brackets(prefix: str) -> list[str]:
    """The closers of the containers still open at the end of `prefix`, outermost first."""
    stack: list[str] = []
    for char in _outside_strings(prefix):
        if char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]" and stack:
            stack.pop()
    return stack


def _decode(
    model: LoadedModel,
    model_dir: Path,
    job: GenerateJob,
    ids: list[int],
    static: int,
    deadline: float | None,
    cancelled: Callable[[], bool] | None,
) -> GuidedOutput:
    sampling = Sampling(temperature=job.temperature, top_p=job.top_p, top_k=job.top_k)
    schema = job.json_schema if job.json_schema is not None else ANY_OBJECT
    [output] = guided_decoder(model, model_dir).decode(
        [GuidedRow(prompt_ids=ids, schema=schema, max_new_tokens=job.max_tokens)],
        sampling=sampling.options(),
        static_length=static,
        deadline=deadline,
        cancelled=cancelled,
    )
    return output


def _check_fits(model: LoadedModel, prompt_tokens: int, max_tokens: int, limit: int) -> None:
    if limit and prompt_tokens > limit:
        raise PromptTooLongError(
            f"prompt is {prompt_tokens} tokens; this fleet accepts at most {limit} "
            "(QFLEET_MAX_PROMPT_TOKENS)"
        )
    if prompt_tokens + max_tokens > model.manifest.max_context:
        raise PromptTooLongError(
            f"prompt is {prompt_tokens} tokens and max_tokens is {max_tokens}, but "
            f"{model.manifest.model_id} holds {model.manifest.max_context} tokens"
        )


def _check_answer(job: GenerateJob, output: GuidedOutput) -> None:
    """Raise unless the decoded text is one JSON object valid against the job's schema."""
    if output.finish_reason == "timeout":
        raise DeadlineExceededError("the job ran past its soft time limit while it generated")
    if output.finish_reason == "cancelled":
        raise JobCancelledError("the job was cancelled while it generated")
    if output.error is not None:
        raise StructuredOutputError(f"the answer could not be decoded: {output.error}")
    if output.finish_reason == "length":
        # As OpenAI's structured outputs: a budget that runs out ends the answer where it is
        # (`finish_reason: "length"`); code never closes it with values the model did not write.
        return
    try:
        value = json.loads(output.text)
    except json.JSONDecodeError as exc:
        raise StructuredOutputError(f"the answer is not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise StructuredOutputError("the answer is not a JSON object")
    if job.json_schema is not None:
        validator = Draft202012Validator(
            job.json_schema, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        error = best_match(validator.iter_errors(value))
        if error is not None:
            raise StructuredOutputError(f"the answer does not match the schema: {error.message}")
