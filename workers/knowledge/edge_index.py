"""`VectorIndex` on Qdrant Edge: Qdrant's engine inside this process, persisted to a folder.

The folder admits one process at a time (its write-ahead log is locked), so exactly one worker
owns an embedded knowledge base and everything else reaches it through jobs.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from qfleet.workers.knowledge.index import (
    DENSE,
    LEXICAL,
    RRF_K,
    Condition,
    Hit,
    IndexPoint,
    Match,
    MatchAny,
    Record,
)
from qfleet.workers.knowledge.lexical import SparseVector

_SCROLL_PAGE = 1_000


class EdgeIndex:
    """A Qdrant Edge shard in `path`, created on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._shard: Any = None
        # Edge updates are applied in order by one writer; the lock keeps ours in order too.
        self._lock = threading.RLock()

    def ensure_collection(self, dim: int) -> None:
        with self._lock:
            if self._shard is not None:
                return
            if (self.path / "edge_config.json").exists() or any(self.path.glob("segments*")):
                self._shard = qe.EdgeShard.load(str(self.path))
                return
            self.path.mkdir(parents=True, exist_ok=True)
            config = qe.EdgeConfig(
                vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
                sparse_vectors={LEXICAL: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            )
            self._shard = qe.EdgeShard.create(str(self.path), config)

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        edge_points = [
            qe.Point(
                id=p.id,
                vector={DENSE: p.dense, LEXICAL: _sparse(p.sparse)},
                payload=p.payload,
            )
            for p in points
        ]
        with self._lock:
            self._shard.update(qe.UpdateOperation.upsert_points(edge_points))

    def hybrid_query(
        self,
        dense: list[float] | None,
        sparse: SparseVector,
        where: Sequence[Condition],
        limit: int,
        candidates: int,
        dense_weight: float = 1.0,
    ) -> list[Hit]:
        condition = _filter(where)
        prefetches, weights = [], []
        if dense is not None:
            query = qe.Query.Nearest(dense, using=DENSE)
            prefetches.append(qe.Prefetch(limit=candidates, query=query, filter=condition))
            weights.append(dense_weight)
        if sparse.indices:
            query = qe.Query.Nearest(_sparse(sparse), using=LEXICAL)
            prefetches.append(qe.Prefetch(limit=candidates, query=query, filter=condition))
            weights.append(1.0)
        if not prefetches:
            return []
        request = qe.QueryRequest(
            limit=limit,
            prefetches=prefetches,
            query=qe.Fusion.Rrf(k=RRF_K, weights=weights),  # type: ignore[arg-type]  # the stub misses nested classes
            filter=condition,
            with_payload=True,
        )
        with self._lock:
            found = self._shard.query(request)
        return [Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload)) for p in found]

    def scroll(self, where: Sequence[Condition], *, with_dense: bool = False) -> list[Record]:
        records: list[Record] = []
        offset = None
        while True:
            request = qe.ScrollRequest(
                offset=offset,
                limit=_SCROLL_PAGE,
                filter=_filter(where),
                with_payload=True,
                with_vector=[DENSE] if with_dense else False,
            )
            with self._lock:
                page, offset = self._shard.scroll(request)
            records.extend(_record(p) for p in page)
            if offset is None:
                return records

    def retrieve(self, ids: Sequence[str]) -> list[Record]:
        with self._lock:
            found = self._shard.retrieve(list(ids), with_payload=True, with_vector=[DENSE])
        return [_record(p) for p in found]

    def set_payload(self, where: Sequence[Condition], payload: dict[str, Any]) -> None:
        with self._lock:
            self._shard.update(qe.UpdateOperation.set_payload_by_filter(_filter(where), payload))

    def delete(self, where: Sequence[Condition]) -> None:
        with self._lock:
            self._shard.update(qe.UpdateOperation.delete_points_by_filter(_filter(where)))

    def count(self, where: Sequence[Condition]) -> int:
        with self._lock:
            return int(self._shard.count(qe.CountRequest(exact=True, filter=_filter(where))))

    def flush(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard.flush()

    def close(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard.flush()
                self._shard.close()
                self._shard = None


def _sparse(vector: SparseVector) -> Any:
    return qe.SparseVector(indices=vector.indices, values=vector.values)


def _record(point: Any) -> Record:
    vector = point.vector if isinstance(point.vector, dict) else {}
    dense = vector.get(DENSE)
    return Record(
        id=str(point.id),
        payload=dict(point.payload or {}),
        dense=list(dense) if dense is not None else None,
    )


def _filter(where: Sequence[Condition]) -> Any:
    if not where:
        return None
    return qe.Filter(must=[_condition(c) for c in where])


def _condition(condition: Condition) -> Any:
    if isinstance(condition, Match):
        return qe.FieldCondition(key=condition.key, match=qe.MatchValue(condition.value))
    if isinstance(condition, MatchAny):
        return qe.FieldCondition(key=condition.key, match=qe.MatchAny(list(condition.values)))
    return qe.FieldCondition(
        key=condition.key, range=qe.RangeFloat(gte=condition.gte, lte=condition.lte)
    )
