"""RAG benchmark: answer accuracy, hit@3 per language and abstention on a knowledge base of our own.

    python -m ops.bench.rag                      # the demo model, all 44 questions
    python -m ops.bench.rag --split test         # only the held-out half (floor tuned on `tune`)
    python -m ops.bench.rag --tiny               # smoke run: the tiny model, six questions
    python -m ops.bench.rag --json out.json      # also write every answer and figure

The knowledge base (`ops/bench/data/rag/documents.jsonl`: product manuals, policies and release
notes in English and Chinese, some with a superseding version) is ingested into a private store
by a real knowledge worker (qfleet.ingest + qfleet.retrieve), and each question goes through
it as a generate job with retrieval, answered by a real generate worker, both under a Redis key
prefix of this run's own (deleted afterwards). Printed per slice (all / en / zh):

  accuracy          answerable questions whose answer holds every gold fact (normalised)
  hit@3             answerable questions with a gold source among the top 3 retrieved
  abstention        unanswerable questions where the job said it does not know
  false_abstention  answerable questions where it did

Exits non-zero when a stage (workers, ingest, a job) fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from ops.bench.rag_scoring import (
    Outcome,
    Question,
    format_table,
    load_documents,
    load_questions,
    summarise,
)
from ops.localfleet import WorkerProcess
from qfleet.producer.client import FleetClient
from qfleet.producer.knowledge import KnowledgeClient
from qfleet.tasks.knowledge import IngestJob, KnowledgeDocument
from qfleet.tasks.schemas import GenerateJob
from qfleet.tasks.settings import Settings

TINY_QUESTIONS = ("en01", "en13", "zh01", "zh12", "un01", "un04")
# hit@3 measures the ranking: the relevance floor's cost shows as false abstentions instead.
RANKING_ONLY = {"min_relevance": 0.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="smoke run: tiny model, 6 questions")
    parser.add_argument("--model-dir", type=Path, help="generation model (default: demo model)")
    parser.add_argument("--embedder-dir", type=Path, help="embedder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--split", choices=("all", "tune", "test"), default="all")
    parser.add_argument("--top-k", type=int, default=3, help="passages given to the model")
    parser.add_argument("--max-tokens", type=int, default=80)
    parser.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for workers")
    parser.add_argument("--json", type=Path, help="write every answer and the figures here")
    return parser.parse_args(argv)


def _model_dir(args: argparse.Namespace) -> Path:
    if args.model_dir:
        return Path(args.model_dir)
    if args.tiny:
        from qfleet.workers.engine.tiny import ensure_tiny_model

        return ensure_tiny_model()
    from qfleet.workers.engine.demo_model import demo_model_dir

    return demo_model_dir()


def _embedder_dir(args: argparse.Namespace) -> Path:
    if args.embedder_dir:
        return Path(args.embedder_dir)
    from qfleet.workers.knowledge.embedder_build import ensure_embedder_model

    return ensure_embedder_model()


@contextmanager
def local_fleet(args: argparse.Namespace, folder: Path) -> Iterator[FleetClient]:
    """A knowledge worker and a generate worker under a key prefix of this run's own."""
    settings = Settings()
    prefix = f"qfleet-bench-rag-{uuid.uuid4().hex[:8]}:"
    env = {
        "QFLEET_BROKER_URL": str(settings.broker_url),
        "QFLEET_REDIS_KEY_PREFIX": prefix,
        "QFLEET_MODEL_DIR": str(_model_dir(args)),
        "QFLEET_KB_DIR": str(folder / "kb"),
        "QFLEET_EMBEDDER_DIR": str(_embedder_dir(args)),
        "QFLEET_ANSWER_CACHE_TTL_S": "0",
        "QFLEET_CPU_THREADS": "2",
        **dict(item.split("=", 1) for item in args.env),
    }
    kb_env = {k: v for k, v in env.items() if k != "QFLEET_MODEL_DIR"}
    kb = WorkerProcess(
        kb_env, folder / "kb.log", hostname="kb@bench", queues="qfleet.ingest,qfleet.retrieve"
    )
    gen = WorkerProcess(env, folder / "gen.log", hostname="gen@bench", concurrency=2)
    client = FleetClient(Settings(broker_url=settings.broker_url, redis_key_prefix=prefix))
    try:
        kb.start(ready_timeout=120)
        gen.start(ready_timeout=180)
        yield client
    finally:
        client.close()
        for process in (gen, kb):
            process.stop()
        store = redis.Redis.from_url(str(settings.broker_url))
        for key in store.scan_iter(match=f"{prefix}*", count=1000):
            store.delete(key)
        store.close()


