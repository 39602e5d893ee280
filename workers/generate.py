"""The generate task (`qfleet.generate`): validate, answer through the cache or the engine.

A generate job with retrieval reaches here second, with the passages the retrieve step found
(`workers/retrieve.py`); the answer cache (`workers/answer_cache.py`) answers a greedy twin of
an earlier job without generating.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from typing import Any

from celery import shared_task

from qfleet.tasks.constants import TASK_GENERATE
from qfleet.tasks.errors import PromptTooLongError
from qfleet.tasks.limits import parse_generate_job
from qfleet.tasks.schemas import FinishReason, GenerateJob, JobResult, Timings, Usage
from qfleet.workers.answer_cache import AnswerCache
from qfleet.workers.context import WorkerContext
from qfleet.workers.engine.batcher import DynamicBatcher
from qfleet.workers.engine.chat import ChatPrompt
from qfleet.workers.engine.generation import (
    GenerationOutput,
    GenerationRequest,
    Sampling,
    TextSink,
)
from qfleet.workers.knowledge.rag import answer, parse_context
from qfleet.workers.outcomes import DeadlineExceededError, JobCancelledError
from qfleet.workers.policy import JobContext, JobTask
from qfleet.workers.streaming import TokenStream
from qfleet.workers.structured_generate import run_structured_generate

log = logging.getLogger("qfleet.worker")

# How often a job thread waiting on the engine looks at its job's cancel flag and deadline. The
# engine itself stops a cancelled or late row at its next token and answers it; this is the
# fallback, as often as cancels are looked for (cancel_poll_s). Every wake-up takes the GIL
# that the engine's per-token callbacks need: 40 threads at 50 ms were 800 a second.
WAIT_POLL_S = 0.25


@shared_task(base=JobTask, name=TASK_GENERATE, bind=True)
def generate_task(
    self: JobTask,
    ctx: JobContext,
    job: Any = None,
    submitted_at: float | None = None,
    context: Any = None,
) -> JobResult:
    """Run one generate job; the policy turns its outcome into a `JobResult` or a `JobError`.

    `context` carries the passages of a job that asked for retrieval (see workers/retrieve.py).
    """
    worker = self.context
    parsed = parse_generate_job(job, worker.settings)
    stream = None
    if parsed.stream:
        stream = TokenStream(worker.redis, ctx.job_id, worker.settings.redis_key_prefix)
    try:
        result = generate_with_knowledge(worker, parsed, context, ctx, stream)
    except Exception as exc:
        if stream is not None:
            stream.close(f"error:{getattr(exc, 'code', 'internal')}")
        raise
    if stream is not None:
        if result.cached:  # answered without generating: stream the whole text at once
            stream.push(result.text)
        stream.close(result.finish_reason)
    log.info(
        "job %s done: %d tokens in %.0f ms (%s, batch of %d)",
        ctx.job_id,
        result.usage.completion_tokens,
        result.timings.generate_ms,
        result.finish_reason,
        result.batch_size,
    )
    return result


def generate_with_knowledge(
    worker: WorkerContext,
    job: GenerateJob,
    context: Any,
    ctx: JobContext,
    stream: TokenStream | None,
) -> JobResult:
    """Answer `job` with its retrieved passages (if any), through the answer cache."""
    settings = worker.settings
    cache = None
    if settings.answer_cache_ttl_s > 0:
        cache = AnswerCache(
            worker.redis, key_prefix=settings.redis_key_prefix, ttl_s=settings.answer_cache_ttl_s
        )
    info = worker.runtime.model.info

    def run(augmented: GenerateJob) -> JobResult:
        on_text = stream.push if stream else None
        if augmented.structured:  # json_schema / json_object: the schema-guided decoder
            return run_structured_generate(
                worker.runtime.model,
                settings.model_dir,
                augmented,
                submitted_at=ctx.submitted_at,
                worker=ctx.worker,
                on_text=on_text,
                max_prompt_tokens=settings.max_prompt_tokens,
                deadline=ctx.deadline,
                cancelled=ctx.cancelled,
            )
        return run_generate(
            worker.runtime.batcher,
            augmented,
            submitted_at=ctx.submitted_at,
            worker=ctx.worker,
            on_text=on_text,
            max_prompt_tokens=settings.max_prompt_tokens,
            ctx=ctx,
        )

    return answer(
        job,
        parse_context(context),
        run,
        cache=cache,
        model=f"{info.id}/{info.compute_type}",
        worker=ctx.worker,
    )


def run_generate(
    batcher: DynamicBatcher,
    job: GenerateJob,
    *,
    submitted_at: float | None,
    worker: str,
    on_text: TextSink | None = None,
    max_prompt_tokens: int = 0,
    ctx: JobContext | None = None,
) -> JobResult:
    """Generate the answer to `job` through the worker's batcher.

    `max_prompt_tokens` is the fleet's prompt limit in tokens (0: the model's context only);
    only the worker can count tokens, so this limit is enforced here alone. With `ctx`, the row
    stops at the job's deadline (a `timeout` JobError) or when it is cancelled (`cancelled`);
    its batch-mates go on.
    """
    started = time.time()
    model = batcher.model
    prompt = model.tokenizer.encode_chat(job.chat())
    if prompt.static_ids and not model.static_prompts.admit(prompt.static_ids):
        prompt = ChatPrompt([], [*prompt.static_ids, *prompt.ids])
    _check_fits(job, prompt, max_prompt_tokens, model.manifest.max_context, model.manifest.model_id)
    request = _request(job, prompt, on_text, ctx)
    sampling = Sampling(temperature=job.temperature, top_p=job.top_p, top_k=job.top_k)
    output = _wait(batcher.submit(request, sampling), ctx)
    finish_reason = _settled(output)
    finished = time.time()
    submitted = submitted_at if submitted_at is not None else started
    return JobResult(
        job_id=job.job_id,
        text=output.text,
        finish_reason=finish_reason,
        usage=Usage(prompt_tokens=prompt.total, completion_tokens=len(output.token_ids)),
        timings=Timings(
            queued_ms=max(started - submitted, 0.0) * 1000,
            generate_ms=output.generate_seconds * 1000,
            total_ms=max(finished - submitted, 0.0) * 1000,
            tokens_per_s=len(output.token_ids) / max(output.generate_seconds, 1e-9),
        ),
        model=model.info,
        worker=worker,
        batch_size=output.batch_size,
    )


def _request(
    job: GenerateJob, prompt: ChatPrompt, on_text: TextSink | None, ctx: JobContext | None
) -> GenerationRequest:
    """The engine's view of `job`: its lane (interactive or bulk), deadline and cancel check."""
    return GenerationRequest(
        prompt_ids=prompt.ids,
        static_prompt_ids=prompt.static_ids,
        max_new_tokens=job.max_tokens,
        stop=job.stop,
        on_text=on_text,
        lane=job.priority,
        deadline=ctx.deadline if ctx else None,
        cancelled=ctx.cancelled if ctx else None,
    )


