"""`VectorIndex` on a Qdrant server (or any `qdrant-client` location) through `qdrant-client`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from qdrant_client import QdrantClient, models

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


class ServerIndex:
    """One collection of a Qdrant reached through `client` (several workers may share it)."""

    def __init__(self, client: QdrantClient, collection: str) -> None:
        self.client = client
        self.collection = collection

    def ensure_collection(self, dim: int) -> None:
        if self.client.collection_exists(self.collection):
            return
        self.client.create_collection(
            self.collection,
            vectors_config={DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
            sparse_vectors_config={
                LEXICAL: models.SparseVectorParams(modifier=models.Modifier.IDF)
            },
        )
        with warnings.catch_warnings():
            # qdrant-client's local mode (tests) warns that it ignores payload indexes.
            warnings.simplefilter("ignore", UserWarning)
            self._index_payload()

    def _index_payload(self) -> None:
        for key, schema in (
            ("source", models.PayloadSchemaType.KEYWORD),
            ("latest", models.PayloadSchemaType.INTEGER),
            ("tags", models.PayloadSchemaType.KEYWORD),
            ("content_hash", models.PayloadSchemaType.KEYWORD),
            ("update_ts", models.PayloadSchemaType.FLOAT),
        ):
            self.client.create_payload_index(self.collection, key, schema)

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        structs = [
            models.PointStruct(
                id=p.id, vector={DENSE: p.dense, LEXICAL: _sparse(p.sparse)}, payload=p.payload
            )
            for p in points
        ]
        self.client.upsert(self.collection, structs, wait=True)

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
        prefetch, weights = [], []
        if dense is not None:
            prefetch.append(
                models.Prefetch(query=dense, using=DENSE, limit=candidates, filter=condition)
            )
            weights.append(dense_weight)
        if sparse.indices:
            weights.append(1.0)
            prefetch.append(
                models.Prefetch(
                    query=_sparse(sparse), using=LEXICAL, limit=candidates, filter=condition
                )
            )
        if not prefetch:
            return []
        response = self.client.query_points(
            self.collection,
            prefetch=prefetch,
            query=models.RrfQuery(rrf=models.Rrf(k=RRF_K, weights=weights)),
            query_filter=condition,
            limit=limit,
            with_payload=True,
        )
        return [
            Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {}))
            for p in response.points
        ]

    def scroll(self, where: Sequence[Condition], *, with_dense: bool = False) -> list[Record]:
        records: list[Record] = []
        offset: Any = None
        while True:
            page, offset = self.client.scroll(
                self.collection,
                scroll_filter=_filter(where),
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=True,
                with_vectors=[DENSE] if with_dense else False,
            )
            records.extend(_record(p) for p in page)
            if offset is None:
                return records

    def retrieve(self, ids: Sequence[str]) -> list[Record]:
        found = self.client.retrieve(
            self.collection, list(ids), with_payload=True, with_vectors=[DENSE]
        )
        return [_record(p) for p in found]

    def set_payload(self, where: Sequence[Condition], payload: dict[str, Any]) -> None:
        self.client.set_payload(
            self.collection, payload, points=models.FilterSelector(filter=_filter(where)), wait=True
        )

    def delete(self, where: Sequence[Condition]) -> None:
        self.client.delete(self.collection, models.FilterSelector(filter=_filter(where)), wait=True)

    def count(self, where: Sequence[Condition]) -> int:
        return self.client.count(self.collection, count_filter=_filter(where), exact=True).count

    def flush(self) -> None:
        """A server persists on its own; `wait=True` writes are already applied."""

    def close(self) -> None:
        self.client.close()


def _sparse(vector: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=vector.indices, values=vector.values)


def _record(point: Any) -> Record:
    vector = point.vector if isinstance(point.vector, dict) else {}
    dense = vector.get(DENSE)
    return Record(
        id=str(point.id),
        payload=dict(point.payload or {}),
        dense=list(dense) if dense is not None else None,
    )


def _filter(where: Sequence[Condition]) -> models.Filter:
    return models.Filter(must=[_condition(c) for c in where])


def _condition(condition: Condition) -> models.FieldCondition:
    if isinstance(condition, Match):
        return models.FieldCondition(
            key=condition.key, match=models.MatchValue(value=condition.value)
        )
    if isinstance(condition, MatchAny):
        return models.FieldCondition(
            key=condition.key, match=models.MatchAny(any=list(condition.values))
        )
    return models.FieldCondition(
        key=condition.key, range=models.Range(gte=condition.gte, lte=condition.lte)
    )
