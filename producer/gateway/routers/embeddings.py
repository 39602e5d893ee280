"""`POST /v1/embeddings`: the knowledge base's embedder, as a `qfleet.embed` job.

The job runs on the worker that consumes the knowledge queue (it has the embedder); vectors are
L2-normalised. `encoding_format: base64` (what the official SDK asks for by default) packs them
as little-endian float32, as OpenAI does.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Literal

from anyio.to_thread import run_sync
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from qfleet.producer.gateway.auth import Caller, StateDep
from qfleet.producer.gateway.chat_jobs import job_failure
from qfleet.producer.gateway.deps import LimitedCallerDep
from qfleet.producer.gateway.errors import ApiError
from qfleet.producer.gateway.routers.chat import check_model
from qfleet.producer.gateway.state import GatewayState
from qfleet.tasks.constants import PRIORITY_INTERACTIVE, QUEUE_RETRIEVE, TASK_EMBED
from qfleet.tasks.embeddings import MAX_EMBED_CHARS, EmbedJob, EmbedResult
from qfleet.tasks.errors import BrokerUnavailableError, JobFailedError, JobTimeoutError
from qfleet.tasks.schemas import JobError

router = APIRouter(tags=["embeddings"])


class EmbeddingCreateRequest(BaseModel):
    """`POST /v1/embeddings` body."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class Embedding(BaseModel):
    """One input's vector."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    """Tokens the embedder read."""

    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(BaseModel):
    """`POST /v1/embeddings` answer."""

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


def _texts(body: EmbeddingCreateRequest, limit: int) -> list[str]:
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or not all(isinstance(t, str) and t for t in texts):
        raise ApiError(
            400, "input must be a non-empty string or list of non-empty strings (token arrays "
            "are not supported)", param="input", code="invalid_value",
        )  # fmt: skip
    if len(texts) > limit:
        raise ApiError(
            400, f"{len(texts)} inputs; at most {limit} per request "
            "(QFLEET_GATEWAY_MAX_EMBEDDING_INPUTS)", param="input", code="invalid_value",
        )  # fmt: skip
    if any(len(str(t)) > MAX_EMBED_CHARS for t in texts):
        raise ApiError(
            400, f"an input is over {MAX_EMBED_CHARS} characters", param="input",
            code="invalid_value",
        )  # fmt: skip
    return [str(t) for t in texts]


@router.post("/v1/embeddings")
async def create_embeddings(
    body: EmbeddingCreateRequest, caller: LimitedCallerDep, state: StateDep
) -> CreateEmbeddingResponse:
    """Vectors of the input texts, by the knowledge base's embedder."""
    job = EmbedJob(input=_texts(body, state.settings.gateway_max_embedding_inputs))
    await check_model(state, body.model, "embedding")
    await run_sync(_submit, state, caller, job)
    try:
        result = await _wait(state, job.job_id)
    finally:
        await state.limits.end_job_async(caller.tenant, job.job_id, state.jobs.redis)
    if body.dimensions is not None and body.dimensions != result.dim:
        raise ApiError(
            400, f"{result.model} gives {result.dim} dimensions only", param="dimensions",
            code="unsupported_value",
        )  # fmt: skip
    return CreateEmbeddingResponse(
        data=[
            Embedding(index=i, embedding=_encode(v, body.encoding_format))
            for i, v in enumerate(result.vectors)
        ],
        model=result.model,
        usage=EmbeddingUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens),
    )


def _submit(state: GatewayState, caller: Caller, job: EmbedJob) -> None:
    state.limits.start_job(caller.tenant, job.job_id)
    try:
        state.owners.claim(job.job_id, caller.tenant)
        state.fleet.app.send_task(
            TASK_EMBED, kwargs={"job": job.model_dump(mode="json")}, task_id=job.job_id,
            queue=QUEUE_RETRIEVE, priority=PRIORITY_INTERACTIVE,
        )  # fmt: skip
    except Exception as exc:
        state.limits.end_job(caller.tenant, job.job_id)
        raise BrokerUnavailableError(f"could not use the broker: {exc}") from exc


async def _wait(state: GatewayState, job_id: str) -> EmbedResult:
    data: Any = None
    try:
        data = await state.jobs.wait_data(job_id, state.settings.gateway_job_timeout_s)
    except JobTimeoutError as exc:
        raise ApiError(504, str(exc), code="timeout") from exc
    if data.get("status") == "failed":
        raise job_failure(JobFailedError(JobError.model_validate(data)))
    return EmbedResult.model_validate(data)


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector
