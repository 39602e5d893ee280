"""The extract job body: prompts, one guided batch, reading, one batched repair pass, items.

Pass 1 decodes every document with the relaxed schema (`fields.decode_schema`): the model copies
dates, amounts and enum values as the document writes them, and code reads them. A field whose
spelling cannot be read, or whose value breaks a bound, goes to pass 2: all such rows are decoded
again together, each starting from its own already-decided fields, with that field under the
caller's own constraint (its value is then `repaired`). Every object is checked with jsonschema
(formats asserted) before it is called `succeeded`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from qfleet.tasks.errors import InvalidJobError
from qfleet.tasks.limits import oversize_documents
from qfleet.tasks.schemas import ExtractItem, ExtractJob, ExtractResult, Timings, Usage
from qfleet.tasks.settings import Settings
from qfleet.workers.engine.chat import ChatTokenizer
from qfleet.workers.engine.generation import Sampling
from qfleet.workers.engine.guided import GuidedDecoder, GuidedOutput, GuidedRow
from qfleet.workers.engine.guided_choice import Choice
from qfleet.workers.engine.model import LoadedModel
from qfleet.workers.engine.structured import MIN_STATIC_PROMPT_TOKENS
from qfleet.workers.extraction.choices import closed_choices
from qfleet.workers.extraction.evidence import check_evidence
from qfleet.workers.extraction.fields import decode_schema, properties
from qfleet.workers.extraction.items import (
    Reading,
    build_item,
    check_fields,
    failed_item,
    read_output,
)
from qfleet.workers.extraction.prompt import DEFAULT_STYLE, PromptStyle, extraction_messages
from qfleet.workers.outcomes import DeadlineExceededError, JobCancelledError


@dataclass(frozen=True)
class ExtractPolicy:
    """How documents are prompted and decoded; the defaults are what the ablation kept.

    `style`: the schema shown as a field list or as JSON Schema text. `copy_values`: dates,
    numbers and enum values decoded as the document writes them and read by code (else forced
    into the schema's spelling token by token). `repair_pass`: unreadable fields decoded again
    under their own constraint (else left out, and the item is incomplete). `evidence`: read
    values held to the document (`evidence.py`: an ungrounded nullable string becomes null, a
    list the document writes together is split, the currency agrees with the amounts).
    `calibrate`: booleans and word enums decided by the model's scores weighed against its
    document-free scores (`choices.py`), not by its habit of writing the first option.
    """

    style: PromptStyle = DEFAULT_STYLE
    copy_values: bool = True
    repair_pass: bool = True
    evidence: bool = True
    calibrate: bool = True
    # How rows become engine calls (GuidedDecoder.decode): the defaults are the measured best.
    chunk_rows: int | None = None
    pad: bool = True
    parallel: int | None = None


def run_extract(
    model: LoadedModel,
    decoder: GuidedDecoder,
    job: ExtractJob,
    *,
    submitted_at: float | None,
    worker: str,
    settings: Settings | None = None,
    deadline: float | None = None,
    cancelled: Callable[[], bool] | None = None,
    policy: ExtractPolicy | None = None,
) -> ExtractResult:
    """Extract one object per document of `job`, decoding all documents in one batch.

    A document over a size limit (characters, or prompt tokens) fails alone, with the reason;
    the others are decoded. Past `deadline` (`time.monotonic()`) or once `cancelled()` is true
    the job ends with `DeadlineExceededError` / `JobCancelledError`.
    """
    started = time.time()
    settings = settings or Settings()
    policy = policy or ExtractPolicy()
    style = policy.style
    validator = _validator(job)
    rejected = oversize_documents(job, settings)
    texts = ["" if d.id in rejected else d.text for d in job.documents]
    prompts = _prompts(job, texts, model.tokenizer, style)
    static_length = _document_independent_length(job, model.tokenizer, prompts, style)
    if static_length >= MIN_STATIC_PROMPT_TOKENS and not model.static_prompts.admit(
        prompts[0][:static_length]
    ):
        static_length = 0  # one prefix too many for CTranslate2's static-prompt cache
    fits = _fitting(job, prompts, rejected, model, settings)
    run = _Decoding(decoder, job, validator, static_length, policy, (deadline, cancelled))
    if policy.calibrate and policy.copy_values:
        run.choices = closed_choices(job, model.tokenizer, style)
    decoded = run.decode(
        [p for p, ok in zip(prompts, fits, strict=True) if ok],
        [t for t, ok in zip(texts, fits, strict=True) if ok],
    )
    items = _items(job, (prompts, fits, rejected), decoded, model, settings)
    return _result(job, items, model, worker, (submitted_at, started, run.seconds))


def _items(
    job: ExtractJob,
    planned: tuple[list[list[int]], list[bool], dict[str, str]],
    decoded: list[ExtractItem],
    model: LoadedModel,
    settings: Settings,
) -> list[ExtractItem]:
    """One item per document, in order: decoded, or failed with the reason it was not."""
    prompts, fits, rejected = planned
    items = []
    for document, prompt, ok in zip(job.documents, prompts, fits, strict=True):
        if document.id in rejected:
            items.append(
                failed_item(document.id, "document_too_large", rejected[document.id], 0, 0)
            )
        elif not ok:
            items.append(_too_long(document.id, len(prompt), job, model, settings))
        else:
            items.append(decoded.pop(0).model_copy(update={"id": document.id}))
        items[-1] = items[-1].model_copy(update={"prompt_tokens": len(prompt)})
    return items


def _fitting(
    job: ExtractJob,
    prompts: list[list[int]],
    rejected: dict[str, str],
    model: LoadedModel,
    settings: Settings,
) -> list[bool]:
    """Which documents are decoded: not over a size limit, and their prompt fits."""
    token_limit = min(
        model.manifest.max_context - job.max_tokens,
        settings.max_prompt_tokens or model.manifest.max_context,
    )
    return [
        d.id not in rejected and len(p) <= token_limit
        for d, p in zip(job.documents, prompts, strict=True)
    ]


def _result(
    job: ExtractJob,
    items: list[ExtractItem],
    model: LoadedModel,
    worker: str,
    times: tuple[float | None, float, float],
) -> ExtractResult:
    submitted_at, started, generate_s = times
    finished = time.time()
    completion = sum(i.completion_tokens for i in items)
    submitted = submitted_at if submitted_at is not None else started
    return ExtractResult(
        job_id=job.job_id,
        items=items,
        usage=Usage(
            prompt_tokens=sum(i.prompt_tokens for i in items), completion_tokens=completion
        ),
        timings=Timings(
            queued_ms=max(started - submitted, 0.0) * 1000,
            generate_ms=generate_s * 1000,
            total_ms=max(finished - submitted, 0.0) * 1000,
            tokens_per_s=completion / max(generate_s, 1e-9),
        ),
        model=model.info,
        worker=worker,
    )


class _Decoding:
    """The two passes over one job's documents."""

    def __init__(
        self,
        decoder: GuidedDecoder,
        job: ExtractJob,
        validator: Draft202012Validator,
        static_length: int,
        policy: ExtractPolicy,
        interrupts: tuple[float | None, Callable[[], bool] | None],
    ) -> None:
        self.decoder, self.job, self.validator = decoder, job, validator
        self.static_length, self.policy = static_length, policy
        self.deadline, self.cancelled = interrupts
        self.relaxed = decode_schema(job.json_schema) if policy.copy_values else job.json_schema
        self.choices: dict[str, Choice] = {}
        self.seconds = 0.0

    def decode(self, prompts: list[list[int]], documents: list[str]) -> list[ExtractItem]:
        if not prompts:
            return []
        rows = [
            GuidedRow(p, self.relaxed, self.job.max_tokens, choices=self.choices) for p in prompts
        ]
        outputs = self._run(rows)
        readings = [self._read(o, d) for o, d in zip(outputs, documents, strict=True)]
        again = [
            n
            for n, (o, r) in enumerate(zip(outputs, readings, strict=True))
            if r.unreadable and o.finish_reason == "stop" and o.error is None
        ]
        if again and self.policy.repair_pass:
            retry = [self._repair_row(prompts[n], outputs[n], readings[n]) for n in again]
            for n, output, (_, unread) in zip(
                again, self._run([row for row, _ in retry]), retry, strict=True
            ):
                outputs[n], readings[n] = self._merge(outputs[n], output, unread, documents[n])
        schema = self.job.json_schema
        return [build_item("", o, r, schema) for o, r in zip(outputs, readings, strict=True)]

    def _run(self, rows: list[GuidedRow]) -> list[GuidedOutput]:
        outputs = self.decoder.decode(
            rows,
            sampling=Sampling(temperature=self.job.temperature).options(),
            static_length=self.static_length,
            deadline=self.deadline,
            cancelled=self.cancelled,
            chunk_rows=self.policy.chunk_rows,
            pad=self.policy.pad,
            parallel=self.policy.parallel,
        )
        self.seconds += outputs[0].generate_seconds if outputs else 0.0
        for output in outputs:
            if output.finish_reason == "timeout":
                raise DeadlineExceededError("the job ran past its deadline while decoding")
            if output.finish_reason == "cancelled":
                raise JobCancelledError("the job was cancelled")
        return outputs

    def _read(
        self, output: GuidedOutput, document: str, constrained: Collection[str] = ()
    ) -> Reading:
        return read_row(
            output, self.job.json_schema, document, self.validator,
            evidence=self.policy.evidence, constrained=constrained,
        )  # fmt: skip

    def _repair_row(
        self, prompt: list[int], output: GuidedOutput, reading: Reading
    ) -> tuple[GuidedRow, set[str]]:
        """Pass 2 for one row: its decided fields as a prefix, unread fields constrained."""
        props = properties(self.job.json_schema)
        order = [s.key for s in reading.spans]
        first = min(order.index(k) for k in reading.unreadable if k in order)
        start = reading.spans[first].start
        prefix = output.text[:start]
        schema: dict[str, Any] = dict(self.relaxed)
        schema["properties"] = {
            k: props[k] if k in reading.unreadable else v
            for k, v in self.relaxed["properties"].items()
        }
        row = GuidedRow(prompt, schema, self.job.max_tokens, prefix.encode(), self.choices)
        return row, set(reading.unreadable)

    def _merge(
        self, first: GuidedOutput, output: GuidedOutput, constrained: set[str], document: str
    ) -> tuple[GuidedOutput, Reading]:
        """Pass 2's output, keeping what pass 1 knew about the fields it decided."""
        output.repairs += first.repairs
        output.repaired_fields = sorted({*first.repaired_fields, *output.repaired_fields})
        output.trimmed_fields = sorted({*first.trimmed_fields, *output.trimmed_fields})
        return output, self._read(output, document, constrained)


def _prompts(
    job: ExtractJob, texts: list[str], tokenizer: ChatTokenizer, style: PromptStyle
) -> list[list[int]]:
    return [
        tokenizer.encode(tokenizer.render(extraction_messages(job, text, style))) for text in texts
    ]


def _document_independent_length(
    job: ExtractJob, tokenizer: ChatTokenizer, prompts: list[list[int]], style: PromptStyle
) -> int:
    """How many leading tokens every prompt shares whatever its document says.

    Measured against a probe prompt with an empty document, so a single-document job does not
    cache its document as a static prompt.
    """
    probe = tokenizer.encode(tokenizer.render(extraction_messages(job, "", style)))
    length = min(len(p) for p in [probe, *prompts])
    for n in range(length):
        if any(p[n] != probe[n] for p in prompts):
            return n
    return length


def read_row(
    output: GuidedOutput,
    schema: dict[str, Any],
    document: str,
    validator: Draft202012Validator,
    *,
    evidence: bool = True,
    constrained: Collection[str] = (),
) -> Reading:
    """How a decoded row becomes a reading: read, held to its document, each field checked.

    `constrained`: fields the repair pass decoded under their own constraint (`repaired`).
    """
    reading = read_output(output, schema)
    if evidence:
        check_evidence(reading, schema, document)
    check_fields(reading, validator)
    for key in constrained:
        if key in reading.provenance:
            reading.provenance[key] = "repaired"
    return reading


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
    return failed_item(document_id, "prompt_too_long", reason, 0, 0)
