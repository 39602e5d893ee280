"""`POST /v1/chat/completions`: one interactive generate job per request, waited for or streamed.

A streamed completion is fed from the job's Redis stream as Server-Sent Events
(`chat.completion.chunk` lines, then `data: [DONE]`); a client that goes away cancels its job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import anyio
from anyio.to_thread import run_sync
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from qfleet.producer.gateway.auth import Caller, StateDep
from qfleet.producer.gateway.catalog import ModelKind
from qfleet.producer.gateway.chat_jobs import completion, completion_id, generate_job, job_failure
from qfleet.producer.gateway.chat_types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChoiceDelta,
    ChunkChoice,
    CompletionUsage,
    QfleetInfo,
)
from qfleet.producer.gateway.deps import LimitedCallerDep
from qfleet.producer.gateway.errors import ApiError, ErrorDetail, ErrorResponse
from qfleet.producer.gateway.jobwait import Outcome
from qfleet.producer.gateway.state import GatewayState
from qfleet.producer.gateway.tenancy import start_job
from qfleet.tasks.errors import JobFailedError, JobTimeoutError
from qfleet.tasks.schemas import GenerateJob, JobError, JobResult

log = logging.getLogger("qfleet.gateway")
router = APIRouter(tags=["chat"])
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses={200: {"model": ChatCompletion, "description": "A completion (or, streamed, SSE)"}},
)
async def create_chat_completion(
    body: ChatCompletionRequest, caller: LimitedCallerDep, state: StateDep, request: Request
) -> Response:
    """Answer a conversation (OpenAI's chat completions), waited for or streamed."""
    job = generate_job(body, state.settings)
    await check_model(state, body.model, "chat")
    await run_sync(start_job, state, caller, job)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = stream_events(state, caller, job, body.model, include_usage)
        return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
    try:
        outcome = await wait_unless_gone(state, request, job.job_id)
    except JobTimeoutError as exc:
        raise ApiError(504, str(exc), code="timeout") from exc
    finally:
        await state.limits.end_job_async(caller.tenant, job.job_id, state.jobs.redis)
    if isinstance(outcome, JobError):
        raise job_failure(JobFailedError(outcome))
    assert isinstance(outcome, JobResult)  # a generate job's id holds a generate result
    # Serialised by pydantic directly: FastAPI's generic encoder costs more than the request.
    answer = completion(job, outcome, body.model)
    return Response(answer.model_dump_json(), media_type="application/json")


async def wait_unless_gone(state: GatewayState, request: Request, job_id: str) -> Outcome:
    """The job's outcome; if the client disconnects first, the job is cancelled (and 499)."""
    outcome: Outcome | None = None
    failure: Exception | None = None
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            # The body has been read: what the server receives next is the client going away.
            while (await request.receive())["type"] != "http.disconnect":
                pass
            log.info("client left while waiting for job %s: cancelling it", job_id)
            try:
                await run_sync(state.fleet.cancel, job_id)
            except Exception:  # the job runs on; nobody is left to tell
                log.warning("could not cancel job %s", job_id, exc_info=True)
            group.cancel_scope.cancel()

        group.start_soon(watch)
        try:
            outcome = await state.jobs.wait(job_id, state.settings.gateway_job_timeout_s)
        except Exception as exc:  # raised below, outside the group (no ExceptionGroup)
            failure = exc
        group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if outcome is None:
        raise ApiError(
            499, "the client closed the request; its job was cancelled", code="cancelled"
        )
    return outcome


async def check_model(state: GatewayState, model: str, kind: ModelKind) -> None:
    """404 `model_not_found` unless a live worker serves `model` (503 when none answers)."""
    found = state.catalog.cached(model, kind) or await run_sync(state.catalog.find, model, kind)
    if found is not None:
        return
    if not state.catalog.models():
        raise ApiError(503, "no live worker answered; try again", code="no_workers")
    raise ApiError(
        404,
        f"The model `{model}` does not exist or no live worker serves it (see GET /v1/models)",
        param="model",
        code="model_not_found",
    )


async def stream_events(
    state: GatewayState, caller: Caller, job: GenerateJob, model: str, include_usage: bool
) -> AsyncIterator[str]:
    """The SSE lines of a streamed completion; cancels the job if the client leaves early."""
    chunk = _Chunker(completion_id(job.job_id), model)
    finished = False
    try:
        yield chunk.event(ChoiceDelta(role="assistant", content=""))
        async for piece in state.jobs.pieces(job.job_id, state.settings.gateway_job_timeout_s):
            # No piece for a while: an SSE comment keeps proxies open and notices a gone client.
            yield ": keep-alive\n\n" if piece is None else chunk.event(ChoiceDelta(content=piece))
        outcome = await state.jobs.wait(job.job_id, timeout=10)
        finished = True
        if isinstance(outcome, JobResult):
            yield chunk.last(outcome, include_usage)
    except (JobFailedError, JobTimeoutError) as exc:
        finished = True
        yield _error_event(exc)
    finally:
        with anyio.CancelScope(shield=True):
            if not finished:
                log.info("client left the stream of job %s: cancelling it", job.job_id)
                await run_sync(state.fleet.cancel, job.job_id)
            await state.limits.end_job_async(caller.tenant, job.job_id, state.jobs.redis)
    yield "data: [DONE]\n\n"


class _Chunker:
    """Builds the chunk events of one completion."""

    def __init__(self, chunk_id: str, model: str) -> None:
        self.id = chunk_id
        self.model = model
        self.created = int(time.time())

    def event(self, delta: ChoiceDelta, finish_reason: str | None = None, **extra: object) -> str:
        choices = [] if extra.get("usage") else [
            ChunkChoice(delta=delta, finish_reason=finish_reason)
        ]  # fmt: skip
        chunk = ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=choices, **extra
        )
        return f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"

    def last(self, result: JobResult, include_usage: bool) -> str:
        info = QfleetInfo(
            job_id=result.job_id, worker=result.worker, cached=result.cached, sources=result.sources
        )
        events = self.event(ChoiceDelta(), result.finish_reason, qfleet=info)
        if include_usage:
            usage = CompletionUsage(
                prompt_tokens=result.usage.prompt_tokens,
                completion_tokens=result.usage.completion_tokens,
                total_tokens=result.usage.prompt_tokens + result.usage.completion_tokens,
            )
            events += self.event(ChoiceDelta(), usage=usage)
        return events


def _error_event(exc: JobFailedError | JobTimeoutError) -> str:
    if isinstance(exc, JobFailedError):
        error = ApiError(500, exc.error.message, code=exc.error.code)
    else:
        error = ApiError(504, str(exc), code="timeout")
    detail = ErrorDetail(message=error.message, type="api_error", code=error.code)
    return f"data: {ErrorResponse(error=detail).model_dump_json()}\n\n"
