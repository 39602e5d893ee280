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

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from qfleet.tasks.errors import InvalidJobError
from qfleet.tasks.limits import oversize_documents
from qfleet.tasks.schemas import (
    ChatMessage,
    ExtractItem,
    ExtractJob,
    ExtractResult,
    Timings,
    Usage,
)
from qfleet.tasks.settings import Settings
from qfleet.workers.engine.chat import ChatTokenizer, as_data
from qfleet.workers.engine.generation import Sampling
from qfleet.workers.engine.model import LoadedModel
from qfleet.workers.engine.structured import (
    MIN_STATIC_PROMPT_TOKENS,
    GuidedDecoder,
    GuidedOutput,
    SchemaGuide,
)

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
    # A document is data from anywhere: it must not spell its way out of its turn.
    return f"Document:\n{as_data(text)}"


def run_extract(
    model: LoadedModel,
    decoder: GuidedDecoder,
    job: ExtractJob,
    *,
    submitted_at: float | None,
    worker: str,
    settings: Settings | None = None,
) -> ExtractResult:
    """Extract one object per document of `job`, decoding all documents in one batch.

    A document over a size limit (characters, or prompt tokens) fails alone, with the reason;
    the others are decoded.
    """
    started = time.time()
    settings = settings or Settings()
    validator = _validator(job)
    rejected = oversize_documents(job, settings)
    texts = ["" if d.id in rejected else d.text for d in job.documents]
    prompts = _prompts(job, texts, model.tokenizer)
    static_length = _document_independent_length(job, model.tokenizer, prompts)
    cacheable = static_length >= MIN_STATIC_PROMPT_TOKENS
    if cacheable and not model.static_prompts.admit(prompts[0][:static_length]):
        static_length = 0  # one prefix too many for CTranslate2's static-prompt cache
    token_limit = min(
        model.manifest.max_context - job.max_tokens,
        settings.max_prompt_tokens or model.manifest.max_context,
    )
    fits = [
        d.id not in rejected and len(p) <= token_limit
        for d, p in zip(job.documents, prompts, strict=True)
    ]
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
        if document.id in rejected:
            items.append(_failed(document.id, "document_too_large", rejected[document.id], 0, 0))
            continue
        if not ok:
            items.append(
                _too_long(document.id, len(prompt), job, model, settings).model_copy(
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


def _prompts(job: ExtractJob, texts: list[str], tokenizer: ChatTokenizer) -> list[list[int]]:
    return [tokenizer.encode(tokenizer.render(extraction_messages(job, text))) for text in texts]


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
    document_id: str, prompt_tokens: int, job: ExtractJob, model: LoadedModel, settings: Settings
) -> ExtractItem:
    if settings.max_prompt_tokens and prompt_tokens > settings.max_prompt_tokens:
        reason = (
            f"the prompt is {prompt_tokens} tokens; this fleet accepts at most "
            f"{settings.max_prompt_tokens} (QFLEET_MAX_PROMPT_TOKENS)"
        )
    else:
        reason = (
            f"the prompt is {prompt_tokens} tokens and max_tokens is {job.max_tokens}, but "
            f"{model.manifest.model_id} holds {model.manifest.max_context} tokens"
        )
    return _failed(document_id, "prompt_too_long", reason, 0, 0)
