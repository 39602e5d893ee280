"""Knowledge-base benchmark: ingest 2,000 chunks, run 100 queries, compare embedded stores.

    python -m ops.bench.kb [--chunks 2000] [--queries 100] [--device cpu|cuda]

Prints, all measured in this run:
  * the embedding rate alone (the baseline: ingest cannot beat it),
  * each store candidate's write rate with vectors precomputed, as a ratio to that baseline,
    and whether its data survives closing and reopening,
  * end-to-end ingest (chunk, embed, upsert, supersede) into the default store, chunks/s,
  * query latency p50/p95 over the queries (embed + hybrid search).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from qfleet.tasks.knowledge import KnowledgeDocument
from qfleet.workers.knowledge.edge_index import EdgeIndex
from qfleet.workers.knowledge.embedder import Embedder
from qfleet.workers.knowledge.embedder_build import ensure_embedder_model
from qfleet.workers.knowledge.index import IndexPoint, VectorIndex
from qfleet.workers.knowledge.lexical import document_vector
from qfleet.workers.knowledge.store import KnowledgeStore, chunk_id

_EN = (
    "The {noun} service stores {thing} for {days} days before it is archived. "
    "Operators rotate the {thing} keys every {days} hours and page the {noun} team on errors. "
    "Customers on the {noun} plan may raise the {thing} limit to {n} requests per minute. "
)
_ZH = (
    "{noun}服务会把{thing}保存{days}天，之后归档。运维人员每{days}小时轮换一次密钥，"
    "出错时通知值班同事。套餐用户可以把上限提高到每分钟{n}次请求。"
)
_NOUNS = ("billing", "storage", "gateway", "search", "identity", "backup", "metrics", "queue")
_THINGS = ("logs", "snapshots", "invoices", "tokens", "sessions", "events", "reports")
_ZH_NOUNS = ("计费", "存储", "网关", "搜索", "身份", "备份", "监控", "队列")
_ZH_THINGS = ("日志", "快照", "发票", "令牌", "会话", "事件", "报表")
# Candidates that are slow to write get a smaller sample (their rate is what matters).
_SLOW_SAMPLE = 200


def synthetic_chunks(count: int, rng: random.Random) -> list[str]:
    """`count` distinct passages of about 120-180 tokens, one in four Chinese."""
    chunks = []
    for i in range(count):
        fields = {"days": rng.randint(2, 400), "n": rng.randint(100, 9000)}
        if i % 4 == 3:
            text = _ZH.format(noun=rng.choice(_ZH_NOUNS), thing=rng.choice(_ZH_THINGS), **fields)
            chunks.append(f"第{i}条。" + text * 2)
        else:
            text = _EN.format(noun=rng.choice(_NOUNS), thing=rng.choice(_THINGS), **fields)
            chunks.append(f"Note {i}. " + text * 2)
    return chunks


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def candidate_indexes(folder: Path) -> dict[str, tuple[Callable[[], VectorIndex], bool]]:
    """name -> (open a fresh index, whether it claims to persist)."""
    from qdrant_client import QdrantClient

    from qfleet.workers.knowledge.server_index import ServerIndex

    return {
        "qdrant-edge (default)": (lambda: EdgeIndex(folder / "edge"), True),
        "qdrant-client path=": (
            lambda: ServerIndex(QdrantClient(path=str(folder / "local")), "kb"),
            True,
        ),
        "qdrant-client :memory:": (
            lambda: ServerIndex(QdrantClient(location=":memory:"), "kb"),
            False,
        ),
    }


def bench_store_writes(points: list[IndexPoint], dim: int, baseline: float, folder: Path) -> None:
    print("\nstore writes, vectors precomputed (batches of 256):")
    for name, (open_index, persists) in candidate_indexes(folder).items():
        sample = points if "path=" not in name else points[:_SLOW_SAMPLE]
        index = open_index()
        index.ensure_collection(dim)
        started = time.perf_counter()
        for start in range(0, len(sample), 256):
            index.upsert(sample[start : start + 256])
        seconds = time.perf_counter() - started
        index.flush()
        index.close()
        survived = "n/a (volatile)"
        if persists:
            reopened = open_index()
            reopened.ensure_collection(dim)
            survived = f"{reopened.count([])}/{len(sample)} after reopen"
            reopened.close()
        rate = len(sample) / seconds
        print(
            f"  {name:24s} {rate:9.0f} points/s  ({rate / baseline:6.2f}x the embedding rate; "
            f"{len(sample)} points; {survived})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=2_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)  # qdrant-client local mode's size advice
    rng = random.Random(7)
    texts = synthetic_chunks(args.chunks, rng)
    embedder = Embedder(ensure_embedder_model(), device=args.device, batch_size=64)
    print(f"embedder {embedder.model_id} on {embedder.device} ({embedder.compute_type})")

    embedder.embed(texts[:64])  # warm-up: first calls allocate and pick kernels
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    baseline = len(texts) / (time.perf_counter() - started)
    print(f"embedding alone: {baseline:.0f} chunks/s ({len(texts)} chunks, baseline)")
    points = [
        IndexPoint(
            id=chunk_id(f"bench://{i}", "1", 0),
            dense=vectors[i].tolist(),
            sparse=document_vector(text),
            payload={"source": f"bench://{i}", "version": "1", "latest": 1, "text": text},
        )
        for i, text in enumerate(texts)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bench_store_writes(points, embedder.dim, baseline, folder)
        bench_end_to_end(texts, embedder, baseline, folder / "e2e", args.queries, rng)


def bench_end_to_end(
    texts: list[str],
    embedder: Embedder,
    baseline: float,
    folder: Path,
    queries: int,
    rng: random.Random,
) -> None:
    store = KnowledgeStore(EdgeIndex(folder), embedder)
    documents = [
        KnowledgeDocument(source_url=f"bench://doc/{i}", version="1", text=text)
        for i, text in enumerate(texts)
    ]
    seconds = timed(
        lambda: [store.ingest(documents[i : i + 100]) for i in range(0, len(documents), 100)]
    )
    stats = store.stats()
    rate = stats.chunks / seconds
    print(
        f"\nend-to-end ingest into qdrant-edge: {stats.chunks} chunks in {seconds:.1f}s = "
        f"{rate:.0f} chunks/s ({rate / baseline:.2f}x the embedding rate)"
    )
    latencies = []
    for _ in range(queries):
        source = rng.choice(texts)
        # A question-sized query: eight words, or twenty characters of Chinese.
        query = " ".join(source.split()[:8]) if source.isascii() else source[:20]
        started = time.perf_counter()
        store.search(query, 5)
        latencies.append((time.perf_counter() - started) * 1000)
    p50 = statistics.median(latencies)
    p95 = statistics.quantiles(latencies, n=20)[18]
    print(f"queries: {queries}, p50 {p50:.1f} ms, p95 {p95:.1f} ms (embed + hybrid search, top 5)")
    store.close()


if __name__ == "__main__":
    main()
