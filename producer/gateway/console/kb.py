"""The Knowledge page's data: sources and versions, search, rollback and ingest, as jobs.

The knowledge base lives with the worker that consumes `qfleet.ingest`/`qfleet.retrieve`; every
call here is a job to it (`producer.knowledge.KnowledgeClient`). The base is shared by every
tenant: any key may read it; changing it (rollback, ingest) needs an admin key.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Final, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel, Field

from qfleet.producer.gateway.auth import Caller, CallerDep, StateDep
from qfleet.producer.gateway.console.route import ConsoleRoute
from qfleet.producer.gateway.errors import ApiError
from qfleet.producer.knowledge import KnowledgeClient
from qfleet.tasks.constants import QUEUE_INGEST
from qfleet.tasks.errors import JobFailedError, JobTimeoutError
from qfleet.tasks.knowledge import (
    IngestResult,
    KnowledgeAdminJob,
    KnowledgeDocument,
    KnowledgeStats,
    Passage,
    SourceVersion,
)
from qfleet.tasks.retrieval import MAX_TOP_K, RetrievalFilters

# The console waits this long for the knowledge base; past it the page says which queue has
# no worker rather than spinning.
KB_TIMEOUT_S: Final = 20.0
INGEST_TIMEOUT_S: Final = 120.0
SOURCES_SHOWN: Final = 100
# "Small file": the console reads the file in the browser and sends its text.
MAX_INGEST_CHARS: Final = 200_000

T = TypeVar("T")
router = APIRouter(route_class=ConsoleRoute)


class SourceView(BaseModel):
    """A source with its stored versions, oldest first."""

    source_url: str
    versions: list[SourceVersion]


class SourcesView(BaseModel):
    """The Knowledge page's list."""

    stats: KnowledgeStats
    sources: list[SourceView]


class SearchRequest(BaseModel):
    """A search from the console."""

    query: str = Field(min_length=1, max_length=4_000)
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K)
    include_superseded: bool = False


class SearchView(BaseModel):
    """Passages best first, with the knowledge-base version they were read at."""

    passages: list[Passage]
    kb_version: int


class RollbackRequest(BaseModel):
    """Make `version` the active version of `source_url` again."""

    source_url: str = Field(min_length=1, max_length=2_048)
    version: str = Field(min_length=1, max_length=64)


class IngestRequest(BaseModel):
    """One small document, read from a file in the browser."""

    source_url: str = Field(min_length=1, max_length=2_048)
    version: str = Field(default="1", min_length=1, max_length=64)
    title: str | None = Field(default=None, max_length=512)
    text: str = Field(min_length=1, max_length=MAX_INGEST_CHARS)
    tags: list[str] = Field(default_factory=list, max_length=32)


@router.get("/kb/sources")
def sources(caller: CallerDep, state: StateDep) -> SourcesView:
    """Every source with a latest version, and its versions."""
    del caller  # read-only, and the base is shared by every tenant
    kb = KnowledgeClient(state.fleet)
    stats = _call(lambda: kb.admin("stats", timeout=KB_TIMEOUT_S)).stats
    if stats is None:
        raise ApiError(502, "the knowledge base answered without statistics", code="kb_error")
    # One versions job per source, all sent before any is awaited.
    urls = stats.source_urls[:SOURCES_SHOWN]
    jobs = [KnowledgeAdminJob(action="versions", source_url=url) for url in urls]
    ids = _call(lambda: [kb.submit(job) for job in jobs])
    views = []
    for url, job_id in zip(urls, ids, strict=True):
        result = _call(functools.partial(kb.wait, job_id, timeout=KB_TIMEOUT_S))
        views.append(SourceView(source_url=url, versions=getattr(result, "versions", [])))
    return SourcesView(stats=stats, sources=views)


@router.post("/kb/search")
def search(body: SearchRequest, caller: CallerDep, state: StateDep) -> SearchView:
    """The top passages for a query, with scores and versions."""
    del caller
    kb = KnowledgeClient(state.fleet)
    filters = RetrievalFilters(include_superseded=body.include_superseded)
    result = _call(
        lambda: kb.search(body.query, top_k=body.top_k, filters=filters, timeout=KB_TIMEOUT_S)
    )
    return SearchView(passages=result.passages, kb_version=result.kb_version)


@router.post("/kb/rollback")
def rollback(body: RollbackRequest, caller: CallerDep, state: StateDep) -> SourceView:
    """Make an older version of a source the one retrieval serves (admin keys only)."""
    _admin(caller, "rolling back a source")
    kb = KnowledgeClient(state.fleet)
    result = _call(
        lambda: kb.admin(
            "rollback", source_url=body.source_url, version=body.version, timeout=KB_TIMEOUT_S
        )
    )
    return SourceView(source_url=body.source_url, versions=result.versions)


@router.post("/kb/ingest")
def ingest(body: IngestRequest, caller: CallerDep, state: StateDep) -> IngestResult:
    """Ingest one document (admin keys only)."""
    _admin(caller, "ingesting")
    document = KnowledgeDocument.model_validate(body.model_dump())
    kb = KnowledgeClient(state.fleet)
    return _call(lambda: kb.ingest({"documents": [document]}, timeout=INGEST_TIMEOUT_S))


def _admin(caller: Caller, what: str) -> None:
    if not caller.admin:
        raise ApiError(
            403, f"{what} changes the knowledge base every tenant shares: it needs an admin key "
            "(qfleet keys create --admin)", code="admin_only",
        )  # fmt: skip


def _call(work: Callable[[], T]) -> T:
    """Run a knowledge call; a failed or unanswered job becomes an error the page can show."""
    try:
        return work()
    except JobFailedError as exc:
        error = exc.error
        status = 404 if error.code == "not_found" else 400
        raise ApiError(status, f"{error.code}: {error.message}", code=error.code) from exc
    except JobTimeoutError as exc:
        raise ApiError(
            504, f"the knowledge base did not answer within {KB_TIMEOUT_S:g}s: is a worker "
            f"consuming {QUEUE_INGEST} and qfleet.retrieve? (the Fleet page shows the queues)",
            code="kb_timeout",
        ) from exc  # fmt: skip
