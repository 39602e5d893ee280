"""The extract job body: prompt per document, guided decoding of the batch, validation per object.

Every object is validated with jsonschema (formats asserted) before it is returned, even though
the decoder only emits what the schema's grammar allows: the promise to the caller is checked,
not assumed. A document that fails becomes a failed item with its reason; its batch-mates are
unaffected.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from tasks.errors import InvalidJobError
from tasks.schemas import (
    ChatMessage,
    ExtractItem,
    ExtractJob,
    ExtractResult,
    Timings,
    Usage,
    validate_extract_job,
)
from tasks.settings import Settings
from workers.engine.chat import ChatTokenizer
from workers.engine.generation import Sampling
from workers.engine.model import LoadedModel
from workers.engine.structured import GuidedDecoder, GuidedOutput, SchemaGuide

SYSTEM_PROMPT = (
    "You extract structured data from documents. Reply with one JSON object and nothing else. "
    "The object must follow this JSON Schema:\n{schema}\n"
    "Use null for optional values the document does not state; never invent facts."
)

_guides: dict[Path, SchemaGuide] = {}
_guides_lock = threading.Lock()


def guided_decoder(model: LoadedModel, model_dir: Path) -> GuidedDecoder:
    """The guided decoder for `model`; its grammar tables are built once per model folder."""
    with _guides_lock:
        guide = _guides.get(model_dir)
        if guide is None:
            guide = _guides[model_dir] = SchemaGuide(model_dir, model.tokenizer)
    return GuidedDecoder(model.generator, model.tokenizer, guide)


def parse_extract_job(payload: Any, settings: Settings) -> ExtractJob:
    """Validate an extract payload against the schema and this deployment's limits."""
    job = validate_extract_job(payload)
    longest = max(len(d.text) for d in job.documents)
    if longest > settings.max_prompt_chars:
        raise InvalidJobError(
            f"a document has {longest} characters; this fleet accepts at most "
            f"{settings.max_prompt_chars} (QFLEET_MAX_PROMPT_CHARS)"
        )
    if job.max_tokens > settings.max_new_tokens:
        raise InvalidJobError(
            f"max_tokens={job.max_tokens} exceeds this fleet's limit of "
            f"{settings.max_new_tokens} (QFLEET_MAX_NEW_TOKENS)"
        )
    return job


def extraction_messages(job: ExtractJob, document_text: str) -> list[ChatMessage]:
    """The conversation for one document: system turn with the schema, examples, the document.

    Everything before the last user turn is the same for every document of the job, so the
    decoder can pass it to CTranslate2 once, as a cached static prompt.
    """
    system = SYSTEM_PROMPT.format(schema=json.dumps(job.json_schema, ensure_ascii=False))
    if job.instructions:
        system += "\n" + job.instructions
    turns = [ChatMessage(role="system", content=system)]
    for example in job.examples:
        turns.append(ChatMessage(role="user", content=_document_turn(example.text)))
        turns.append(
            ChatMessage(role="assistant", content=json.dumps(example.output, ensure_ascii=False))
        )
    turns.append(ChatMessage(role="user", content=_document_turn(document_text)))
    return turns


def _document_turn(text: str) -> str:
    return f"Document:\n{text}"


