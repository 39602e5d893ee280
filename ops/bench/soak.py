"""Soak: many small jobs through one worker process, its memory sampled as they finish.

    python -m ops.bench.soak --jobs 5000 --concurrency 4 [--model-dir DIR] [--json]

Starts one real worker (threads pool, the tiny model unless --model-dir names another) on the
broker of `QFLEET_BROKER_URL` under a key prefix of its own (deleted afterwards), keeps
`--window` jobs in flight until `--jobs` have finished, and reads the worker's resident memory
(VmRSS in /proc/PID/status) every `--sample-s` seconds. A least-squares line through RSS against
jobs finished — after the first `--warmup` share of the jobs, where caches and allocator arenas
fill up — gives the growth in MB per 1,000 jobs. A leak shows as a slope that stays above zero
however long the run; a healthy worker's slope is noise around zero.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import redis

from ops.localfleet import WorkerProcess
from qfleet.producer.client import FleetClient
from qfleet.tasks.schemas import GenerateJob
from qfleet.tasks.settings import Settings

# Growth above this many MB per 1,000 jobs is called a leak. Generous on purpose: allocator
# noise on a short run is a few MB, while any per-job leak of a result, a prompt or a KV cache
# (tens of kB each) gives tens of MB per 1,000 jobs.
LEAK_MB_PER_1K_JOBS = 8.0


@dataclass(frozen=True)
class Sample:
    """The worker's resident memory when `jobs` jobs had finished."""

    seconds: float
    jobs: int
    rss_mb: float