def ingest(knowledge: KnowledgeClient) -> None:
    """Every document in order, one job each, so a later version supersedes the earlier."""
    for raw in load_documents():
        fields = {k: v for k, v in raw.items() if k != "lang"}
        document = KnowledgeDocument(tags=[raw["lang"]], **fields)
        knowledge.ingest(IngestJob(documents=[document]))


def run_questions(
    fleet: FleetClient, questions: list[Question], args: argparse.Namespace
) -> list[Outcome]:
    """Retrieve the top 3 (hit@3), then answer every question as one generate job each."""
    knowledge = KnowledgeClient(fleet)
    retrieved = {
        q.id: [
            p.source_url
            for p in knowledge.search(q.question, top_k=3, filters=RANKING_ONLY).passages
        ]
        for q in questions
    }
    job_ids = {
        q.id: fleet.submit(
            GenerateJob(
                prompt=q.question,
                max_tokens=args.max_tokens,
                temperature=0.0,
                retrieval={"top_k": args.top_k},
            )
        )
        for q in questions
    }
    outcomes = []
    for q in questions:
        result = fleet.wait(job_ids[q.id], timeout=900)
        fields: dict[str, Any] = result.model_dump(mode="json")
        outcomes.append(
            Outcome(
                question=q,
                retrieved=retrieved[q.id],
                answer=str(fields.get("text", "")),
                abstained_flag=fields.get("abstained"),
                citations=list(fields.get("citations") or []),
            )
        )
    return outcomes


def select(questions: list[Question], args: argparse.Namespace) -> list[Question]:
    if args.tiny:
        return [q for q in questions if q.id in TINY_QUESTIONS]
    return [q for q in questions if args.split == "all" or q.split == args.split]


def report(outcomes: list[Outcome], args: argparse.Namespace, seconds: float) -> None:
    for o in outcomes:
        mark = "ok " if o.correct else ("abs" if o.abstained else "no ")
        if not o.question.answerable:
            mark = "ABS" if o.abstained else "ANS"
        answer = " ".join(o.answer.split())[:110]
        print(f"  {mark} {o.question.id} hit@3={int(o.hit_at_3)} {answer}")
    table = summarise(outcomes)
    print(f"\n{len(outcomes)} questions in {seconds:.0f}s (shared CPU: timings are noisy)")
    print(format_table(table))
    if args.json:
        rows = [
            {
                "id": o.question.id,
                "answer": o.answer,
                "retrieved": o.retrieved,
                "correct": o.correct,
                "abstained": o.abstained,
                "citations": o.citations,
            }
            for o in outcomes
        ]
        args.json.write_text(
            json.dumps({"figures": table, "answers": rows}, ensure_ascii=False, indent=1),
            encoding="utf-8",
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    questions = select(load_questions(), args)
    if args.tiny:
        args.max_tokens = min(args.max_tokens, 16)
    with tempfile.TemporaryDirectory(prefix="qfleet-bench-rag-") as tmp:
        try:
            with local_fleet(args, Path(tmp)) as fleet:
                print(f"ingesting {len(load_documents())} document versions")
                ingest(KnowledgeClient(fleet))
                started = time.perf_counter()
                outcomes = run_questions(fleet, questions, args)
        except Exception as exc:  # any stage that fails makes the run fail
            print(f"stage failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            for log in sorted(Path(tmp).glob("*.log")):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            return 1
    report(outcomes, args, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
