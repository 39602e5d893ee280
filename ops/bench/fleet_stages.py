"""The qfleet stages of the throughput benchmark: jobs through Redis to one real worker process.

d   the worker's own layout (tuned for this machine, or the default), bulk jobs only;
e   the same worker under mixed load: the same bulk jobs while interactive 16-token jobs
    arrive every --interactive-every seconds; bulk tok/s, interactive p50/p95 and the idle
    latency of the same interactive job, measured first;
d0  the layout of earlier releases, pinned: one replica with every core, calls of up to 16
    rows one at a time, no interactive replica (the "today's default" of issue 17).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any, cast

from ops.bench.priority import bench_fleet, interactive_latency
from ops.bench.prompts import bench_budgets, bench_prompts
from ops.bench.stages import summary
from qfleet.producer.client import FleetClient
from qfleet.tasks.schemas import GenerateJob, JobResult

OLD_DEFAULT = {"QFLEET_ENGINE_REPLICAS": "1", "QFLEET_ENGINE_INTERACTIVE_REPLICA": "false",
               "QFLEET_ENGINE_PREEMPT": "false", "QFLEET_BATCH_MAX_SIZE": "16",
               "QFLEET_ENGINE_USE_TUNED": "false"}  # fmt: skip


def _proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 0)
    return float("nan")


def _bulk(fleet: FleetClient, args: argparse.Namespace) -> tuple[list[JobResult], float]:
    """Submit the bulk jobs at once; their results and the seconds until the last one."""
    budgets = bench_budgets(args.jobs, args.tokens, args.lengths)
    started = time.perf_counter()
    ids = [
        fleet.submit(GenerateJob(prompt=p, max_tokens=n, priority="bulk"))
        for p, n in zip(bench_prompts(args.jobs), budgets, strict=True)
    ]
    results = [cast(JobResult, fleet.wait(i, timeout=3600)) for i in ids]
    return results, time.perf_counter() - started


def _bulk_summary(name: str, results: list[JobResult], elapsed: float) -> dict[str, Any]:
    return summary(
        name,
        sum(r.usage.completion_tokens for r in results),
        elapsed,
        [r.timings.total_ms / 1000 for r in results],
        mean_batch=round(statistics.mean(r.batch_size for r in results), 1),
        # Time inside the engine, to tell engine speed from queue and batching overhead.
        engine_p50_s=round(statistics.median(r.timings.generate_ms / 1000 for r in results), 2),
    )


def _mixed(fleet: FleetClient, args: argparse.Namespace) -> tuple[dict[str, Any], list[float]]:
    """Bulk jobs while interactive jobs arrive on a timer; bulk summary, interactive latencies."""
    latencies: list[float] = []
    stop = threading.Event()

    def arrivals() -> None:
        n = 1000
        while not stop.wait(args.interactive_every):
            n += 1
            threading.Thread(target=lambda n=n: latencies.append(interactive_latency(fleet, n)),
                             daemon=True).start()  # fmt: skip

    timer = threading.Thread(target=arrivals, daemon=True)
    timer.start()
    results, elapsed = _bulk(fleet, args)
    stop.set()
    timer.join()
    time.sleep(min(5.0, 3 * args.interactive_every))  # the last interactive answers
    return _bulk_summary("e qfleet mixed: bulk under interactive load", results, elapsed), latencies


def stage_qfleet(args: argparse.Namespace) -> dict[str, Any]:
    """d (bulk only) and e (mixed) on one worker with its own layout."""
    with bench_fleet(args.model_dir, args.concurrency, "bench", args.compute_type) as (fleet, w):
        fleet.wait(fleet.submit(GenerateJob(prompt="warm up", max_tokens=4)), timeout=300)
        layout = _layout(fleet)
        idle = [interactive_latency(fleet, i) for i in range(3)]
        d = _bulk_summary(f"d qfleet end to end ({layout})", *_bulk(fleet, args))
        e, interactive = _mixed(fleet, args)
        rss = _proc_peak_rss_mb(w.pid)
    d["peak_rss_mb"] = e["peak_rss_mb"] = rss
    ordered = sorted(interactive) or [float("nan")]
    e.update(
        interactive_jobs=len(interactive),
        interactive_p50_s=round(statistics.median(ordered), 2),
        interactive_p95_s=round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
        idle_p50_s=round(statistics.median(idle), 2),
    )
    return {**d, "layout": layout, "mixed": e}


def stage_old_default(args: argparse.Namespace) -> dict[str, Any]:
    """d0: the same jobs on a worker pinned to the single-call layout of earlier releases."""
    pinned = {**OLD_DEFAULT, "QFLEET_CPU_THREADS": str(os.cpu_count() or 1)}
    with bench_fleet(args.model_dir, 16, "bench-old", args.compute_type, extra_env=pinned) as (
        fleet,
        w,
    ):
        fleet.wait(fleet.submit(GenerateJob(prompt="warm up", max_tokens=4)), timeout=300)
        row = _bulk_summary("d0 qfleet, old default (1 replica, b16)", *_bulk(fleet, args))
        row["peak_rss_mb"] = _proc_peak_rss_mb(w.pid)
    return row


def _layout(fleet: FleetClient) -> str:
    """The layout the worker reports (qfleet_info), for the table."""
    from qfleet.tasks.constants import INSPECT_QFLEET_INFO

    replies = fleet.app.control.broadcast(INSPECT_QFLEET_INFO, reply=True, timeout=5.0) or []
    for reply in replies:
        for info in reply.values():
            engine = info.get("engine") or {}
            if engine:
                return f"{engine['label']}, {engine['source']}"
    return "layout unknown"


def stage_overhead(args: argparse.Namespace) -> dict[str, Any]:
    """Trivial jobs/s through the whole path (tiny model, 1 token)."""
    from qfleet.workers.engine.tiny import ensure_tiny_model

    name = f"overhead-{uuid.uuid4().hex[:4]}"
    one_thread = {"QFLEET_CPU_THREADS": "1"}
    with bench_fleet(str(ensure_tiny_model()), 16, name, extra_env=one_thread) as (fleet, _):
        started = time.perf_counter()
        ids = [fleet.submit(GenerateJob(prompt="hi", max_tokens=1)) for _ in range(args.jobs)]
        submitted = time.perf_counter() - started
        results = [fleet.wait(i, timeout=600) for i in ids]
        elapsed = time.perf_counter() - started
    latencies = sorted(r.timings.total_ms / 1000 for r in results)
    return {
        "stage": "queue overhead (tiny model, 1 token)", "jobs": len(results),
        "jobs_per_s": round(len(results) / elapsed, 1),
        "submit_per_s": round(len(results) / submitted, 1),
        "p50_s": round(statistics.median(latencies), 3),
    }  # fmt: skip
