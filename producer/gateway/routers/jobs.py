"""qfleet's own jobs over HTTP (`/v1/qfleet/...`): extraction, and any job's status, result,
stream and cancellation by id.

Every job the gateway submits is recorded with its tenant; reading another tenant's job id
answers 404, as if it did not exist.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from anyio.to_thread import run_sync
from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from qfleet.producer.gateway.auth import StateDep
from qfleet.producer.gateway.deps import LimitedCallerDep
from qfleet.producer.gateway.errors import ApiError
from qfleet.producer.gateway.routers.chat import SSE_HEADERS
from qfleet.producer.gateway.state import GatewayState
from qfleet.producer.gateway.tenancy import start_job
from qfleet.tasks.errors import JobFailedError, JobTimeoutError
from qfleet.tasks.extract_schema import UnsupportedSchemaError
from qfleet.tasks.limits import parse_extract_job
from qfleet.tasks.schemas import (
    MAX_DOCUMENTS_PER_JOB,
    MAX_EXAMPLES,
    MAX_NEW_TOKENS,
    ExtractDocument,
    ExtractExample,
)

router = APIRouter(prefix="/v1/qfleet", tags=["qfleet jobs"])


class ExtractionRequest(BaseModel):
    """Documents and a JSON Schema: one object per document that validates against it."""

    model_config = ConfigDict(extra="forbid")

    documents: list[ExtractDocument] = Field(min_length=1, max_length=MAX_DOCUMENTS_PER_JOB)
    json_schema: dict[str, Any]
    instructions: str | None = None
    examples: list[ExtractExample] = Field(default_factory=list, max_length=MAX_EXAMPLES)
    max_tokens: int = Field(default=512, ge=1, le=MAX_NEW_TOKENS)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    wait: bool = Field(default=True, description="Answer with the result (else 202 and an id).")


class JobStatus(BaseModel):
    """Where a job is."""

    id: str
    object: Literal["qfleet.job"] = "qfleet.job"
    status: str


@router.post("/extractions", response_model=None)
async def create_extraction(
    body: ExtractionRequest, caller: LimitedCallerDep, state: StateDep
) -> Any:
    """Submit an extraction job; with `wait` (default) answer with its result."""
    try:
        job = parse_extract_job(body.model_dump(mode="json", exclude={"wait"}), state.settings)
    except UnsupportedSchemaError as exc:
        raise ApiError(400, str(exc), param="json_schema", code="unsupported_schema") from exc
    await run_sync(start_job, state, caller, job)
    if not body.wait:
        return JSONResponse(JobStatus(id=job.job_id, status="queued").model_dump(), 202)
    try:
        return await state.jobs.wait_data(job.job_id, state.settings.gateway_job_timeout_s)
    except JobTimeoutError as exc:
        raise ApiError(504, str(exc), code="timeout") from exc
    finally:
        await state.limits.end_job_async(caller.tenant, job.job_id, state.jobs.redis)


@router.get("/jobs/{job_id}")
async def job_status(job_id: str, caller: LimitedCallerDep, state: StateDep) -> JobStatus:
    """unknown, queued, running, succeeded or failed."""
    await run_sync(state.owners.check, caller, job_id)
    return JobStatus(id=job_id, status=await run_sync(state.fleet.status, job_id))


@router.get("/jobs/{job_id}/result", response_model=None)
async def job_result(job_id: str, caller: LimitedCallerDep, state: StateDep) -> Any:
    """The job's outcome as qfleet stores it (a result or a `JobError`); 202 while it runs."""
    await run_sync(state.owners.check, caller, job_id)
    data = await state.jobs.outcome(job_id)
    if data is None:
        status = await run_sync(state.fleet.status, job_id)
        return JSONResponse(JobStatus(id=job_id, status=status).model_dump(), 202)
    return data


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, caller: LimitedCallerDep, state: StateDep) -> JobStatus:
    """Ask the fleet to stop the job (a finished job keeps its result)."""
    await run_sync(state.owners.check, caller, job_id)
    await run_sync(state.fleet.cancel, job_id)
    return JobStatus(id=job_id, status=await run_sync(state.fleet.status, job_id))


@router.get("/jobs/{job_id}/stream")
async def job_stream(job_id: str, caller: LimitedCallerDep, state: StateDep) -> StreamingResponse:
    """The job's text as Server-Sent Events: `data: {"text": ...}` lines, then `data: [DONE]`."""
    await run_sync(state.owners.check, caller, job_id)
    return StreamingResponse(
        _text_events(state, job_id), media_type="text/event-stream", headers=SSE_HEADERS
    )


async def _text_events(state: GatewayState, job_id: str) -> AsyncIterator[str]:
    try:
        async for piece in state.jobs.pieces(job_id, state.settings.gateway_job_timeout_s):
            yield (
                ": keep-alive\n\n" if piece is None else f"data: {json.dumps({'text': piece})}\n\n"
            )
    except JobFailedError as exc:
        error = {"message": exc.error.message, "type": "api_error", "code": exc.error.code}
        yield f"data: {json.dumps({'error': error})}\n\n"
    except JobTimeoutError as exc:
        yield f"data: {json.dumps({'error': {'message': str(exc), 'code': 'timeout'}})}\n\n"
    yield "data: [DONE]\n\n"