@dataclass(frozen=True)
class SoakReport:
    """What a soak measured, and its verdict."""

    jobs: int
    concurrency: int
    duration_s: float
    jobs_per_s: float
    rss_start_mb: float
    rss_end_mb: float
    rss_peak_mb: float
    slope_mb_per_1k_jobs: float
    bound_mb_per_1k_jobs: float
    failed_jobs: int
    samples: list[Sample]

    @property
    def leaking(self) -> bool:
        """True when memory grows faster than the bound."""
        return self.slope_mb_per_1k_jobs > self.bound_mb_per_1k_jobs

    def summary(self) -> str:
        """A few human-readable lines."""
        verdict = "LEAK?" if self.leaking else "flat"
        return (
            f"{self.jobs} jobs (concurrency {self.concurrency}) in {self.duration_s:.0f}s "
            f"({self.jobs_per_s:.0f} jobs/s), {self.failed_jobs} failed\n"
            f"worker RSS after warm-up {self.rss_start_mb:.1f} MB -> end {self.rss_end_mb:.1f} MB "
            f"(peak {self.rss_peak_mb:.1f} MB, {len(self.samples)} samples)\n"
            f"slope {self.slope_mb_per_1k_jobs:+.2f} MB per 1k jobs "
            f"(bound {self.bound_mb_per_1k_jobs:.1f}): {verdict}"
        )


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def slope_per_1k(samples: list[Sample]) -> float:
    """Least-squares slope of RSS (MB) against jobs finished, per 1,000 jobs."""
    if len(samples) < 2:
        return 0.0
    xs = [s.jobs / 1000 for s in samples]
    ys = [s.rss_mb for s in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


@contextmanager
def soak_worker(
    model_dir: Path, concurrency: int, broker_url: str, log_dir: Path
) -> Iterator[tuple[WorkerProcess, Settings]]:
    """One worker under a fresh key prefix; its keys are deleted when it stops."""
    prefix = f"qfleet-soak-{uuid.uuid4().hex[:8]}:"
    env = {
        "QFLEET_BROKER_URL": broker_url,
        "QFLEET_REDIS_KEY_PREFIX": prefix,
        "QFLEET_MODEL_DIR": str(model_dir),
        "QFLEET_CPU_THREADS": "1",
    }
    worker = WorkerProcess(
        env, log_dir / "soak-worker.log", hostname=f"soak-{prefix[12:20]}@bench",
        concurrency=concurrency,
    ).start()  # fmt: skip
    try:
        yield worker, Settings(broker_url=broker_url, redis_key_prefix=prefix)
    finally:
        worker.stop()
        client = redis.Redis.from_url(broker_url)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()


def drive(
    fleet: FleetClient, pid: int, jobs: int, window: int, sample_s: float
) -> tuple[list[Sample], int, float]:
    """Keep `window` jobs in flight until `jobs` finished; (samples, failed jobs, seconds)."""
    started = time.monotonic()
    pending: list[str] = []
    submitted = finished = failed = 0
    samples = [Sample(0.0, 0, rss_mb(pid))]
    next_sample = started + sample_s
    while finished < jobs:
        while submitted < jobs and len(pending) < window:
            job = GenerateJob(prompt=f"Soak item {submitted}: say a word.", max_tokens=4)
            pending.append(fleet.submit(job))
            submitted += 1
        still = []
        for job_id in pending:
            outcome = fleet.result(job_id)
            if outcome is None:
                still.append(job_id)
                continue
            finished += 1
            failed += outcome.status == "failed"
        pending = still
        now = time.monotonic()
        if now >= next_sample or finished == jobs:
            samples.append(Sample(now - started, finished, rss_mb(pid)))
            next_sample = now + sample_s
        if pending:
            time.sleep(0.01)
    return samples, failed, time.monotonic() - started


def run_soak(
    jobs: int,
    concurrency: int,
    *,
    model_dir: Path | None = None,
    broker_url: str | None = None,
    window: int | None = None,
    sample_s: float = 0.5,
    warmup: float = 0.2,
    bound: float = LEAK_MB_PER_1K_JOBS,
) -> SoakReport:
    """Run a soak and return its report (see the module docstring)."""
    if model_dir is None:
        from qfleet.workers.engine.tiny import ensure_tiny_model

        model_dir = ensure_tiny_model()
    url = broker_url or str(Settings().broker_url)
    with (
        tempfile.TemporaryDirectory(prefix="qfleet-soak-") as logs,
        soak_worker(model_dir, concurrency, url, Path(logs)) as (worker, settings),
        FleetClient(settings) as fleet,
    ):
        samples, failed, seconds = drive(
            fleet, worker.pid, jobs, window or 4 * concurrency, sample_s
        )
    steady = [s for s in samples if s.jobs >= warmup * jobs]
    return SoakReport(
        jobs=jobs,
        concurrency=concurrency,
        duration_s=seconds,
        jobs_per_s=jobs / max(seconds, 1e-9),
        rss_start_mb=steady[0].rss_mb,
        rss_end_mb=steady[-1].rss_mb,
        rss_peak_mb=max(s.rss_mb for s in samples),
        slope_mb_per_1k_jobs=slope_per_1k(steady),
        bound_mb_per_1k_jobs=bound,
        failed_jobs=failed,
        samples=samples,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the soak from the command line; exit 1 when memory grows faster than the bound."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5_000, help="Jobs to run [5000].")
    parser.add_argument("--concurrency", type=int, default=4, help="Worker threads [4].")
    parser.add_argument("--window", type=int, help="Jobs in flight [4 x concurrency].")
    parser.add_argument("--model-dir", type=Path, help="Model folder [the tiny test model].")
    parser.add_argument("--sample-s", type=float, default=0.5, help="Seconds between samples.")
    parser.add_argument("--bound", type=float, default=LEAK_MB_PER_1K_JOBS, help="MB per 1k jobs.")
    parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
    args = parser.parse_args(argv)
    report = run_soak(
        args.jobs,
        args.concurrency,
        model_dir=args.model_dir,
        broker_url=os.environ.get("QFLEET_BROKER_URL"),
        window=args.window,
        sample_s=args.sample_s,
        bound=args.bound,
    )
    if args.json:
        print(json.dumps({**asdict(report), "leaking": report.leaking}, indent=2))
    else:
        print(report.summary())
    return 1 if report.leaking or report.failed_jobs else 0


if __name__ == "__main__":
    sys.exit(main())
