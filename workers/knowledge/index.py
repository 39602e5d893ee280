"""The vector index under `KnowledgeStore`: a few operations, two Qdrant engines behind them.

`KnowledgeStore` speaks only the operations of `VectorIndex`; `EdgeIndex` runs them on Qdrant
Edge (Qdrant's engine embedded in the worker process, persisted to a folder) and `ServerIndex`
on a Qdrant server through `qdrant-client`. Each translation is a few lines per operation, so
both engines run the same store logic (versions, supersede, hybrid queries).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from qfleet.workers.knowledge.lexical import SparseVector

DENSE = "dense"
LEXICAL = "lexical"
# Reciprocal rank fusion constant (Qdrant's default). A small k lets a list's top ranks count:
# with the usual 60, rank 1 and rank 2 differ by 1.6%, and a down-weighted list still decides.
RRF_K = 2


@dataclass(frozen=True)
class Match:
    """`key` equals `value` (for a list field: contains it)."""

    key: str
    value: str | int


@dataclass(frozen=True)
class MatchAny:
    """`key` equals (or, for a list field, contains) any of `values`."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Range:
    """`gte <= key <= lte` for a numeric field."""

    key: str
    gte: float | None = None
    lte: float | None = None


Condition = Match | MatchAny | Range


@dataclass(frozen=True)
class IndexPoint:
    """One stored chunk: id, its two vectors and its payload."""

    id: str
    dense: list[float]
    sparse: SparseVector
    payload: dict[str, Any]


@dataclass(frozen=True)
class Record:
    """A point read back: id, payload and (when asked for) its dense vector."""

    id: str
    payload: dict[str, Any]
    dense: list[float] | None = None


@dataclass(frozen=True)
class Hit:
    """A scored point from a query."""

    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


class VectorIndex(Protocol):
    """What `KnowledgeStore` needs from a vector engine; every `where` is a conjunction."""

    def ensure_collection(self, dim: int) -> None:
        """Create the collection (dense cosine + sparse IDF) unless it exists."""

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        """Insert or replace points."""

    def hybrid_query(
        self,
        dense: list[float] | None,
        sparse: SparseVector,
        where: Sequence[Condition],
        limit: int,
        candidates: int,
        dense_weight: float = 1.0,
    ) -> list[Hit]:
        """Top `limit` by RRF over the dense and sparse top `candidates`, both filtered.

        A signal left out (`dense=None`, or a sparse vector without terms) is not queried.
        `dense_weight` scales the dense list's votes in the fusion (the sparse list's are 1).
        """

    def scroll(self, where: Sequence[Condition], *, with_dense: bool = False) -> list[Record]:
        """Every point matching `where`."""

    def retrieve(self, ids: Sequence[str]) -> list[Record]:
        """Points by id, with their dense vectors."""

    def set_payload(self, where: Sequence[Condition], payload: dict[str, Any]) -> None:
        """Merge `payload` into every point matching `where`."""

    def delete(self, where: Sequence[Condition]) -> None:
        """Delete every point matching `where`."""

    def count(self, where: Sequence[Condition]) -> int:
        """Exact number of points matching `where`."""

    def flush(self) -> None:
        """Make everything written so far durable."""

    def close(self) -> None:
        """Release the engine (and, for an embedded one, its folder lock)."""