def run_extract(
    model: LoadedModel,
    decoder: GuidedDecoder,
    job: ExtractJob,
    *,
    submitted_at: float | None,
    worker: str,
) -> ExtractResult:
    """Extract one object per document of `job`, decoding all documents in one batch."""
    started = time.time()
    validator = _validator(job)
    prompts = _prompts(job, model.tokenizer)
    static_length = _document_independent_length(job, model.tokenizer, prompts)
    fits = [len(p) + job.max_tokens <= model.manifest.max_context for p in prompts]
    outputs = iter(
        decoder.decode(
            [p for p, ok in zip(prompts, fits, strict=True) if ok],
            job.json_schema,
            max_new_tokens=job.max_tokens,
            sampling=Sampling(temperature=job.temperature).options(),
            static_length=static_length,
        )
        if any(fits)
        else []
    )
    items, generate_s = [], 0.0
    for document, prompt, ok in zip(job.documents, prompts, fits, strict=True):
        if not ok:
            items.append(
                _too_long(document.id, len(prompt), job, model).model_copy(
                    update={"prompt_tokens": len(prompt)}
                )
            )
            continue
        output = next(outputs)
        generate_s = output.generate_seconds
        item = _item(document.id, output, validator)
        items.append(item.model_copy(update={"prompt_tokens": len(prompt)}))
    finished = time.time()
    completion = sum(i.completion_tokens for i in items)
    submitted = submitted_at if submitted_at is not None else started
    return ExtractResult(
        job_id=job.job_id,
        items=items,
        usage=Usage(prompt_tokens=sum(map(len, prompts)), completion_tokens=completion),
        timings=Timings(
            queued_ms=max(started - submitted, 0.0) * 1000,
            generate_ms=generate_s * 1000,
            total_ms=max(finished - submitted, 0.0) * 1000,
            tokens_per_s=completion / max(generate_s, 1e-9),
        ),
        model=model.info,
        worker=worker,
    )


def _prompts(job: ExtractJob, tokenizer: ChatTokenizer) -> list[list[int]]:
    return [
        tokenizer.encode(tokenizer.render(extraction_messages(job, d.text))) for d in job.documents
    ]


def _document_independent_length(
    job: ExtractJob, tokenizer: ChatTokenizer, prompts: list[list[int]]
) -> int:
    """How many leading tokens every prompt shares whatever its document says.

    Measured against a probe prompt with an empty document, so a single-document job does not
    cache its document as a static prompt.
    """
    probe = tokenizer.encode(tokenizer.render(extraction_messages(job, "")))
    length = min(len(p) for p in [probe, *prompts])
    for n in range(length):
        if any(p[n] != probe[n] for p in prompts):
            return n
    return length


def _validator(job: ExtractJob) -> Draft202012Validator:
    validator = Draft202012Validator(
        job.json_schema, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    for n, example in enumerate(job.examples):
        error = best_match(validator.iter_errors(example.output))
        if error is not None:
            raise InvalidJobError(
                f"examples[{n}].output does not match the schema: {error.message}"
            )
    return validator


def _item(document_id: str, output: GuidedOutput, validator: Draft202012Validator) -> ExtractItem:
    tokens = len(output.token_ids)
    if output.error is not None:
        return _failed(document_id, "decoding_failed", output.error, tokens, output.repairs)
    try:
        value = json.loads(output.text)
    except json.JSONDecodeError as exc:
        return _failed(document_id, "invalid_json", f"{exc}: {output.text[:200]!r}", tokens, 0)
    error = best_match(validator.iter_errors(value))
    if error is not None or not isinstance(value, dict):
        reason = error.message if error is not None else "not a JSON object"
        return _failed(document_id, "schema_violation", reason, tokens, output.repairs)
    return ExtractItem(
        id=document_id,
        status="succeeded",
        object=value,
        finish_reason=output.finish_reason,
        completion_tokens=tokens,
        repairs=output.repairs,
    )


def _failed(document_id: str, code: str, reason: str, tokens: int, repairs: int) -> ExtractItem:
    return ExtractItem(
        id=document_id,
        status="failed",
        error_code=code,
        error=reason,
        completion_tokens=tokens,
        repairs=repairs,
    )


def _too_long(
    document_id: str, prompt_tokens: int, job: ExtractJob, model: LoadedModel
) -> ExtractItem:
    return _failed(
        document_id,
        "prompt_too_long",
        f"the prompt is {prompt_tokens} tokens and max_tokens is {job.max_tokens}, but "
        f"{model.manifest.model_id} holds {model.manifest.max_context} tokens",
        0,
        0,
    )
