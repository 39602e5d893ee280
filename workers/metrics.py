"""Prometheus metrics of a worker process, fed by Celery signals in this one place.

Task bodies know nothing about metrics: the signal handlers below read what a job's result
already carries (status, code, usage, timings, model, `batch_size` when present). Every series has
a `worker` label (the Celery hostname), so dashboards can sum by worker without relabelling.

Each worker process serves its own exporter on `QFLEET_METRICS_PORT` (0 = off), bound to
`QFLEET_METRICS_HOST` (loopback by default). A threads or solo pool is one process, so one port.
A prefork pool runs jobs in its children: child *i* serves on `QFLEET_METRICS_PORT + i` and the
parent serves none (docs/operations.md, "Metrics").
"""

from __future__ import annotations

import logging
import resource
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery.signals import (
    task_failure,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_ready,
)
from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

from qfleet.workers.context import WorkerContext, context_of

log = logging.getLogger("qfleet.metrics")
# `*_created` series double the output and no dashboard or alert here reads them.
disable_created_metrics()

# LLM jobs run from tens of milliseconds (a cached or tiny answer) to minutes (long reports).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
TOKENS_PER_S_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
# How far back `WorkerStats` looks for the recent rate shown by `qfleet status`.
RATE_WINDOW_S = 60.0

