"""Extraction benchmark on the development set: guided extraction against plain prompting.

    python -m ops.bench.extract                    # all 64 documents, bulk runs, one worker
    python -m ops.bench.extract --docs 48 --json --layout 2x1
    python -m ops.bench.extract --ablation --docs 16   # decode/prompt policies, in process

Documents and gold: ops/bench/data/extract_dev.jsonl (ops/bench/extract_devset.py), four schemas.
The default mode starts one real worker process (demo model when cached, else the tiny one)
under a Redis key prefix of its own and, in one run, measures:
  guided      each schema's documents as a bulk run (`BulkRun`, the code behind
              `qfleet run submit`) of extract jobs, 16 documents a job
  plain       the same documents as generate jobs through the same worker, with the JSON Schema
              shown as it is (no grammar; the JSON is taken from the answer as it comes), and
              the same answers read by guided extraction's value reader
  same tokens after the worker stops: plain generation, in process, of the guided prompts,
              each row stopped at exactly as many tokens as its guided object took
and prints validity, strict field accuracy, exact records, the share of values from code,
code values reported as succeeded, array loops and docs/s (ops/bench/extract_score.py).
`--ablation` runs `run_extract` in process under each `ExtractPolicy` variant instead
(`--variants kept,no-evidence,...`, see VARIANTS). Wrong fields are counted per schema field.
Exits non-zero when a stage could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ops.bench.extract_devset import load
from ops.bench.extract_reread import recording, reread
from ops.bench.extract_reread import save as save_rows
from ops.bench.extract_same_tokens import Layout, generate_exactly
from ops.bench.extract_schemas import SCHEMAS
from ops.bench.extract_score import Score, parse_plain, score
from qfleet.tasks.schemas import ExtractJob
from qfleet.workers.engine.cache import default_cache_root
from qfleet.workers.engine.model import LoadedModel, load_model
from qfleet.workers.engine.tiny import ensure_tiny_model
from qfleet.workers.extraction import ExtractPolicy, extraction_messages, guided_decoder
from qfleet.workers.extraction.fields import read_value
from qfleet.workers.extraction.prompt import PromptStyle
from qfleet.workers.extraction.run import _document_independent_length, _prompts, run_extract
from qfleet.workers.extraction.values import UnreadableError

DEMO_PREFIX = "qwen2.5"
MAX_TOKENS = 256
PLAIN_STYLE: PromptStyle = "schema"
BATCH = 16


def default_model_dir() -> Path:
    """The demo model when it is cached, else the tiny test model (built if needed)."""
    models = default_cache_root() / "models"
    demos = sorted(models.glob(f"{DEMO_PREFIX}*")) if models.is_dir() else []
    return demos[-1] if demos else ensure_tiny_model()


def pick(records: list[dict[str, Any]], docs: int) -> list[dict[str, Any]]:
    """`docs` documents spread evenly over schemas and languages (round robin)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["schema"], record["lang"]), []).append(record)
    chosen: list[dict[str, Any]] = []
    while len(chosen) < min(docs, len(records)):
        for group in groups.values():
            if group and len(chosen) < docs:
                chosen.append(group.pop(0))
    return chosen


def _job(records: list[dict[str, Any]], schema: str, example: bool = False) -> ExtractJob:
    documents = [{"id": r["id"], "text": r["text"]} for r in records]
    # The set's last document of the schema (never among the first 56 picked) as a few-shot.
    shot = [r for r in load() if r["schema"] == schema][-1] if example else None
    return ExtractJob(
        documents=documents,
        json_schema=SCHEMAS[schema],
        max_tokens=MAX_TOKENS,
        examples=[{"text": shot["text"], "output": shot["gold"]}] if shot else [],
    )


