"""Priority inside the worker: an interactive job's latency when idle and under a bulk backlog.

    python -m ops.bench.priority [--tiny] [--model-dir DIR] [--bulk 48] [--bulk-tokens 256]

One real worker process over Redis (the demo model unless --tiny or --model-dir), twice in one
run: with the interactive lane off (QFLEET_WORKER_INTERACTIVE_SLOTS=0), then on (--slots, the
default setting). Each time, first the idle latency of a 16-token interactive job (submit to
result, measured by the client, median of --probes after a warm-up); then --bulk bulk jobs of
--bulk-tokens new tokens are queued, and once the worker is decoding them the same interactive
jobs are sent one at a time. Prints both medians, their ratio (issue 13's goal: under 3x with
the lane on) and where the time went (queued before a job thread took the job, and in the
engine). QFLEET_ENGINE_*, QFLEET_BATCH_*, QFLEET_CPU_THREADS and QFLEET_WORKER_CONCURRENCY in
the environment reach the worker. Exits non-zero when a stage could not run (also when the
backlog drained before the last probe, which would measure nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ops.bench.prompts import bench_prompts
from ops.localfleet import WorkerProcess
from qfleet.producer.client import FleetClient
from qfleet.tasks.schemas import GenerateJob
from qfleet.tasks.settings import Settings

PROBE_PROMPT = "In one sentence: what is a job queue? ({n})"
TUNED = ("QFLEET_ENGINE_", "QFLEET_BATCH_", "QFLEET_CPU_THREADS", "QFLEET_WORKER_CONCURRENCY",
         "QFLEET_PREFETCH_MULTIPLIER")  # fmt: skip


def tuning_env() -> dict[str, str]:
    """The worker settings under comparison, taken from this process's environment."""
    return {k: v for k, v in os.environ.items() if k.startswith(TUNED)}


@contextmanager
def bench_fleet(
    model_dir: str,
    concurrency: int,
    name: str,
    compute_type: str = "auto",
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[FleetClient, WorkerProcess]]:
    """One worker process and a client on a key prefix of their own, removed afterwards.

    `extra_env` pins worker settings for this fleet only (over the ones under comparison).
    """
    prefix = f"qfleet-bench-{uuid.uuid4().hex[:8]}:"
    broker = os.environ.get("QFLEET_BROKER_URL", "redis://127.0.0.1:6379/0")
    env = {"QFLEET_WORKER_CONCURRENCY": str(concurrency), **tuning_env(),
           "QFLEET_BROKER_URL": broker, "QFLEET_REDIS_KEY_PREFIX": prefix,
           "QFLEET_MODEL_DIR": model_dir, "QFLEET_COMPUTE_TYPE": compute_type,
           # Distinct prompts, but a cached answer must never stand in for generation.
           "QFLEET_ANSWER_CACHE_TTL_S": "0", **(extra_env or {})}  # fmt: skip
    concurrency = int(env["QFLEET_WORKER_CONCURRENCY"])
    settings = Settings(broker_url=broker, redis_key_prefix=prefix)
    with tempfile.TemporaryDirectory() as tmp:
        worker = WorkerProcess(
            env, Path(tmp) / "worker.log", hostname=f"{name}@%h", concurrency=concurrency
        )
        worker.start(ready_timeout=300)
        try:
            with FleetClient(settings) as fleet:
                yield fleet, worker
        finally:
            worker.stop()
            _forget(settings)


def _forget(settings: Settings) -> None:
    """Delete what the run left in Redis under its prefix (unfinished bulk jobs, results)."""
    import redis

    client = redis.Redis.from_url(str(settings.broker))
    keys = list(client.scan_iter(match=f"{settings.redis_key_prefix}*", count=1000))
    keys += list(client.scan_iter(match=f"*{settings.redis_key_prefix}*", count=1000))
    if keys:
        client.delete(*set(keys))


def interactive_latency(
    fleet: FleetClient, n: int, tokens: int = 16, parts: list[tuple[float, float]] | None = None
) -> float:
    """Seconds from submit to result of one interactive job, as the caller sees it.

    `parts` collects where the time went: (seconds before a job thread took the job, seconds in
    the engine), from the result's own timings.
    """
    started = time.perf_counter()
    job = GenerateJob(prompt=PROBE_PROMPT.format(n=n), max_tokens=tokens, priority="interactive")
    result = fleet.wait(fleet.submit(job), timeout=1800)
    if parts is not None:
        parts.append((result.timings.queued_ms / 1000, result.timings.generate_ms / 1000))
    return time.perf_counter() - started


def submit_bulk(fleet: FleetClient, count: int, tokens: int) -> list[str]:
    """Queue `count` bulk jobs of `tokens` new tokens; their job ids."""
    return [
        fleet.submit(GenerateJob(prompt=p, max_tokens=tokens, priority="bulk"))
        for p in bench_prompts(count)
    ]