def _check_fits(
    job: GenerateJob, prompt: ChatPrompt, max_prompt_tokens: int, context: int, model_id: str
) -> None:
    if max_prompt_tokens and prompt.total > max_prompt_tokens:
        raise PromptTooLongError(
            f"prompt is {prompt.total} tokens; this fleet accepts at most {max_prompt_tokens} "
            "(QFLEET_MAX_PROMPT_TOKENS)"
        )
    budget = context - prompt.total
    if job.max_tokens > budget:
        raise PromptTooLongError(
            f"prompt is {prompt.total} tokens and max_tokens is {job.max_tokens}, but "
            f"{model_id} holds {context} tokens; shorten the prompt or lower max_tokens to at "
            f"most {max(budget, 0)}"
        )


def _wait(future: Future[GenerationOutput], ctx: JobContext | None) -> GenerationOutput:
    """The row's output; a cancelled or timed-out job answers now, not when its batch ends.

    The engine stops the row itself at its next token (its `cancelled`/`deadline`); the job
    thread need not wait for the batch-mates that keep the engine call going.
    """
    while True:
        try:
            return future.result(timeout=WAIT_POLL_S)
        except TimeoutError:
            if ctx is None:
                continue
            if ctx.cancelled():
                raise JobCancelledError("the job was cancelled while it generated") from None
            if ctx.deadline is not None and time.monotonic() > ctx.deadline:
                raise DeadlineExceededError(
                    "the job ran past its soft time limit while it generated "
                    "(QFLEET_TASK_SOFT_TIME_LIMIT_S)"
                ) from None


def _settled(output: GenerationOutput) -> FinishReason:
    """The job's finish reason; a row the worker stopped raises the matching JobError."""
    reason = output.finish_reason
    if reason == "cancelled":
        raise JobCancelledError(
            f"the job was cancelled after {len(output.token_ids)} generated tokens"
        )
    if reason == "timeout":
        raise DeadlineExceededError(
            f"the job ran past its soft time limit after {len(output.token_ids)} generated "
            "tokens (QFLEET_TASK_SOFT_TIME_LIMIT_S)"
        )
    return reason
