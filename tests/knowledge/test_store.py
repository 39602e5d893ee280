"""KnowledgeStore on both engines: versions supersede, roll back, dedupe, filter, persist."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from qfleet.tasks.errors import NotFoundError
from qfleet.tasks.knowledge import KnowledgeDocument
from qfleet.tasks.retrieval import RetrievalFilters
from qfleet.workers.knowledge.edge_index import EdgeIndex
from qfleet.workers.knowledge.embedder import Embedder
from qfleet.workers.knowledge.server_index import ServerIndex
from qfleet.workers.knowledge.store import KnowledgeStore

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def doc(source: str, version: str, text: str, **extra: object) -> KnowledgeDocument:
    return KnowledgeDocument(
        source_url=source, version=version, text=text, update_time=extra.pop("at", T0), **extra
    )


@pytest.fixture(params=["edge", "server"])
def store(
    request: pytest.FixtureRequest, embedder: Embedder, tmp_path: Path
) -> Iterator[KnowledgeStore]:
    if request.param == "edge":
        index = EdgeIndex(tmp_path / "kb")
    else:  # the server code path, on qdrant-client's in-process engine
        index = ServerIndex(QdrantClient(location=":memory:"), "kb")
    knowledge = KnowledgeStore(index, embedder, chunk_tokens=64, overlap_tokens=8)
    yield knowledge
    knowledge.close()


def test_newer_version_supersedes_and_rollback_restores(store: KnowledgeStore) -> None:
    # Given v1 of a source stating a fact
    store.ingest([doc("kb://port", "1", "The service listens on port 8080.")])
    # When v2 changes the fact
    report = store.ingest(
        [doc("kb://port", "2", "The service listens on port 9090.", at=T0 + timedelta(days=1))]
    )
    # Then search returns only v2, while v1 stays stored
    assert report.documents[0].status == "ingested"
    assert [(p.version, p.latest) for p in store.search("which port", 5)] == [("2", True)]
    assert [(v.version, v.latest) for v in store.versions("kb://port")] == [
        ("1", False),
        ("2", True),
    ]
    everything = store.search("which port", 5, RetrievalFilters(include_superseded=True))
    assert sorted(p.version for p in everything) == ["1", "2"]
    # And a rollback makes v1 the answer again
    store.rollback("kb://port", "1")
    assert [p.version for p in store.search("which port", 5)] == ["1"]
    with pytest.raises(NotFoundError):
        store.rollback("kb://port", "7")


def test_an_older_update_time_is_stored_but_not_active(store: KnowledgeStore) -> None:
    store.ingest([doc("kb://a", "2", "Alpha is two.", at=T0 + timedelta(days=2))])
    report = store.ingest([doc("kb://a", "1", "Alpha is one.", at=T0)])
    assert report.documents[0].status == "stored_not_latest"
    assert [p.version for p in store.search("alpha", 5)] == ["2"]


def test_identical_content_is_not_embedded_again(store: KnowledgeStore) -> None:
    text = "Paragraph one about queues. " * 30 + "Paragraph two about workers. " * 30
    first = store.ingest([doc("kb://q", "1", text)])
    assert first.embedded == first.chunks > 1
    assert store.ingest([doc("kb://q", "1", text)]).documents[0].status == "unchanged"
    # A new version that only appends text embeds only the chunks that changed
    second = store.ingest(
        [doc("kb://q", "2", text + " A new closing sentence.", at=T0 + timedelta(1))]
    )
    assert 0 < second.embedded < second.chunks


def test_filters_on_tags_time_and_version(store: KnowledgeStore) -> None:
    store.ingest(
        [
            doc("kb://x", "1", "Deploy with the blue button.", tags=["ops"], at=T0),
            doc(
                "kb://y", "1", "Deploy with the green button.", tags=["dev"], at=T0 + timedelta(10)
            ),
        ]
    )
    by_tag = store.search("deploy button", 5, RetrievalFilters(tags=["ops"]))
    assert [p.source_url for p in by_tag] == ["kb://x"]
    recent = store.search("deploy button", 5, RetrievalFilters(updated_after=T0 + timedelta(1)))
    assert [p.source_url for p in recent] == ["kb://y"]
    assert store.search("deploy", 5, RetrievalFilters(version="9")) == []


def test_delete_removes_every_version(store: KnowledgeStore) -> None:
    store.ingest([doc("kb://d", "1", "Delta one."), doc("kb://e", "1", "Echo one.")])
    store.ingest([doc("kb://d", "2", "Delta two.", at=T0 + timedelta(1))])
    assert store.stats().source_urls == ["kb://d", "kb://e"]  # each source once (the console)
    assert store.delete("kb://d") == 2
    assert store.stats().sources == 1
    assert store.stats().source_urls == ["kb://e"]
    with pytest.raises(NotFoundError):
        store.versions("kb://d")


def test_embedded_store_survives_a_restart(embedder: Embedder, tmp_path: Path) -> None:
    # Given an embedded store with a document, closed as a worker shutting down would
    store = KnowledgeStore(EdgeIndex(tmp_path / "kb"), embedder)
    store.ingest([doc("kb://keep", "1", "Persistence is a virtue.")])
    store.close()
    # When it is opened again
    reopened = KnowledgeStore(EdgeIndex(tmp_path / "kb"), embedder)
    # Then the document is there, still the latest version
    assert [p.source_url for p in reopened.search("persistence", 3)] == ["kb://keep"]
    assert reopened.stats().chunks == 1
    reopened.close()
