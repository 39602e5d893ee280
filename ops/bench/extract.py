"""Extraction benchmark: schema-guaranteed decoding against plain generation of the same tokens.

    python -m ops.bench.extract [--model-dir DIR] [--docs 32] [--batch 16] [--json]
    python -m ops.bench.extract --fleet --docs 200      # a bulk run through Redis and a worker
    python -m ops.bench.extract --tables                # who is youngest / average age, 2 ways

Uses the demo model (`qfleet model pull demo`, cached under ~/.cache/qfleet/models/) when no
--model-dir is given and it is there, else the tiny test model. For the same prompts it measures,
in one run and one process:
  constrained    qfleet's guided decoder (speculate, check with llguidance, repair), batched
  unconstrained  the same generate_batch, no grammar, each row stopped after exactly as many
                 tokens as its constrained object took (end token disabled)
and prints validity (jsonschema, formats asserted), docs/s, tokens, repairs per document and
the constrained/unconstrained time ratio.

With --fleet it instead runs the documents as a bulk run (`producer.runs.BulkRun`, the code
behind `qfleet run submit`) against one real worker process over Redis (under a key prefix of
its own, deleted afterwards) and prints validity of the output file and docs/s end to end.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from qfleet.tasks.schemas import ExtractJob
from qfleet.workers.engine.cache import default_cache_root
from qfleet.workers.engine.model import EngineOptions, LoadedModel, load_model
from qfleet.workers.engine.tiny import ensure_tiny_model
from qfleet.workers.extraction import (
    _document_independent_length,
    _prompts,
    guided_decoder,
    run_extract,
)

DEMO_PREFIX = "qwen2.5"

PERSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 60},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "city": {"type": "string", "maxLength": 40},
        "born": {"type": "string", "format": "date"},
        "role": {"type": "string", "enum": ["engineer", "teacher", "doctor", "artist", "other"]},
        "employed": {"type": "boolean"},
        "skills": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 3},
        "nickname": {"type": ["string", "null"], "maxLength": 30},
    },
    "required": ["name", "age", "city", "born", "role", "employed", "skills", "nickname"],
}

_FIRST = ["Ada", "Bruno", "Chen", "Dalia", "Emeka", "Fatima", "Goran", "Hana", "Ivan", "Jun"]
_LAST = ["Lovelace", "Silva", "Wei", "Haddad", "Okafor", "Rahman", "Novak", "Sato", "Petrov"]
_CITIES = ["London", "Lisbon", "Shanghai", "Beirut", "Lagos", "Dhaka", "Zagreb", "Osaka", "Kyiv"]
_ROLES = ["engineer", "teacher", "doctor", "painter", "baker"]
_SKILLS = ["welding", "Python", "violin", "surgery", "chess", "pottery", "Spanish", "algebra"]


def synthetic_documents(count: int, seed: int = 7) -> list[dict[str, str]]:
    """Short biographies written several ways, so the model must read, not copy."""
    rng = random.Random(seed)
    docs = []
    for n in range(count):
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        year, month, day = rng.randint(1940, 2005), rng.randint(1, 12), rng.randint(1, 28)
        skills = rng.sample(_SKILLS, rng.randint(0, 3))
        facts = [
            f"{name} was born on {year}-{month:02d}-{day:02d} and is {2024 - year} years old.",
            f"{name.split()[0]} lives in {rng.choice(_CITIES)}, a {rng.choice(_ROLES)}.",
            f"Skills: {', '.join(skills) or 'none listed'}.",
            rng.choice(["Currently unemployed.", "Employed full time.", "Works part time."]),
            rng.choice(["", f"Friends call them {name.split()[0][:2]}y.", ""]),
        ]
        rng.shuffle(facts)
        docs.append({"id": f"doc-{n:05d}", "text": " ".join(f for f in facts if f)})
    return docs


def default_model_dir() -> Path:
    """The demo model when it is cached, else the tiny test model (built if needed)."""
    models = default_cache_root() / "models"
    demos = sorted(models.glob(f"{DEMO_PREFIX}*")) if models.is_dir() else []
    return demos[-1] if demos else ensure_tiny_model()


def _unconstrained(model: LoadedModel, job: ExtractJob, lengths: list[int]) -> float:
    """Plain greedy generation of the same prompts, each row stopped at its constrained length.

    It gets the same static-prompt cache as the constrained path, so the ratio is the cost of
    the guarantee alone.
    """
    tokenizer = model.tokenizer
    prompts = _prompts(job, tokenizer)
    static = prompts[0][: _document_independent_length(job, tokenizer, prompts)]
    counts = [0] * len(prompts)

    def stop_at_target(step: Any) -> bool:
        counts[step.batch_id] += 1
        return counts[step.batch_id] >= lengths[step.batch_id]

    started = time.perf_counter()
    model.generator.generate_batch(
        [tokenizer.tokens(p[len(static) :]) for p in prompts],
        static_prompt=tokenizer.tokens(static) if static else None,
        max_length=max(lengths),
        include_prompt_in_result=False,
        end_token=[],
        sampling_topk=1,
        callback=stop_at_target,
    )
    return time.perf_counter() - started


def run(model_dir: Path, docs: int, batch: int, threads: int) -> dict[str, Any]:
    """Measure both ways on the same documents; returns the figures."""
    model = load_model(model_dir, EngineOptions(cpu_threads=threads))
    documents = synthetic_documents(docs)
    jobs = [
        ExtractJob(documents=documents[i : i + batch], json_schema=PERSON_SCHEMA, max_tokens=160)
        for i in range(0, len(documents), batch)
    ]
    decoder = guided_decoder(model, model_dir)
    items, constrained_s, plain_s = [], 0.0, 0.0
    try:
        run_extract(model, decoder, jobs[0], submitted_at=None, worker="bench")  # warm-up
        # Interleaved per job, so load from elsewhere on the machine hits both sides alike.
        for job in jobs:
            started = time.perf_counter()
            result = run_extract(model, decoder, job, submitted_at=None, worker="bench")
            constrained_s += time.perf_counter() - started
            items.extend(result.items)
            lengths = [max(item.completion_tokens, 1) for item in result.items]
            plain_s += _unconstrained(model, job, lengths)
    finally:
        model.close()
    lengths = [item.completion_tokens for item in items]
    validator = Draft202012Validator(
        jobs[0].json_schema, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    valid = sum(i.status == "succeeded" and validator.is_valid(i.object) for i in items)
    return {
        "model": model.manifest.model_id,
        "device": model.device,
        "documents": len(items),
        "batch": batch,
        "valid": valid,
        "validity": valid / len(items),
        "docs_per_s": len(items) / constrained_s,
        "tokens_per_doc": sum(lengths) / len(lengths),
        "repairs_per_doc": sum(i.repairs for i in items) / len(items),
        "cut_by_budget": sum(i.finish_reason == "length" for i in items),
        "constrained_s": constrained_s,
        "unconstrained_s": plain_s,
        "ratio": constrained_s / plain_s,
        "sample": items[0].object,
    }


TABLES = {
    "html": "<table><tr><th>name</th><th>age</th></tr><tr><td>Ann</td><td>31</td></tr>"
    "<tr><td>Bob</td><td>27</td></tr><tr><td>Cy</td><td>29</td></tr></table>",
    "markdown": "| name | age |\n|------|-----|\n| Ann  | 31  |\n| Bob  | 27  |\n| Cy   | 29  |",
}
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "youngest": {"type": "string", "enum": ["Ann", "Bob", "Cy"]},
        "average_age": {"type": "number", "minimum": 0, "maximum": 150},
    },
    "required": ["youngest", "average_age"],
}
ROWS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "people": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 40},
                    "age": {"type": "integer", "minimum": 0, "maximum": 150},
                },
                "required": ["name", "age"],
            },
        }
    },
    "required": ["people"],
}


def run_tables(model_dir: Path, threads: int) -> dict[str, Any]:
    """Who is youngest and the average age (Bob, 29): asked directly, and from extracted rows."""
    model = load_model(model_dir, EngineOptions(cpu_threads=threads))
    decoder = guided_decoder(model, model_dir)
    documents = [{"id": name, "text": text} for name, text in TABLES.items()]
    try:
        direct = run_extract(
            model,
            decoder,
            ExtractJob(
                documents=documents,
                json_schema=ANSWER_SCHEMA,
                instructions="Answer from the table: who is youngest, and the average age.",
                max_tokens=32,
            ),
            submitted_at=None,
            worker="bench",
        )
        rows = run_extract(
            model,
            decoder,
            ExtractJob(
                documents=documents,
                json_schema=ROWS_SCHEMA,
                instructions="List every row of the table.",
                max_tokens=128,
            ),
            submitted_at=None,
            worker="bench",
        )
    finally:
        model.close()
    figures: dict[str, Any] = {
        "model": model_dir.name,
        "expected": {"youngest": "Bob", "average_age": 29},
    }
    for asked, got in zip(direct.items, rows.items, strict=True):
        people = (got.object or {}).get("people") or [{"name": "-", "age": 0}]
        figures[asked.id] = {
            "asked_directly": asked.object,
            "from_rows": {
                "youngest": min(people, key=lambda p: p["age"])["name"],
                "average_age": sum(p["age"] for p in people) / len(people),
                "rows": people,
            },
        }
    return figures


def run_fleet(model_dir: Path, docs: int, batch: int, threads: int) -> dict[str, Any]:
    """The documents as a bulk run through Redis and one worker process; validity and docs/s."""
    import tempfile
    import uuid

    import redis

    from ops.localfleet import WorkerProcess
    from qfleet.producer.client import FleetClient
    from qfleet.producer.runs import BulkRun, RunSpec
    from qfleet.tasks.settings import Settings

    prefix = f"qfleet-bench-{uuid.uuid4().hex[:8]}:"
    env = {
        "QFLEET_REDIS_KEY_PREFIX": prefix,
        "QFLEET_MODEL_DIR": str(model_dir),
        "QFLEET_CPU_THREADS": str(threads),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = folder / "docs.jsonl"
        source.write_text("".join(json.dumps(d) + "\n" for d in synthetic_documents(docs)))
        spec = RunSpec(
            run_id="bench", input=source, output=folder / "out.jsonl",
            errors=folder / "errors.jsonl", json_schema=PERSON_SCHEMA, max_tokens=160,
            batch=batch, window=2,
        )  # fmt: skip
        worker = WorkerProcess(
            env, folder / "worker.log", hostname="bench@local", queues="qfleet.extract",
            concurrency=1,
        ).start(ready_timeout=120)  # fmt: skip
        fleet = FleetClient(Settings(redis_key_prefix=prefix))
        try:
            started = time.perf_counter()
            progress = BulkRun(fleet, spec).execute()
            seconds = time.perf_counter() - started
            lines = [json.loads(x) for x in spec.output.read_text().splitlines()]
        finally:
            worker.stop()
            client = redis.Redis.from_url(fleet.settings.broker)
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                client.delete(key)
            fleet.close()
    normalised = ExtractJob(documents=[{"id": "x", "text": ""}], json_schema=PERSON_SCHEMA)
    validator = Draft202012Validator(
        normalised.json_schema, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    valid = sum(x["status"] == "succeeded" and validator.is_valid(x["object"]) for x in lines)
    return {
        "model": model_dir.name,
        "documents": progress.total,
        "lines": len(lines),
        "unique_ids": len({x["id"] for x in lines}),
        "valid": valid,
        "validity": valid / max(progress.total, 1),
        "seconds": seconds,
        "docs_per_s": progress.total / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, help="CTranslate2 model folder")
    parser.add_argument("--docs", type=int, default=32, help="documents to extract from")
    parser.add_argument("--batch", type=int, default=16, help="documents per extract job")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--fleet", action="store_true", help="a bulk run through a worker")
    parser.add_argument("--tables", action="store_true", help="table questions, two ways")
    args = parser.parse_args()
    if args.tables:
        print(json.dumps(run_tables(args.model_dir or default_model_dir(), args.threads), indent=2))
        return
    if args.fleet:
        figures = run_fleet(
            args.model_dir or default_model_dir(), args.docs, args.batch, args.threads
        )
        print(json.dumps(figures, indent=2))
        return
    figures = run(args.model_dir or default_model_dir(), args.docs, args.batch, args.threads)
    if args.json:
        print(json.dumps(figures, indent=2, default=str))
        return
    print(
        f"{figures['model']} on {figures['device']}: {figures['documents']} documents, "
        f"batch {figures['batch']}\n"
        f"  valid objects        {figures['valid']}/{figures['documents']} "
        f"({100 * figures['validity']:.1f}%)\n"
        f"  docs/s (constrained) {figures['docs_per_s']:.2f}\n"
        f"  tokens/doc           {figures['tokens_per_doc']:.1f}, "
        f"repairs/doc {figures['repairs_per_doc']:.2f}, cut by budget {figures['cut_by_budget']}\n"
        f"  constrained          {figures['constrained_s']:.2f} s\n"
        f"  unconstrained        {figures['unconstrained_s']:.2f} s (same prompts/tokens)\n"
        f"  ratio                {figures['ratio']:.2f}x constrained/unconstrained\n"
        f"  sample               {json.dumps(figures['sample'], ensure_ascii=False)}"
    )


if __name__ == "__main__":
    main()
