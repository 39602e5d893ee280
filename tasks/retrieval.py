"""What a generate job may ask of the knowledge base, and what an answer cites.

Kept apart from `tasks.knowledge` so `tasks.schemas` can use these without an import cycle.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

MAX_TOP_K = 50
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64)]
SourceUrl = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
Version = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrievalFilters(_Model):
    """Which passages may be returned. Only each source's latest version unless asked otherwise."""

    tags: list[Tag] = Field(default_factory=list, max_length=32, description="Any of these tags.")
    updated_after: AwareDatetime | None = None
    updated_before: AwareDatetime | None = None
    source_url: SourceUrl | None = None
    version: Version | None = Field(
        default=None, description="Exactly this version (of any source, or of `source_url`)."
    )
    include_superseded: bool = Field(
        default=False, description="Also return versions that a newer one superseded."
    )
    min_relevance: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Leave out passages less relevant than this (0-1); default: the knowledge "
        "worker's QFLEET_RAG_RELEVANCE_FLOOR. 0 returns the ranking without a floor.",
    )


class RetrievalSpec(_Model):
    """A generate job's request for reference passages from the knowledge base."""

    top_k: int = Field(default=4, ge=1, le=MAX_TOP_K)
    filters: RetrievalFilters = Field(default_factory=RetrievalFilters)


class SourceRef(_Model):
    """One passage an answer was given with: where it came from, which version, how it scored."""

    source_url: str
    version: str
    chunk_id: str
    score: float
    update_time: datetime | None = None


class Citation(_Model):
    """A `[n]` marker in an answer, checked against the passages the answer was given."""

    number: int = Field(description="The n of the marker.")
    valid: bool = Field(description="Whether passage n was given (1 <= n <= passages).")
    source_url: str | None = Field(default=None, description="Passage n's source, when valid.")
    version: str | None = None
    chunk_id: str | None = None