def _by_schema(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(record["schema"], []).append(record)
    return grouped


def same_tokens_seconds(
    model: LoadedModel, records: list[dict[str, Any]], lengths: dict[str, int]
) -> float:
    """Plain generation of the guided prompts, each row stopped at its guided token count."""
    total = 0.0
    tokenizer = model.tokenizer
    for schema, group in _by_schema(records).items():
        for start in range(0, len(group), BATCH):
            chunk = group[start : start + BATCH]
            job = _job(chunk, schema)
            policy = ExtractPolicy()
            prompts = _prompts(job, [r["text"] for r in chunk], tokenizer, policy.style)
            static = _document_independent_length(job, tokenizer, prompts, policy.style)
            targets = [max(lengths.get(r["id"], 1), 1) for r in chunk]
            total += generate_exactly(model, prompts, static, targets)
    return total


def _plain_prompt(job: ExtractJob, record: dict[str, Any]) -> list[Any]:
    # Plain prompting's best: the JSON Schema shown as it is, asking for its spellings.
    return extraction_messages(job, record["text"], PLAIN_STYLE)


def read_plain(records: list[dict[str, Any]], plain: dict[str, Any]) -> dict[str, Any]:
    """Plain answers read the way guided ones are (dates, amounts, enum words), per field."""
    out: dict[str, Any] = {}
    by_id = {r["id"]: r for r in records}
    for key, answer in plain.items():
        obj = answer.get("object")
        props = SCHEMAS[by_id[key]["schema"]]["properties"]
        read: dict[str, Any] = {}
        for name, value in (obj or {}).items():
            try:
                read[name] = read_value(value, props.get(name, {})).value
            except UnreadableError:
                read[name] = value
        out[key] = {"status": answer.get("status"), "object": read if obj is not None else None}
    return out


def plain_in_process(model: LoadedModel, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The kept prompt, generated without any grammar; the JSON taken from the answer."""
    from qfleet.workers.engine.generation import GenerationRequest, Sampling, generate

    out: dict[str, Any] = {}
    tokenizer = model.tokenizer
    for schema, group in _by_schema(records).items():
        job = _job(group, schema)
        prompts = _prompts(job, [r["text"] for r in group], tokenizer, PLAIN_STYLE)
        requests = [GenerationRequest(prompt_ids=p, max_new_tokens=MAX_TOKENS) for p in prompts]
        for record, answer in zip(
            group, generate(model.generator, tokenizer, requests, Sampling()), strict=True
        ):
            out[record["id"]] = {"status": "plain", "object": parse_plain(answer.text)}
    return out


def _bulk(fleet: Any, folder: Path, name: str, lines: list[dict[str, Any]], **spec: Any) -> Any:
    """One bulk run through the worker; (output lines by id, seconds)."""
    from qfleet.producer.runs import BulkRun, RunSpec

    source = folder / f"{name}.jsonl"
    source.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    run = RunSpec(
        run_id=f"bench-{name}", input=source, output=folder / f"{name}.out.jsonl",
        errors=folder / f"{name}.err.jsonl", max_tokens=MAX_TOKENS, batch=BATCH, **spec,
    )  # fmt: skip
    started = time.perf_counter()
    BulkRun(fleet, run).execute()
    seconds = time.perf_counter() - started
    out = {}
    for path in (run.output, run.errors):
        if path.exists():
            for line in path.read_text().splitlines():
                record = json.loads(line)
                out[record["id"]] = record
    return out, seconds


def _fleet_runs(
    fleet: Any, folder: Path, records: list[dict[str, Any]], plain_too: bool = True
) -> tuple[Any, Any, Any]:
    """Per schema, the guided bulk run, then the plain one; (guided, plain, seconds)."""
    guided: dict[str, Any] = {}
    plain: dict[str, Any] = {}
    seconds = {"guided": 0.0, "plain": 0.0}
    for schema, group in _by_schema(records).items():
        docs = [{"id": r["id"], "text": r["text"]} for r in group]
        out, spent = _bulk(fleet, folder, schema, docs, json_schema=SCHEMAS[schema], window=2)
        guided.update(out)
        seconds["guided"] += spent
        if not plain_too:
            continue
        job = _job(group[:1], schema)
        asks = [
            {"id": r["id"], "messages": [m.model_dump() for m in _plain_prompt(job, r)]}
            for r in group
        ]
        out, spent = _bulk(fleet, folder, f"{schema}-plain", asks, kind="generate")
        plain.update(out)
        seconds["plain"] += spent
    return guided, plain, seconds


def _through_worker(
    model_dir: Path, records: list[dict[str, Any]], layout: Layout, plain: bool
) -> tuple[Any, Any, Any]:
    """The bulk runs through one real worker: (guided, plain, seconds)."""
    import redis

    from ops.localfleet import WorkerProcess
    from qfleet.producer.client import FleetClient
    from qfleet.tasks.settings import Settings

    prefix = f"qfleet-bench-{uuid.uuid4().hex[:8]}:"
    env = {
        "QFLEET_REDIS_KEY_PREFIX": prefix,
        "QFLEET_MODEL_DIR": str(model_dir),
        "QFLEET_CPU_THREADS": str(layout.threads),
        "QFLEET_ENGINE_REPLICAS": str(layout.replicas),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        worker = WorkerProcess(
            env, folder / "worker.log", hostname="bench@local",
            queues="qfleet.extract,qfleet.generate", concurrency=BATCH,
        ).start(ready_timeout=180)  # fmt: skip
        fleet = FleetClient(Settings(redis_key_prefix=prefix))
        try:
            return _fleet_runs(fleet, folder, records, plain)
        finally:
            worker.stop()
            client = redis.Redis.from_url(fleet.settings.broker)
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                client.delete(key)
            fleet.close()


def run_fleet(
    model_dir: Path, records: list[dict[str, Any]], layout: Layout, plain: bool = True
) -> dict[str, Any]:
    """Guided and plain bulk runs through one worker, then plain generation of the same tokens.

    `plain=False`: the guided runs only (for quick looks; the issue's figures need both).
    """
    guided, plain_out, seconds = _through_worker(model_dir, records, layout, plain)
    if not plain:
        del seconds["plain"]
        return _report(model_dir.name, records, {"guided": guided}, seconds)
    lengths = {k: v.get("usage", {}).get("completion_tokens", 1) for k, v in guided.items()}
    model = load_model(model_dir, layout.options())
    try:
        seconds["same_tokens"] = same_tokens_seconds(model, records, lengths)
    finally:
        model.close()
    plain_items = {
        k: {"status": v.get("status"), "object": parse_plain(v.get("text", ""))}
        for k, v in plain_out.items()
    }
    outputs = {
        "guided": guided,
        "plain": plain_items,
        "plain, read like guided": read_plain(records, plain_items),
    }
    return _report(model_dir.name, records, outputs, seconds)


def _report(
    model: str,
    records: list[dict[str, Any]],
    outputs: dict[str, dict[str, Any]],
    seconds: dict[str, float],
) -> dict[str, Any]:
    figures: dict[str, Any] = {"model": model, "documents": len(records), "seconds": seconds}
    scores: dict[str, Score] = {}
    for method, out in outputs.items():
        scores[method] = score(records, out, SCHEMAS)
        figures[method] = scores[method].figures()
        figures[method]["wrong_by_field"] = scores[method].wrong_by_field()
        if method in seconds:
            figures[method]["docs_per_s"] = len(records) / max(seconds[method], 1e-9)
    guided = "guided" if "guided" in scores else list(scores)[-1]
    figures["wrong_sample"] = [f"{guided}: {line}" for line in scores[guided].wrong[:40]]
    return figures


# Policy variants measured by --ablation: name -> (policy, with one example document).
VARIANTS: dict[str, tuple[ExtractPolicy, bool]] = {
    "kept": (ExtractPolicy(), False),
    "no-evidence": (ExtractPolicy(evidence=False), False),
    "no-calibration": (ExtractPolicy(calibrate=False), False),
    # The job's rows in one engine call, unpadded: how decoding ran before calls were grouped.
    "one-call": (ExtractPolicy(chunk_rows=0, pad=False, parallel=1), False),
    "short-rules": (ExtractPolicy(style="fields-short", evidence=False), False),
    "schema-prompt": (ExtractPolicy(style="schema"), False),
    "forced": (ExtractPolicy(copy_values=False), False),
    "example": (ExtractPolicy(), True),
    "reminder": (ExtractPolicy(style="fields-reminder"), False),
}


def run_ablation(
    model_dir: Path, records: list[dict[str, Any]], layout: Layout, names: list[str],
    plain: bool = True, save: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """`run_extract` in process under each policy variant, on the same documents.

    `save`: the last variant's decoded rows are written there for `--reread`.
    """
    variants = {name: VARIANTS[name] for name in names}
    model = load_model(model_dir, layout.options())
    decoder = guided_decoder(model, model_dir)
    outputs: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    store: dict[str, dict[str, Any]] = {}
    try:
        if plain:
            started = time.perf_counter()
            answers = plain_in_process(model, records)
            seconds["plain prompting (no grammar)"] = time.perf_counter() - started
            outputs["plain prompting (no grammar)"] = answers
            outputs["plain, read like guided"] = read_plain(records, answers)
        for name, (policy, example) in variants.items():
            outputs[name], seconds[name] = {}, 0.0
            store.clear()
            for schema, group in _by_schema(records).items():
                started = time.perf_counter()
                with recording(store):
                    result = run_extract(
                        model, decoder, _job(group, schema, example), submitted_at=None,
                        worker="bench", policy=policy,
                    )  # fmt: skip
                seconds[name] += time.perf_counter() - started
                outputs[name].update({i.id: i.model_dump() for i in result.items})
    finally:
        model.close()
    if save is not None:
        save_rows(save, records, store)
    return _report(model_dir.name, records, outputs, seconds)


def _print(figures: dict[str, Any]) -> None:
    methods = [k for k, v in figures.items() if isinstance(v, dict) and "validity" in v]
    print(f"{figures['model']}: {figures['documents']} documents")
    print(f"{'method':48} valid  fields exact  code  code-ok loops  docs/s")
    for m in methods:
        f = figures[m]
        print(
            f"{m:48} {f['validity']:5.1%} {f['field_accuracy']:6.1%} {f['exact_records']:5.1%} "
            f"{f['from_code']:5.1%} {f['code_values_reported_succeeded']:7d} "
            f"{f['array_loops']:5d} {f.get('docs_per_s', 0):7.3f}"
        )
    print("seconds:", json.dumps({k: round(v, 1) for k, v in figures["seconds"].items()}))
    if "same_tokens" in figures["seconds"]:
        ratio = figures["seconds"]["guided"] / max(figures["seconds"]["same_tokens"], 1e-9)
        print(f"guided / plain generation of the same tokens: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, help="CTranslate2 model folder")
    parser.add_argument("--docs", type=int, default=64, help="documents from the set")
    parser.add_argument(
        "--layout", type=Layout.parse, default=Layout(2, 1),
        help="engine replicas x threads each (default 2x1: the fastest here for extraction)",
    )  # fmt: skip
    parser.add_argument("--ablation", action="store_true", help="policy variants, in process")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="ablation variants")
    parser.add_argument(
        "--no-plain", action="store_true", help="no plain prompting or same-token baseline"
    )
    parser.add_argument("--save", type=Path, help="ablation: keep decoded rows for --reread")
    parser.add_argument("--reread", type=Path, help="read saved rows again, no model")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    records = pick(load(), args.docs)
    model_dir = args.model_dir or default_model_dir()
    try:
        if args.reread:
            outputs = {"re-read, no evidence": reread(args.reread, records, evidence=False)}
            outputs["re-read"] = reread(args.reread, records)
            figures = _report("saved rows", records, outputs, {})
        elif args.ablation:
            figures = run_ablation(
                model_dir, records, args.layout, args.variants.split(","),
                plain=not args.no_plain, save=args.save,
            )  # fmt: skip
        else:
            figures = run_fleet(model_dir, records, args.layout, plain=not args.no_plain)
    except Exception as exc:  # a stage that could not run fails the benchmark
        print(f"benchmark stage failed: {exc!r}", file=sys.stderr)
        raise SystemExit(1) from exc
    if args.json:
        print(json.dumps(figures, indent=2, ensure_ascii=False))
    else:
        _print(figures)
        for method in ("guided", "kept", "re-read"):
            if method in figures:
                wrong = json.dumps(figures[method]["wrong_by_field"])
                print(f"{method}, wrong by field: {wrong}")
        print("\n".join(figures["wrong_sample"][:25]))


if __name__ == "__main__":
    main()