def _median_part(parts: list[tuple[float, float]], index: int) -> float:
    return round(statistics.median(p[index] for p in parts), 2)


def measure_fleet(args: argparse.Namespace, slots: int) -> dict[str, Any]:
    """Idle and backlog latency of interactive jobs on one worker with `slots` lane threads."""
    lane = {"QFLEET_WORKER_INTERACTIVE_SLOTS": str(slots)}
    with bench_fleet(args.model_dir, args.concurrency, f"priority{slots}", extra_env=lane) as (
        fleet,
        _,
    ):
        interactive_latency(fleet, -1)  # warm-up: model load and first-call set-up
        idle_parts: list[tuple[float, float]] = []
        idle = [interactive_latency(fleet, i, parts=idle_parts) for i in range(args.probes)]
        bulk = submit_bulk(fleet, args.bulk, args.bulk_tokens)
        time.sleep(args.settle)  # the worker takes its first bulk rows and starts decoding
        loaded: list[float] = []
        parts: list[tuple[float, float]] = []
        for i in range(args.probes):
            loaded.append(interactive_latency(fleet, 100 + i, parts=parts))
            print(f"lane slots {slots}, probe {i}: {loaded[-1]:.2f} s", file=sys.stderr)
            time.sleep(args.gap)
        pending = sum(fleet.result(b) is None for b in bulk)
    return {
        "interactive_slots": slots,
        "idle_s": [round(x, 2) for x in idle],
        "backlog_s": [round(x, 2) for x in loaded],
        "idle_p50_s": round(statistics.median(idle), 2),
        "backlog_p50_s": round(statistics.median(loaded), 2),
        "backlog_max_s": round(max(loaded), 2),
        "ratio": round(statistics.median(loaded) / statistics.median(idle), 2),
        # Where the time went: waiting for a job thread (queued) and decoding (engine).
        "idle_queued_engine_s": [(round(q, 2), round(g, 2)) for q, g in idle_parts],
        "backlog_queued_engine_s": [(round(q, 2), round(g, 2)) for q, g in parts],
        "backlog_queued_p50_s": _median_part(parts, 0),
        "backlog_engine_p50_s": _median_part(parts, 1),
        "engine_ratio": round(_median_part(parts, 1) / max(_median_part(idle_parts, 1), 0.01), 2),
        # Proof the backlog was still running when the last probe finished.
        "bulk_unfinished_after_probes": pending,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """The same measurement with the interactive lane off, then on, in one run."""
    runs = {"lane_off": measure_fleet(args, 0), "lane_on": measure_fleet(args, args.slots)}
    for name, run in runs.items():
        if run["bulk_unfinished_after_probes"] == 0:
            raise RuntimeError(f"{name}: the bulk backlog drained before the probes ended")
    return {**runs, "bulk": args.bulk, "bulk_tokens": args.bulk_tokens}


def main(argv: list[str] | None = None) -> int:
    """Measure and print; exit 1 when the worker or a job failed."""
    parser = argparse.ArgumentParser(description="interactive latency under a bulk backlog")
    parser.add_argument("--model-dir", help="CTranslate2 model (default: the demo model)")
    parser.add_argument("--tiny", action="store_true", help="use the tiny test model (fast)")
    parser.add_argument("--bulk", type=int, default=48)
    parser.add_argument("--bulk-tokens", type=int, default=256)
    parser.add_argument("--probes", type=int, default=5, help="interactive jobs per phase")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before probing")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between probes")
    parser.add_argument("--concurrency", type=int, default=16, help="worker job threads")
    parser.add_argument("--slots", type=int, default=Settings().worker_interactive_slots,
                        help="interactive lane threads of the lane-on worker")  # fmt: skip
    parser.add_argument("--out", help="also write the result as JSON here")
    args = parser.parse_args(argv)
    if args.slots < 1:
        parser.error("--slots must be at least 1 (the lane-off run is always measured)")
    if args.tiny:
        from qfleet.workers.engine.tiny import ensure_tiny_model

        args.model_dir = str(ensure_tiny_model())
    elif not args.model_dir:
        from qfleet.workers.engine.demo_model import ensure_demo_model

        args.model_dir = str(ensure_demo_model(lambda line: print(line, file=sys.stderr)))
    try:
        result = measure(args)
    except Exception as exc:  # the stage could not run: say why and fail the benchmark
        print(f"priority benchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    for name in ("lane_off", "lane_on"):
        run = result[name]
        print(
            f"{name} ({run['interactive_slots']} lane threads): interactive 16-token job idle "
            f"p50 {run['idle_p50_s']} s, under {args.bulk} x {args.bulk_tokens} bulk tokens p50 "
            f"{run['backlog_p50_s']} s (queued {run['backlog_queued_p50_s']} s, engine "
            f"{run['backlog_engine_p50_s']} s): ratio {run['ratio']}x"
        )
    print(f"goal (issue 13): lane_on ratio <= 3x: {result['lane_on']['ratio']}x")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