JOBS = Counter(
    "qfleet_jobs",
    "Jobs finished, by kind, outcome (succeeded, failed, crashed) and error code.",
    ["worker", "kind", "outcome", "code"],
)
JOBS_IN_PROGRESS = Gauge("qfleet_jobs_in_progress", "Jobs running now.", ["worker"])
JOB_SECONDS = Histogram(
    "qfleet_job_duration_seconds",
    "Time a job ran in the worker, from task start to result.",
    ["worker", "kind"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_WAIT_SECONDS = Histogram(
    "qfleet_job_queue_wait_seconds",
    "Time from submit to the worker starting the job (JobResult.timings.queued_ms).",
    ["worker", "kind"],
    buckets=LATENCY_BUCKETS,
)
TOKENS_GENERATED = Counter(
    "qfleet_tokens_generated", "Completion tokens generated.", ["worker", "kind"]
)
PROMPT_TOKENS = Counter("qfleet_prompt_tokens", "Prompt tokens read.", ["worker", "kind"])
GENERATE_SECONDS = Counter(
    "qfleet_generate_seconds",
    "Seconds spent inside the engine; rate(tokens) / rate(this) is decode speed.",
    ["worker", "kind"],
)
TOKENS_PER_S = Histogram(
    "qfleet_job_tokens_per_second",
    "Decode speed of each job (completion tokens / engine time).",
    ["worker", "kind"],
    buckets=TOKENS_PER_S_BUCKETS,
)
BATCH_SIZE = Histogram(
    "qfleet_batch_size",
    "Rows in the generate_batch call that served each job (1 without in-process batching).",
    ["worker", "kind"],
    buckets=BATCH_BUCKETS,
)
EXTRACT_ITEMS = Counter(
    "qfleet_extract_items",
    "Extraction documents by status (succeeded, incomplete, failed): incomplete means code "
    "chose or left out some values (docs/extraction.md).",
    ["worker", "status"],
)
EXTRACT_FIELDS = Counter(
    "qfleet_extract_fields",
    "Fields of extracted objects by provenance (model, normalised, repaired, closed).",
    ["worker", "provenance"],
)
CACHE_HITS = Counter(
    "qfleet_cache_hits", "Jobs answered from a cache, by cache.", ["worker", "cache"]
)
MODEL_LOAD_SECONDS = Gauge(
    "qfleet_model_load_seconds",
    "How long loading the model took in this process.",
    ["worker", "model", "device", "compute_type"],
)
WORKER_INFO = Gauge(
    "qfleet_worker_info",
    "Always 1; labels say which model this worker process serves, and how.",
    ["worker", "model", "device", "compute_type", "pool", "concurrency"],
)
RSS_BYTES = Gauge("qfleet_worker_rss_bytes", "Resident memory of this process.", ["worker"])

# Caches known today. A result answered from the answer cache carries `cached: true`; a cache
# that appears later gives its results a marker of its own and gets a name here.
KNOWN_CACHES = ("answer",)


@dataclass
class WorkerStats:
    """This process's totals and recent rate, for `qfleet status` (read by an inspect command)."""

    jobs: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    generate_seconds: float = 0.0
    recent: deque[tuple[float, str, int, int]] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(
        self, kind: str, outcome: str, tokens: int = 0, generate_s: float = 0.0, batch_size: int = 0
    ) -> None:
        """Count one finished job (`batch_size` 0: it ran in no engine batch)."""
        now = time.monotonic()
        with self.lock:
            self.jobs[outcome] = self.jobs.get(outcome, 0) + 1
            self.tokens += tokens
            self.generate_seconds += generate_s
            self.recent.append((now, kind, tokens, batch_size))
            self._trim(now)

    def snapshot(self) -> dict[str, Any]:
        """Totals plus jobs/min and tokens/s over the last `RATE_WINDOW_S` seconds."""
        now = time.monotonic()
        with self.lock:
            self._trim(now)
            by_kind: dict[str, float] = {}
            for _, kind, _, _ in self.recent:
                by_kind[kind] = by_kind.get(kind, 0.0) + 60.0 / RATE_WINDOW_S
            batches = [size for *_, size in self.recent if size]
            return {
                "jobs": dict(self.jobs),
                "jobs_done": sum(self.jobs.values()),
                "tokens_generated": self.tokens,
                "tokens_per_s": self.tokens / self.generate_seconds if self.generate_seconds else 0,
                "recent_jobs_per_min_by_kind": by_kind,
                "recent_tokens_per_s": sum(t for _, _, t, _ in self.recent) / RATE_WINDOW_S,
                # The console's batch-size chart: mean rows per engine call over the window.
                "recent_batch_size": sum(batches) / len(batches) if batches else None,
            }

    def _trim(self, now: float) -> None:
        while self.recent and now - self.recent[0][0] > RATE_WINDOW_S:
            self.recent.popleft()


@dataclass
class _ProcessState:
    """What the handlers remember between signals in this process."""

    worker: str = "unknown"
    pool: str = "unknown"
    concurrency: int = 0
    exporter_port: int | None = None
    model_recorded: bool = False
    started: dict[str, float] = field(default_factory=dict)
    # The worker's context, from the app the worker was started with (copied into forked children).
    context: WorkerContext | None = None


stats = WorkerStats()
_state = _ProcessState()


def exporter_port() -> int | None:
    """The port this process's exporter listens on, or None when it has none."""
    return _state.exporter_port


def _rss_bytes() -> float:
    statm = Path("/proc/self/statm")
    if statm.is_file():
        pages = int(statm.read_text().split()[1])
        return float(pages * resource.getpagesize())
    # Elsewhere only the peak is known (kilobytes on Linux, bytes on macOS; close enough to alert).
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _start_exporter(port: int) -> None:
    if port == 0 or _state.context is None:
        return
    host = _state.context.settings.metrics_host
    start_http_server(port, addr=host)
    _state.exporter_port = port
    log.info("metrics on http://%s:%d/metrics", host, port)


def _init_series() -> None:
    """Create the per-worker series at 0, so dashboards and alerts see them before any job."""
    worker = _state.worker
    RSS_BYTES.labels(worker=worker).set_function(_rss_bytes)
    JOBS_IN_PROGRESS.labels(worker=worker).set(0)
    for cache in KNOWN_CACHES:
        CACHE_HITS.labels(worker=worker, cache=cache)


def _record_model() -> None:
    loaded = _state.context.runtime.loaded if _state.context else None
    if loaded is None or _state.model_recorded:
        return
    _state.model_recorded = True
    labels = {
        "worker": _state.worker,
        "model": loaded.manifest.model_id,
        "device": loaded.device,
        "compute_type": loaded.compute_type,
    }
    MODEL_LOAD_SECONDS.labels(**labels).set(loaded.load_seconds)
    WORKER_INFO.labels(**labels, pool=_state.pool, concurrency=str(_state.concurrency)).set(1)


@worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    _state.worker = str(getattr(sender, "hostname", None) or _state.worker)
    _state.context = context_of(sender.app)
    pool = getattr(sender, "pool_cls", "")
    _state.pool = str(getattr(pool, "__module__", pool)).rsplit(".", 1)[-1] or "unknown"
    _state.concurrency = int(getattr(sender, "concurrency", 0) or 0)
    _init_series()
    if _state.pool != "prefork":
        _start_exporter(_state.context.settings.metrics_port)


@worker_process_init.connect
def _on_child_init(**_: Any) -> None:
    # A prefork child: its own registry values (inherited at 0) and its own port.
    from billiard.process import current_process

    index = int(getattr(current_process(), "index", 0) or 0)
    _init_series()
    port = _state.context.settings.metrics_port if _state.context else 0
    if port:
        _start_exporter(port + index)
    _record_model()


@worker_ready.connect
def _on_ready(**_: Any) -> None:
    _record_model()


@task_prerun.connect
def _on_task_start(task_id: str | None = None, **_: Any) -> None:
    _state.started[str(task_id)] = time.perf_counter()
    JOBS_IN_PROGRESS.labels(worker=_state.worker).inc()


@task_postrun.connect
def _on_task_done(
    task_id: str | None = None, task: Any = None, retval: Any = None, **_: Any
) -> None:
    started = _state.started.pop(str(task_id), None)
    JOBS_IN_PROGRESS.labels(worker=_state.worker).dec()
    kind = _kind_of(task, retval)
    if started is not None:
        JOB_SECONDS.labels(worker=_state.worker, kind=kind).observe(time.perf_counter() - started)
    _record_model()
    if isinstance(retval, dict) and retval.get("status") in {"succeeded", "failed"}:
        _count_outcome(kind, retval)
    # Anything else escaped the task body: counted by `_on_task_failure`.


@task_failure.connect
def _on_task_failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    kind = _kind_of(sender, None)
    code = type(exception).__name__ if exception is not None else "unknown"
    JOBS.labels(worker=_state.worker, kind=kind, outcome="crashed", code=code).inc()
    stats.add(kind, "crashed")


def _kind_of(task: Any, retval: Any) -> str:
    if isinstance(retval, dict) and isinstance(retval.get("kind"), str):
        return str(retval["kind"])
    name = str(getattr(task, "name", "") or "unknown")
    return name.removeprefix("qfleet.")


def _count_outcome(kind: str, outcome: dict[str, Any]) -> None:
    worker = _state.worker
    if outcome["status"] == "failed":
        JOBS.labels(worker=worker, kind=kind, outcome="failed", code=str(outcome.get("code"))).inc()
        stats.add(kind, "failed")
        return
    JOBS.labels(worker=worker, kind=kind, outcome="succeeded", code="ok").inc()
    if outcome.get("cached") is True:
        CACHE_HITS.labels(worker=worker, cache="answer").inc()
    usage = outcome.get("usage") or {}
    timings = outcome.get("timings") or {}
    tokens = int(usage.get("completion_tokens", 0))
    generate_s = float(timings.get("generate_ms", 0.0)) / 1000
    TOKENS_GENERATED.labels(worker=worker, kind=kind).inc(tokens)
    PROMPT_TOKENS.labels(worker=worker, kind=kind).inc(int(usage.get("prompt_tokens", 0)))
    GENERATE_SECONDS.labels(worker=worker, kind=kind).inc(generate_s)
    TOKENS_PER_S.labels(worker=worker, kind=kind).observe(float(timings.get("tokens_per_s", 0)))
    QUEUE_WAIT_SECONDS.labels(worker=worker, kind=kind).observe(
        float(timings.get("queued_ms", 0.0)) / 1000
    )
    batch_size = int(outcome.get("batch_size") or 1)
    BATCH_SIZE.labels(worker=worker, kind=kind).observe(batch_size)
    stats.add(kind, "succeeded", tokens, generate_s, batch_size)
    _count_items(outcome.get("items") or [])


def _count_items(items: list[Any]) -> None:
    """Per extracted document: its status, and where each of its fields came from."""
    for item in items:
        if not isinstance(item, dict):
            continue
        EXTRACT_ITEMS.labels(worker=_state.worker, status=str(item.get("status"))).inc()
        for source in (item.get("provenance") or {}).values():
            EXTRACT_FIELDS.labels(worker=_state.worker, provenance=str(source)).inc()
