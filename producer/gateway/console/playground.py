"""The Playground: a chat that streams tokens as Server-Sent Events, and a one-document extraction.

A chat turn is a `GenerateJob` (with `stream=True`, and retrieval when asked) submitted through
`FleetClient`; its pieces are read from the job's Redis stream (`FleetClient.stream`) in a thread
and sent as `token` events. A chat with a JSON schema is answered by the schema-guided decoder
instead (an `ExtractJob` over the last user turn), which does not stream: one `done` event
carries the object. While nothing arrives the page is told why (`status` events), so a job
waiting for a worker that does not exist reads as such, not as a spinner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import anyio
from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from qfleet.producer.client import BROKER_ERRORS
from qfleet.producer.gateway.auth import CallerDep, StateDep
from qfleet.producer.gateway.console import fleet as fleet_view
from qfleet.producer.gateway.console.route import ConsoleRoute
from qfleet.producer.gateway.errors import ApiError
from qfleet.producer.gateway.state import GatewayState
from qfleet.tasks.constants import QUEUE_EXTRACT, QUEUE_GENERATE, QUEUE_RETRIEVE
from qfleet.tasks.errors import JobFailedError, JobTimeoutError, QfleetError
from qfleet.tasks.retrieval import RetrievalSpec
from qfleet.tasks.schemas import (
    ChatMessage,
    ExtractJob,
    ExtractResult,
    GenerateJob,
    JobResult,
    validate_job,
)

JOB_TIMEOUT_S: Final = 120.0
# Seconds without a token before the page is told where the job waits (and again every so often).
QUIET_S: Final = 3.0

router = APIRouter(route_class=ConsoleRoute)


class ChatRequest(BaseModel):
    """One chat turn from the Playground."""

    messages: list[ChatMessage] = Field(min_length=1, max_length=64)
    max_tokens: int = Field(default=256, ge=1, le=4_096)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list, max_length=4)
    json_schema: dict[str, Any] | None = None
    retrieval: bool = False
    top_k: int = Field(default=4, ge=1, le=20)


class ExtractRequest(BaseModel):
    """A pasted document and a pasted schema."""

    document: str = Field(min_length=1, max_length=100_000)
    json_schema: dict[str, Any]
    instructions: str | None = Field(default=None, max_length=4_000)
    max_tokens: int = Field(default=512, ge=1, le=4_096)


@router.post("/playground/chat")
async def chat(body: ChatRequest, caller: CallerDep, state: StateDep) -> StreamingResponse:
    """Stream the answer as SSE events: job, status, token..., then done or error."""
    job = _chat_job(body)
    job_id = await anyio.to_thread.run_sync(_submit, state, job, caller.tenant)
    queue = _first_queue(job)
    return StreamingResponse(
        _events(state, job, job_id, queue),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


@router.post("/playground/extract")
def extract(body: ExtractRequest, caller: CallerDep, state: StateDep) -> ExtractResult:
    """Extract one object from the document; waits for the worker (a bounded time)."""
    job = validate_job({
        "kind": "extract", "documents": [{"id": "document", "text": body.document}],
        "json_schema": body.json_schema, "instructions": body.instructions,
        "max_tokens": body.max_tokens,
    })  # fmt: skip
    job_id = _submit(state, job, caller.tenant)
    try:
        result = state.fleet.wait(job_id, timeout=JOB_TIMEOUT_S)
    except JobFailedError as exc:
        raise ApiError(400, f"{exc.error.code}: {exc.error.message}", code=exc.error.code) from exc
    except JobTimeoutError as exc:
        raise ApiError(
            504, _waiting_reason(state, QUEUE_EXTRACT, JOB_TIMEOUT_S), code="timeout"
        ) from exc
    assert isinstance(result, ExtractResult)  # an extract job's id holds an extract result
    return result


def _chat_job(body: ChatRequest) -> GenerateJob | ExtractJob:
    """The job a chat turn becomes; `InvalidJobError` (a 400 naming the problem) if none can."""
    if body.json_schema is not None:
        users = [m for m in body.messages if m.role == "user"]
        systems = [m.content for m in body.messages if m.role == "system"]
        if not users:
            raise ApiError(400, "a chat with a JSON schema needs a user message", param="messages")
        return validate_job({
            "kind": "extract", "documents": [{"id": "answer", "text": users[-1].content}],
            "json_schema": body.json_schema, "instructions": "\n".join(systems) or None,
            "max_tokens": body.max_tokens, "temperature": body.temperature,
        })  # fmt: skip
    return validate_job({
        "messages": [m.model_dump() for m in body.messages], "max_tokens": body.max_tokens,
        "temperature": body.temperature, "top_p": body.top_p, "stop": body.stop, "stream": True,
        "priority": "interactive",
        "retrieval": RetrievalSpec(top_k=body.top_k).model_dump() if body.retrieval else None,
    })  # fmt: skip


def _first_queue(job: GenerateJob | ExtractJob) -> str:
    if isinstance(job, ExtractJob):
        return QUEUE_EXTRACT
    return QUEUE_RETRIEVE if job.retrieval is not None else QUEUE_GENERATE


def _submit(state: GatewayState, job: GenerateJob | ExtractJob, tenant: str) -> str:
    job_id = state.fleet.submit(job)
    with contextlib.suppress(*BROKER_ERRORS):
        state.owners.claim(job_id, tenant)
    return job_id


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def _events(
    state: GatewayState, job: GenerateJob | ExtractJob, job_id: str, queue: str
) -> AsyncIterator[str]:
    """The job's SSE events; a client that goes away cancels its job."""
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    stop = threading.Event()

    def post(event: str, data: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(inbox.put_nowait, (event, data))

    reader = _read_extract if isinstance(job, ExtractJob) else _read_stream
    threading.Thread(target=reader, args=(state, job_id, post, stop), daemon=True).start()
    yield _sse("job", {"job_id": job_id, "queue": queue})
    finished, started = False, time.monotonic()
    try:
        while not finished:
            try:
                event, data = await asyncio.wait_for(inbox.get(), timeout=QUIET_S)
            except TimeoutError:
                waited = time.monotonic() - started
                reason = await anyio.to_thread.run_sync(_waiting_reason, state, queue, waited)
                yield _sse("status", {"message": reason})
                continue
            finished = event in ("done", "error")
            yield _sse(event, data)
    finally:
        stop.set()
        if not finished:
            with contextlib.suppress(*BROKER_ERRORS):
                state.fleet.cancel(job_id)


def _read_stream(state: GatewayState, job_id: str, post: Any, stop: threading.Event) -> None:
    try:
        for piece in state.fleet.stream(job_id, timeout=JOB_TIMEOUT_S):
            if stop.is_set():
                return
            post("token", {"t": piece})
        result = state.fleet.result(job_id)
        post("done", _done(result) if isinstance(result, JobResult) else {})
    except JobFailedError as exc:
        post("error", {"code": exc.error.code, "message": exc.error.message})
    except (QfleetError, *BROKER_ERRORS) as exc:
        post("error", {"code": getattr(exc, "code", "unavailable"), "message": str(exc)})


def _read_extract(state: GatewayState, job_id: str, post: Any, stop: threading.Event) -> None:
    del stop  # one answer at the end: nothing to interrupt
    try:
        result = state.fleet.wait(job_id, timeout=JOB_TIMEOUT_S)
        assert isinstance(result, ExtractResult)
        item = result.items[0]
        post("done", {
            "object": item.object, "status": item.status, "error": item.error,
            "finish_reason": item.finish_reason, "worker": result.worker,
            "model": result.model.id, "usage": result.usage.model_dump(),
        })  # fmt: skip
    except JobFailedError as exc:
        post("error", {"code": exc.error.code, "message": exc.error.message})
    except (QfleetError, *BROKER_ERRORS) as exc:
        post("error", {"code": getattr(exc, "code", "unavailable"), "message": str(exc)})


def _done(result: JobResult) -> dict[str, Any]:
    return {
        "finish_reason": result.finish_reason,
        "usage": result.usage.model_dump(),
        "tokens_per_s": round(result.timings.tokens_per_s, 1),
        "worker": result.worker,
        "model": result.model.id,
        "cached": result.cached,
        "sources": [s.model_dump(mode="json") for s in result.sources],
    }


def _waiting_reason(state: GatewayState, queue: str, waited: float) -> str:
    """Why a job has no answer yet, in words an operator can act on."""
    try:
        status = fleet_view.cached_status(state)
    except BROKER_ERRORS:
        return f"no answer after {waited:.0f}s, and Redis does not answer"
    consumers = [w.name for w in status.workers if queue in w.queues]
    if not consumers:
        return (
            f"no worker consumes {queue}: the job waits in the queue until one starts "
            f"({waited:.0f}s so far)"
        )
    return f"queued on {queue} for {waited:.0f}s; {len(consumers)} worker(s) busy with other jobs"
