"""The knowledge base over HTTP (`/v1/qfleet/knowledge`): ingest, search, versions, rollback.

The knowledge base is the fleet's, shared by every tenant: any key may search it and read its
versions; changing it (ingest, rollback) needs an admin key (`qfleet keys create --admin`).
Each call is a knowledge job (`KnowledgeClient`), waited for up to the gateway's job timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from anyio.to_thread import run_sync
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from qfleet.producer.gateway.auth import Caller, StateDep
from qfleet.producer.gateway.chat_jobs import job_failure
from qfleet.producer.gateway.deps import LimitedCallerDep
from qfleet.producer.gateway.errors import ApiError
from qfleet.producer.knowledge import KnowledgeClient
from qfleet.tasks.errors import JobFailedError, JobTimeoutError
from qfleet.tasks.knowledge import (
    MAX_DOCUMENTS_PER_JOB,
    MAX_QUERY_CHARS,
    IngestResult,
    KnowledgeAdminResult,
    KnowledgeDocument,
    RetrieveResult,
)
from qfleet.tasks.retrieval import MAX_TOP_K, RetrievalFilters, SourceUrl, Version

router = APIRouter(prefix="/v1/qfleet/knowledge", tags=["qfleet knowledge"])
T = TypeVar("T")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestRequest(_Body):
    """Documents to add (a newer version of a source supersedes the older for retrieval)."""

    documents: list[KnowledgeDocument] = Field(min_length=1, max_length=MAX_DOCUMENTS_PER_JOB)


class SearchRequest(_Body):
    """A query and which passages may answer it."""

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K)
    filters: RetrievalFilters = Field(default_factory=RetrievalFilters)


class RollbackRequest(_Body):
    """Make `version` of `source_url` the one retrieval sees again."""

    source_url: SourceUrl
    version: Version


def _require_admin(caller: Caller) -> None:
    if not caller.admin:
        raise ApiError(
            403,
            "changing the knowledge base needs an admin key (qfleet keys create --admin)",
            code="admin_only",
        )


async def _run(state: StateDep, call: Callable[[KnowledgeClient, float], T]) -> T:
    timeout = state.settings.gateway_job_timeout_s
    try:
        return await run_sync(call, KnowledgeClient(state.fleet), timeout)
    except JobFailedError as exc:
        raise job_failure(exc) from exc
    except JobTimeoutError as exc:
        raise ApiError(504, str(exc), code="timeout") from exc


@router.post("/documents")
async def ingest(body: IngestRequest, caller: LimitedCallerDep, state: StateDep) -> IngestResult:
    """Chunk, embed and store documents; waits for the report."""
    _require_admin(caller)
    job: dict[str, Any] = {"documents": [d.model_dump(mode="json") for d in body.documents]}
    return await _run(state, lambda kb, timeout: kb.ingest(job, timeout=timeout))


@router.post("/search")
async def search(body: SearchRequest, caller: LimitedCallerDep, state: StateDep) -> RetrieveResult:
    """The passages that best answer a query, with scores, sources and versions."""
    del caller
    options = {"top_k": body.top_k, "filters": body.filters.model_dump(mode="json")}
    return await _run(state, lambda kb, timeout: kb.search(body.query, timeout=timeout, **options))


@router.get("/versions")
async def versions(
    source_url: str, caller: LimitedCallerDep, state: StateDep
) -> KnowledgeAdminResult:
    """Every stored version of a source, and which one retrieval sees."""
    del caller
    return await _run(
        state, lambda kb, timeout: kb.admin("versions", source_url=source_url, timeout=timeout)
    )


@router.post("/rollback")
async def rollback(
    body: RollbackRequest, caller: LimitedCallerDep, state: StateDep
) -> KnowledgeAdminResult:
    """Make an older version of a source the one retrieval sees."""
    _require_admin(caller)
    return await _run(
        state,
        lambda kb, timeout: kb.admin(
            "rollback", source_url=body.source_url, version=body.version, timeout=timeout
        ),
    )
