"""`KnowledgeStore`: versioned chunks in Qdrant, hybrid search, supersede and rollback.

Every chunk of every version stays stored. Each chunk carries `latest` (1 for the active
version of its source, else 0); retrieval filters on it by default, so a newer version
supersedes the older for answers while the older stays for audit and rollback. A version
becomes active when ingested unless a version with a later `update_time` is active already.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from qfleet.tasks.errors import NotFoundError
from qfleet.tasks.knowledge import (
    IngestedDocument,
    KnowledgeDocument,
    KnowledgeStats,
    Passage,
    SourceVersion,
)
from qfleet.tasks.retrieval import RetrievalFilters
from qfleet.workers.knowledge.chunking import chunk_text
from qfleet.workers.knowledge.embedder import Embedder
from qfleet.workers.knowledge.index import (
    Condition,
    IndexPoint,
    Match,
    MatchAny,
    Range,
    VectorIndex,
)
from qfleet.workers.knowledge.lexical import SparseVector, document_vector, query_vector
from qfleet.workers.knowledge.relevance import lexical_coverage, relevance

# Chunk ids are stable: the same (source, version, chunk) always maps to the same point.
_CHUNK_NAMESPACE = uuid.UUID("6f1e8f0a-5b8e-4d55-9a43-1f6d0c2b7e11")
_UPSERT_BATCH = 256
# Candidates each signal brings to the fusion, per requested passage (and at least this many).
_CANDIDATES_PER_RESULT = 4
_MIN_CANDIDATES = 20
# The least say the dense list keeps in the fusion, however unreadable the query is to it.
_MIN_DENSE_WEIGHT = 0.05
# Sources named by `stats` (the console lists them); the count is always exact.
MAX_SOURCES_LISTED = 1_000
Signals = Literal["hybrid", "dense", "lexical"]


@dataclass(frozen=True)
class IngestReport:
    """What one `ingest` call did, with the time spent embedding."""

    documents: list[IngestedDocument]
    embed_seconds: float

    @property
    def chunks(self) -> int:
        """Chunks of all the documents."""
        return sum(d.chunks for d in self.documents)

    @property
    def embedded(self) -> int:
        """Chunks embedded by this call (the others reused stored vectors or were unchanged)."""
        return sum(d.embedded for d in self.documents)


class KnowledgeStore:
    """The knowledge base of one process: an embedder and a `VectorIndex`."""

    def __init__(
        self,
        index: VectorIndex,
        embedder: Embedder,
        *,
        chunk_tokens: int = 200,
        overlap_tokens: int = 40,
        backend: str = "qdrant",
        relevance_floor: float = 0.0,
    ) -> None:
        self.index = index
        # Passages whose relevance (workers/knowledge/relevance.py) is below this are dropped.
        self.relevance_floor = relevance_floor
        self.embedder = embedder
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.backend = backend
        # One writer at a time: two ingests of one source must not interleave their steps.
        self._writer = threading.RLock()
        # Held by a writer only while it changes points (not while it embeds) and by a reader
        # for its query: a search never sees a source with no active version, or two.
        self._lock = threading.RLock()
        index.ensure_collection(embedder.dim)

    # --- writing ----------------------------------------------------------------------------

    def ingest(self, documents: Sequence[KnowledgeDocument]) -> IngestReport:
        """Chunk, embed (reusing stored vectors of identical chunks) and store `documents`."""
        reports: list[IngestedDocument] = []
        embed_seconds = 0.0
        with self._writer:
            for document in documents:
                report, seconds = self._ingest_one(document)
                reports.append(report)
                embed_seconds += seconds
            self.index.flush()
        return IngestReport(reports, embed_seconds)

    def rollback(self, source_url: str, version: str) -> None:
        """Make `version` the active version of `source_url` again."""
        with self._writer, self._lock:
            if not self.index.count([Match("source", source_url), Match("version", version)]):
                raise NotFoundError(f"{source_url} has no stored version {version!r}")
            self._activate(source_url, version)
            self.index.flush()

    def delete(self, source_url: str) -> int:
        """Delete every version of `source_url`; returns the chunks removed."""
        with self._writer, self._lock:
            where = [Match("source", source_url)]
            removed = self.index.count(where)
            if not removed:
                raise NotFoundError(f"no source {source_url} in the knowledge base")
            self.index.delete(where)
            self.index.flush()
            return removed

    # --- reading ----------------------------------------------------------------------------

    def search(
        self,
        query: str,
        top_k: int = 5,
        filters: RetrievalFilters | None = None,
        *,
        signals: Signals = "hybrid",
    ) -> list[Passage]:
        """The `top_k` passages for `query` by reciprocal rank fusion of dense and lexical,
        each with its relevance; those below the store's relevance floor are left out.

        `signals` narrows the search to one of them (to measure what each contributes).
        """
        dense = self.embedder.embed([query])[0].tolist()
        sparse = query_vector(query) if signals != "dense" else SparseVector([], [])
        candidates = max(top_k * _CANDIDATES_PER_RESULT, _MIN_CANDIDATES)
        where = search_conditions(filters or RetrievalFilters())
        # The dense list votes by how much of the query the embedder can read: an English
        # embedder sees a Chinese query as [UNK]s, and its ranking is then noise.
        dense_weight = max(1.0 - self.embedder.unknown_ratio(query), _MIN_DENSE_WEIGHT)
        with self._lock:
            hits = self.index.hybrid_query(
                None if signals == "lexical" else dense,
                sparse,
                where,
                top_k,
                candidates,
                dense_weight=dense_weight,
            )
            vectors = {r.id: r.dense for r in self.index.retrieve([h.id for h in hits])}
        floor = self.relevance_floor if filters is None else filters.min_relevance
        floor = self.relevance_floor if floor is None else floor
        # The cosine says something only when the embedder reads every token of the query.
        reads_query = self.embedder.unknown_ratio(query) == 0.0
        passages = []
        for hit in hits:
            vector = vectors.get(hit.id)
            cosine = float(np.dot(dense, vector)) if reads_query and vector is not None else None
            score = relevance(cosine, lexical_coverage(query, hit.payload["text"]))
            if score >= floor:
                passages.append(_passage(hit.id, hit.score, hit.payload, score))
        return passages

    def versions(self, source_url: str) -> list[SourceVersion]:
        """Every stored version of `source_url`, oldest first."""
        with self._lock:
            records = self.index.scroll([Match("source", source_url)])
        if not records:
            raise NotFoundError(f"no source {source_url} in the knowledge base")
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in records:
            grouped[record.payload["version"]].append(record.payload)
        versions = [
            SourceVersion(
                version=version,
                update_time=_time(payloads[0].get("update_time")),
                chunks=len(payloads),
                latest=bool(payloads[0].get("latest")),
            )
            for version, payloads in grouped.items()
        ]
        return sorted(versions, key=lambda v: v.update_time or datetime.min.replace(tzinfo=UTC))

    def stats(self) -> KnowledgeStats:
        """Chunk and source counts."""
        with self._lock:
            latest = self.index.scroll([Match("latest", 1)])
            total = self.index.count([])
        sources = sorted({str(r.payload["source"]) for r in latest})
        return KnowledgeStats(
            chunks=total,
            latest_chunks=len(latest),
            sources=len(sources),
            backend=self.backend,
            embedder=self.embedder.model_id,
            source_urls=sources[:MAX_SOURCES_LISTED],
        )

    def close(self) -> None:
        """Flush and release the index."""
        with self._lock:
            self.index.close()

    # --- internals --------------------------------------------------------------------------

    def _ingest_one(self, document: KnowledgeDocument) -> tuple[IngestedDocument, float]:
        source, version = document.source_url, document.version
        doc_hash = _sha256(document.text)
        stored = self.index.scroll([Match("source", source), Match("version", version)])
        if stored and stored[0].payload.get("doc_hash") == doc_hash:
            status = "unchanged"
            return self._report(document, status, len(stored), 0), 0.0
        points, embedded, seconds = self._points(document, doc_hash)
        with self._lock:
            if stored:  # the same version label with other text: replace it
                self.index.delete([Match("source", source), Match("version", version)])
            for start in range(0, len(points), _UPSERT_BATCH):
                self.index.upsert(points[start : start + _UPSERT_BATCH])
            if self._supersedes(source, points[0].payload["update_ts"] if points else 0.0):
                self._activate(source, version)
                status = "ingested"
            else:
                status = "stored_not_latest"
        return self._report(document, status, len(points), embedded), seconds

    def _points(
        self, document: KnowledgeDocument, doc_hash: str
    ) -> tuple[list[IndexPoint], int, float]:
        chunks = chunk_text(
            document.text,
            self.embedder.tokenize_offsets,
            max_tokens=self.chunk_tokens,
            overlap_tokens=self.overlap_tokens,
        )
        hashes = [_sha256(f"{self.embedder.model_id}\0{c.text}") for c in chunks]
        vectors = self._stored_vectors(hashes)
        missing = [i for i, h in enumerate(hashes) if h not in vectors]
        started = time.perf_counter()
        fresh = self.embedder.embed([chunks[i].text for i in missing])
        seconds = time.perf_counter() - started
        for row, i in enumerate(missing):
            vectors[hashes[i]] = fresh[row].tolist()
        updated = document.update_time or datetime.now(UTC)
        base = {
            "source": document.source_url,
            "version": document.version,
            "doc_id": document.id,
            "title": document.title,
            "doc_hash": doc_hash,
            "tags": list(document.tags),
            "update_time": updated.isoformat(),
            "update_ts": updated.timestamp(),
            "ingested_at": time.time(),
            "latest": 0,
        }
        points = [
            IndexPoint(
                id=chunk_id(document.source_url, document.version, chunk.index),
                dense=vectors[content_hash],
                sparse=document_vector(chunk.text),
                payload={
                    **base,
                    "text": chunk.text,
                    "chunk_index": chunk.index,
                    "content_hash": content_hash,
                },
            )
            for chunk, content_hash in zip(chunks, hashes, strict=True)
        ]
        return points, len(missing), seconds

    def _stored_vectors(self, hashes: list[str]) -> dict[str, list[float]]:
        """Dense vectors already stored for any of `hashes` (identical text, same embedder)."""
        if not hashes:
            return {}
        found = self.index.scroll([MatchAny("content_hash", tuple(set(hashes)))], with_dense=True)
        return {r.payload["content_hash"]: r.dense for r in found if r.dense is not None}

    def _supersedes(self, source: str, update_ts: float) -> bool:
        active = self.index.scroll([Match("source", source), Match("latest", 1)])
        return not active or update_ts >= float(active[0].payload["update_ts"])

    def _activate(self, source: str, version: str) -> None:
        # Under the store lock, so no search sees the moment between these two writes.
        self.index.set_payload([Match("source", source)], {"latest": 0})
        self.index.set_payload([Match("source", source), Match("version", version)], {"latest": 1})

    @staticmethod
    def _report(
        document: KnowledgeDocument, status: Any, chunks: int, embedded: int
    ) -> IngestedDocument:
        return IngestedDocument(
            source_url=document.source_url,
            version=document.version,
            status=status,
            chunks=chunks,
            embedded=embedded,
        )


def search_conditions(filters: RetrievalFilters) -> list[Condition]:
    """The index conditions for `filters` (latest versions only unless told otherwise)."""
    where: list[Condition] = []
    if not filters.include_superseded and filters.version is None:
        where.append(Match("latest", 1))
    if filters.tags:
        where.append(MatchAny("tags", tuple(filters.tags)))
    if filters.source_url:
        where.append(Match("source", filters.source_url))
    if filters.version:
        where.append(Match("version", filters.version))
    if filters.updated_after or filters.updated_before:
        where.append(
            Range(
                "update_ts",
                gte=filters.updated_after.timestamp() if filters.updated_after else None,
                lte=filters.updated_before.timestamp() if filters.updated_before else None,
            )
        )
    return where


def chunk_id(source_url: str, version: str, index: int) -> str:
    """The stable point id of chunk `index` of `version` of `source_url`."""
    return str(uuid.uuid5(_CHUNK_NAMESPACE, f"{source_url}\0{version}\0{index}"))


def _passage(
    point_id: str, score: float, payload: dict[str, Any], relevance: float | None = None
) -> Passage:
    return Passage(
        chunk_id=point_id,
        text=payload["text"],
        score=score,
        source_url=payload["source"],
        version=payload["version"],
        update_time=_time(payload.get("update_time")),
        tags=list(payload.get("tags") or []),
        chunk_index=int(payload["chunk_index"]),
        latest=bool(payload.get("latest")),
        title=payload.get("title"),
        relevance=relevance,
    )


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
