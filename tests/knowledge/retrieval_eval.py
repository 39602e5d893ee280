"""Retrieval quality on the bilingual corpus in `corpus/`: hit@1 and hit@3 per language and signal.

Run it to print the table in docs/knowledge.md:
    python -m tests.knowledge.retrieval_eval
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

from qfleet.tasks.knowledge import KnowledgeDocument
from qfleet.workers.knowledge.edge_index import EdgeIndex
from qfleet.workers.knowledge.embedder import Embedder
from qfleet.workers.knowledge.store import KnowledgeStore, Signals

CORPUS = Path(__file__).parent / "corpus"
SIGNALS: tuple[Signals, ...] = ("dense", "lexical", "hybrid")


def load_corpus() -> tuple[list[KnowledgeDocument], list[dict[str, str]]]:
    """The documents (tagged with their language) and the queries with their relevant source."""
    documents = []
    for line in (CORPUS / "documents.jsonl").read_text(encoding="utf-8").splitlines():
        fields = json.loads(line)
        documents.append(KnowledgeDocument(tags=[fields.pop("lang")], **fields))
    queries = [
        json.loads(line)
        for line in (CORPUS / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    return documents, queries


def evaluate(store: KnowledgeStore, queries: list[dict[str, str]]) -> dict[str, dict[str, float]]:
    """`{"<signal>/<lang>": {"hit@1": ..., "hit@3": ...}}` over `queries`."""
    hits: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for signals in SIGNALS:
        for query in queries:
            found = [p.source_url for p in store.search(query["query"], 3, signals=signals)]
            relevant = query["relevant"]
            hits[f"{signals}/{query['lang']}"].append((found[:1] == [relevant], relevant in found))
    return {
        name: {
            "hit@1": sum(h1 for h1, _ in rows) / len(rows),
            "hit@3": sum(h3 for _, h3 in rows) / len(rows),
        }
        for name, rows in hits.items()
    }


def main() -> None:
    """Print hit@1/hit@3 per signal and language with the default embedder."""
    from qfleet.workers.knowledge.embedder_build import ensure_embedder_model

    documents, queries = load_corpus()
    with tempfile.TemporaryDirectory() as folder:
        embedder = Embedder(ensure_embedder_model(), device="cpu")
        store = KnowledgeStore(EdgeIndex(Path(folder)), embedder)
        store.ingest(documents)
        for name, scores in evaluate(store, queries).items():
            print(f"{name:16s} hit@1 {scores['hit@1']:.2f}  hit@3 {scores['hit@3']:.2f}")
        store.close()


if __name__ == "__main__":
    main()
