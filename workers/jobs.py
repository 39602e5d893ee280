"""Task bodies: validate the payload, call the engine, shape the result. Thin on purpose."""

from __future__ import annotations

import logging
import time

from qfleet.tasks.errors import PromptTooLongError, QfleetError
from qfleet.tasks.schemas import (
    GenerateJob,
    JobError,
    JobResult,
    Timings,
    Usage,
)
from qfleet.workers.engine.batcher import DynamicBatcher
from qfleet.workers.engine.chat import ChatPrompt
from qfleet.workers.engine.generation import GenerationRequest, Sampling, TextSink

log = logging.getLogger(__name__)


def run_generate(
    batcher: DynamicBatcher,
    job: GenerateJob,
    *,
    submitted_at: float | None,
    worker: str,
    on_text: TextSink | None = None,
    max_prompt_tokens: int = 0,
) -> JobResult:
    """Generate the answer to `job` through the worker's batcher.

    `max_prompt_tokens` is the fleet's prompt limit in tokens (0: the model's context only);
    only the worker can count tokens, so this limit is enforced here alone.
    """
    started = time.time()
    model = batcher.model
    prompt = model.tokenizer.encode_chat(job.chat())
    if prompt.static_ids and not model.static_prompts.admit(prompt.static_ids):
        prompt = ChatPrompt([], [*prompt.static_ids, *prompt.ids])
    if max_prompt_tokens and prompt.total > max_prompt_tokens:
        raise PromptTooLongError(
            f"prompt is {prompt.total} tokens; this fleet accepts at most {max_prompt_tokens} "
            "(QFLEET_MAX_PROMPT_TOKENS)"
        )
    budget = model.manifest.max_context - prompt.total
    if job.max_tokens > budget:
        raise PromptTooLongError(
            f"prompt is {prompt.total} tokens and max_tokens is {job.max_tokens}, but "
            f"{model.manifest.model_id} holds {model.manifest.max_context} tokens; shorten the "
            f"prompt or lower max_tokens to at most {max(budget, 0)}"
        )
    request = GenerationRequest(
        prompt_ids=prompt.ids,
        static_prompt_ids=prompt.static_ids,
        max_new_tokens=job.max_tokens,
        stop=job.stop,
        on_text=on_text,
        # The job's priority is its engine lane: bulk rows give way to interactive ones.
        lane="bulk" if job.priority == "bulk" else "interactive",
    )
    sampling = Sampling(temperature=job.temperature, top_p=job.top_p, top_k=job.top_k)
    output = batcher.generate(request, sampling)
    finished = time.time()
    submitted = submitted_at if submitted_at is not None else started
    return JobResult(
        job_id=job.job_id,
        text=output.text,
        finish_reason=output.finish_reason,
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


def error_result(exc: Exception, *, job_id: str, worker: str) -> JobError:
    """The `JobError` a caller sees for `exc`; unexpected errors are logged with their traceback."""
    if isinstance(exc, QfleetError):
        log.warning("job %s failed: %s: %s", job_id, exc.code, exc)
        return JobError(
            job_id=job_id, code=exc.code, message=str(exc), retryable=exc.retryable, worker=worker
        )
    log.exception("job %s failed with an unexpected error", job_id)
    return JobError(
        job_id=job_id,
        code="internal",
        message=f"the worker failed unexpectedly ({type(exc).__name__}: {exc}); see worker logs",
        retryable=False,
        worker=worker,
    )
