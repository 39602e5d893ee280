"""Answer quality of retrieval-augmented jobs on the bilingual corpus, scored like `qfleet eval`.

    python -m ops.bench.rag_answers [--model-dir DIR] [--threads 2] [--limit N] [--json]

The set is `ops/bench/data/rag_eval.jsonl` (46 items, an `qfleet eval` evaluation set): 40
questions the knowledge base in tests/knowledge/corpus answers (20 English, 20 Chinese) and 6 it
cannot. In one process, with the demo model (or --model-dir) and the default embedder, every
question is answered twice: with its top-3 passages (the worker's own prompt, `augment_messages`)
and closed-book (no passages), the baseline of the same run. It prints answer accuracy (the
expected answer contained in the answer), hit@3 per language, and abstention on the questions
the knowledge base cannot answer, with the ratio of retrieval-augmented to closed-book accuracy.
Exits non-zero when a stage could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from qfleet.workers.jobs import run_generate

from ops.bench.extract import default_model_dir
from qfleet.producer.datasets import EvalItem, read_eval_set
from qfleet.producer.evaluate import ItemScore, score_item
from qfleet.tasks.schemas import GenerateJob
from qfleet.workers.engine.batcher import BatchPolicy, DynamicBatcher
from qfleet.workers.engine.model import EngineOptions, load_model
from qfleet.workers.knowledge.rag import RetrievedContext, augment_messages

EVAL_SET = Path(__file__).parent / "data" / "rag_eval.jsonl"


def open_store(folder: Path) -> Any:
    """The corpus of tests/knowledge in a fresh embedded knowledge base."""
    from qfleet.workers.knowledge.edge_index import EdgeIndex
    from qfleet.workers.knowledge.embedder import Embedder
    from qfleet.workers.knowledge.embedder_build import ensure_embedder_model
    from qfleet.workers.knowledge.store import KnowledgeStore
    from tests.knowledge.retrieval_eval import load_corpus

    documents, _ = load_corpus()
    store = KnowledgeStore(EdgeIndex(folder), Embedder(ensure_embedder_model(), device="cpu"))
    store.ingest(documents)
    return store


def answer_all(
    batcher: DynamicBatcher, store: Any, items: list[EvalItem], *, with_passages: bool
) -> list[ItemScore]:
    """Answer every item (submitted together, so the batcher groups them) and score it."""
    futures = []
    for item in items:
        job = GenerateJob.model_validate({**item.input, "retrieval": None})
        passages = store.search(job.prompt or "", 3) if with_passages else []
        context = RetrievedContext(passages=passages, kb_version=1) if with_passages else None
        augmented, sources = augment_messages(job, context)
        futures.append((item, augmented, sources))

    def one(case: tuple[EvalItem, GenerateJob, list[Any]]) -> ItemScore:
        item, augmented, sources = case
        result = run_generate(batcher, augmented, submitted_at=None, worker="bench")
        return score_item(item, result.model_copy(update={"sources": sources}))

    # One thread per job slot, as a worker's threads pool does: the batcher groups them.
    with ThreadPoolExecutor(max_workers=batcher.policy.max_batch_size) as pool:
        return list(pool.map(one, futures))


def summarise(scores: list[ItemScore]) -> dict[str, dict[str, float]]:
    """Accuracy, hit@3 and abstention per language (and overall)."""
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for item in scores:
        for group in (item.slice.get("language", "-"), "all"):
            if "abstained" in item.scores:
                rows[group]["abstention"].append(item.scores["abstained"])
                continue
            rows[group]["accuracy"].append(item.primary or 0.0)
            rows[group]["marker_only"].append(item.scores.get("marker_only", 0.0))
            if "hit_at_k" in item.scores:
                rows[group]["hit@3"].append(item.scores["hit_at_k"])
    return {
        group: {name: sum(v) / len(v) for name, v in metrics.items()}
        for group, metrics in rows.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="Only the first N items (smoke).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    items = read_eval_set(EVAL_SET)
    items = items[: args.limit] if args.limit else items
    model_dir = args.model_dir or default_model_dir()
    try:
        model = load_model(model_dir, EngineOptions(cpu_threads=args.threads))
        batcher = DynamicBatcher(model, BatchPolicy(max_batch_size=8, max_wait_ms=50))
        with tempfile.TemporaryDirectory() as folder:
            store = open_store(Path(folder))
            rag = summarise(answer_all(batcher, store, items, with_passages=True))
            closed = summarise(answer_all(batcher, store, items, with_passages=False))
            store.close()
        batcher.close()
    except Exception as exc:  # a stage that could not run fails the benchmark
        print(f"rag_answers: could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    report = {
        "model": model.manifest.model_id,
        "items": len(items),
        "rag": rag,
        "closed_book": closed,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"model {report['model']}, {len(items)} items ({EVAL_SET.name})")
    header = ("language", "accuracy", "closed-book", "ratio", "hit@3", "abstain", "[n]-only")
    print("{:<9} {:>9} {:>12} {:>6} {:>6} {:>8} {:>9}".format(*header))
    for group in sorted(rag):
        r, c = rag[group], closed.get(group, {})
        base = c.get("accuracy", 0.0)
        ratio = f"{r.get('accuracy', 0.0) / base:.2f}" if base else "-"
        print(
            f"{group:<9} {r.get('accuracy', 0):>9.3f} {base:>12.3f} "
            f"{ratio:>6} {r.get('hit@3', 0):>6.3f} {r.get('abstention', 0):>8.3f} "
            f"{r.get('marker_only', 0):>9.3f}"
        )


if __name__ == "__main__":
    main()
