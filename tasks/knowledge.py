"""Knowledge-base jobs and their results: ingest, retrieve, and administration (versions,
rollback, delete, stats). Plain data, JSON on the wire, validated on both sides.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from qfleet.tasks.errors import InvalidJobError
from qfleet.tasks.retrieval import MAX_TOP_K, RetrievalFilters, SourceUrl, Tag, Version
from qfleet.tasks.schemas import (
    MAX_TEXT_CHARS,
    JobError,
    JobId,
    describe_validation_error,
    new_job_id,
)

MAX_DOCUMENTS_PER_JOB = 1_000
MAX_QUERY_CHARS = 4_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _version_text(value: Any) -> Any:
    # Versions are labels ("v2", "2024-05-01", 3); numbers are accepted and kept as text.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class KnowledgeDocument(_Model):
    """One version of one source. `update_time` defaults to the time of ingest."""

    id: str | None = Field(default=None, max_length=256, description="Your document id.")
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    source_url: SourceUrl
    version: Annotated[Version, BeforeValidator(_version_text)] = "1"
    update_time: AwareDatetime | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    title: str | None = Field(default=None, max_length=512)


class IngestJob(_Model):
    """Chunk, embed and store documents; a newer version of a source supersedes the older."""

    kind: Literal["ingest"] = "ingest"
    job_id: JobId = Field(default_factory=new_job_id)
    documents: list[KnowledgeDocument] = Field(min_length=1, max_length=MAX_DOCUMENTS_PER_JOB)


class RetrieveJob(_Model):
    """Find the passages that best answer `query` (dense + lexical, fused by rank)."""

    kind: Literal["retrieve"] = "retrieve"
    job_id: JobId = Field(default_factory=new_job_id)
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K)
    filters: RetrievalFilters = Field(default_factory=RetrievalFilters)


AdminAction = Literal["versions", "rollback", "delete", "stats"]


class KnowledgeAdminJob(_Model):
    """Inspect or change the knowledge base: list versions, roll back, delete a source, stats."""

    kind: Literal["kb_admin"] = "kb_admin"
    job_id: JobId = Field(default_factory=new_job_id)
    action: AdminAction
    source_url: SourceUrl | None = None
    version: Version | None = None

    @model_validator(mode="after")
    def _arguments_fit_action(self) -> KnowledgeAdminJob:
        if self.action != "stats" and self.source_url is None:
            raise ValueError(f"`{self.action}` needs source_url")
        if (self.action == "rollback") != (self.version is not None):
            raise ValueError("`version` is given with `rollback` only, and rollback needs it")
        return self


class Passage(_Model):
    """A retrieved chunk with its provenance."""

    chunk_id: str
    text: str
    score: float
    source_url: str
    version: str
    update_time: datetime | None
    tags: list[str]
    chunk_index: int
    latest: bool
    title: str | None = None
    relevance: float | None = Field(
        default=None,
        description="How well the passage covers the query, 0-1, comparable across queries "
        "(the fused `score` is rank-based and is not); passages below the relevance floor "
        "are not returned.",
    )


class IngestedDocument(_Model):
    """What happened to one document of an ingest job."""

    source_url: str
    version: str
    status: Literal["ingested", "unchanged", "stored_not_latest"]
    chunks: int
    embedded: int = Field(description="Chunks embedded now; the rest reused stored vectors.")


class KnowledgeTimings(_Model):
    """Where a knowledge job's time went, in milliseconds."""

    embed_ms: float
    total_ms: float


class IngestResult(_Model):
    """A finished ingest job."""

    status: Literal["succeeded"] = "succeeded"
    kind: Literal["ingest"] = "ingest"
    job_id: str
    documents: list[IngestedDocument]
    chunks: int
    embedded: int
    kb_version: int
    timings: KnowledgeTimings
    worker: str


class RetrieveResult(_Model):
    """A finished retrieve job: passages best first."""

    status: Literal["succeeded"] = "succeeded"
    kind: Literal["retrieve"] = "retrieve"
    job_id: str
    query: str
    passages: list[Passage]
    kb_version: int
    timings: KnowledgeTimings
    worker: str


class SourceVersion(_Model):
    """One stored version of a source."""

    version: str
    update_time: datetime | None
    chunks: int
    latest: bool


class KnowledgeStats(_Model):
    """How big the knowledge base is and what serves it."""

    chunks: int
    latest_chunks: int
    sources: int
    backend: str
    embedder: str
    source_urls: list[str] = Field(
        default_factory=list, description="The sources with a latest version, sorted (first 1,000)."
    )


class KnowledgeAdminResult(_Model):
    """A finished administration job."""

    status: Literal["succeeded"] = "succeeded"
    kind: Literal["kb_admin"] = "kb_admin"
    job_id: str
    action: AdminAction
    source_url: str | None = None
    versions: list[SourceVersion] = Field(default_factory=list)
    deleted_chunks: int = 0
    stats: KnowledgeStats | None = None
    kb_version: int
    worker: str


KnowledgeJob = IngestJob | RetrieveJob | KnowledgeAdminJob
KnowledgeResult = IngestResult | RetrieveResult | KnowledgeAdminResult
_RESULT: TypeAdapter[KnowledgeResult] = TypeAdapter(
    Annotated[KnowledgeResult, Field(discriminator="kind")]
)
J = TypeVar("J", IngestJob, RetrieveJob, KnowledgeAdminJob)


def parse_knowledge_outcome(data: object) -> KnowledgeResult | JobError:
    """Validate a stored knowledge result as its result model or a `JobError`."""
    if isinstance(data, dict) and data.get("status") == "failed":
        return JobError.model_validate(data)
    return _RESULT.validate_python(data)


def validate_knowledge_job(payload: object, model: type[J]) -> J:
    """`payload` as a `model`; raises `InvalidJobError` naming every problem."""
    if isinstance(payload, model):
        return payload
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        name = model.model_fields["kind"].default
        raise InvalidJobError(f"invalid {name} job: {describe_validation_error(exc)}") from exc
