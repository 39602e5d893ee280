"""`qfleet status`: queues, workers and runs of one fleet, as data and as a table.

Queues come from Redis (`producer.queues`); workers answer Celery's remote control (`inspect
stats`, `active_queues`, `active`) and qfleet's own `qfleet_info` inspect command
(`workers.control`). The four broadcasts run side by side, so one status costs one timeout.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from celery import Celery
from pydantic import BaseModel, Field

from qfleet.producer.queues import QueueSnapshot, read_queues
from qfleet.tasks.constants import INSPECT_QFLEET_INFO
from qfleet.tasks.settings import Settings

Replies = dict[str, Any]


class QueueStatus(QueueSnapshot):
    """A queue, with the rate workers finished its jobs over the last minute."""

    rate_per_min: float = 0.0


class WorkerStatus(BaseModel):
    """One worker process as it reported itself."""

    name: str
    host: str | None = None
    queues: list[str] = Field(default_factory=list)
    model: str | None = None
    device: str | None = None
    compute_type: str | None = None
    pool: str | None = None
    concurrency: int | None = None
    # Job threads only interactive jobs can take, beside `concurrency` (the interactive lane).
    interactive_slots: int = 0
    batch: dict[str, Any] = Field(default_factory=dict)
    jobs_done: int = 0
    jobs: dict[str, int] = Field(default_factory=dict)
    tokens_per_s: float = 0.0
    recent_tokens_per_s: float = 0.0
    recent_batch_size: float | None = None
    active: int = 0
    metrics_port: int | None = None


class RunStatus(BaseModel):
    """A bulk run in progress."""

    run_id: str
    state: str
    done: int
    total: int
    failed: int = 0


class FleetStatus(BaseModel):
    """Everything `qfleet status` shows."""

    taken_at: float
    queues: list[QueueStatus]
    workers: list[WorkerStatus]
    runs: list[RunStatus]


def active_runs(settings: Settings, client: redis.Redis) -> list[RunStatus]:
    """Bulk runs in progress. The hook where runs report their progress; none exist yet."""
    del settings, client
    return []


def collect_status(app: Celery, settings: Settings, timeout: float = 1.0) -> FleetStatus:
    """Ask Redis and every worker of `app`'s fleet how they are doing."""
    inspect = app.control.inspect(timeout=timeout)
    calls = {
        "stats": inspect.stats,
        "active_queues": inspect.active_queues,
        "active": inspect.active,
        "info": lambda: app.control.broadcast(INSPECT_QFLEET_INFO, reply=True, timeout=timeout),
    }
    client = redis.Redis.from_url(settings.broker, socket_timeout=5, socket_connect_timeout=5)
    try:
        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            futures = {name: pool.submit(call) for name, call in calls.items()}
            snapshots = read_queues(client, settings.redis_key_prefix)
            runs = active_runs(settings, client)
            replies = {name: future.result() or {} for name, future in futures.items()}
    finally:
        client.close()
    replies["info"] = _merge_broadcast(replies["info"])
    workers = [_worker(name, replies) for name in sorted(_names(replies))]
    return FleetStatus(
        taken_at=time.time(),
        queues=[_queue(snapshot, workers, replies["info"]) for snapshot in snapshots],
        workers=workers,
        runs=runs,
    )


def _merge_broadcast(answers: Any) -> Replies:
    # `broadcast(reply=True)` answers a list of {hostname: reply}; inspect answers one dict.
    merged: Replies = {}
    for answer in answers or []:
        merged.update(answer)
    return merged


def _names(replies: dict[str, Replies]) -> set[str]:
    return set().union(*(reply.keys() for reply in replies.values()))


def _worker(name: str, replies: dict[str, Replies]) -> WorkerStatus:
    stats = replies["stats"].get(name, {})
    info = replies["info"].get(name, {})
    model = info.get("model") or {}
    pool = stats.get("pool", {})
    counters = info.get("stats", {})
    return WorkerStatus(
        name=name,
        host=info.get("host"),
        queues=[q["name"] for q in replies["active_queues"].get(name, [])],
        model=model.get("id"),
        device=_device(model),
        compute_type=model.get("compute_type"),
        pool=str(pool.get("implementation", "")).split(":")[0].rsplit(".", 1)[-1] or None,
        concurrency=pool.get("max-concurrency"),
        interactive_slots=(info.get("interactive_lane") or {}).get("slots", 0),
        batch=info.get("batch", {}),
        jobs_done=counters.get("jobs_done", sum(stats.get("total", {}).values())),
        jobs=counters.get("jobs", {}),
        tokens_per_s=counters.get("tokens_per_s", 0.0),
        recent_tokens_per_s=counters.get("recent_tokens_per_s", 0.0),
        recent_batch_size=counters.get("recent_batch_size"),
        active=len(replies["active"].get(name, [])),
        metrics_port=info.get("metrics_port"),
    )


def _device(model: dict[str, Any]) -> str | None:
    device = model.get("device")
    if device == "cuda":
        return f"cuda:{model.get('device_index', 0)}"
    return device


def _queue(snapshot: QueueSnapshot, workers: list[WorkerStatus], info: Replies) -> QueueStatus:
    kind = snapshot.name.removeprefix("qfleet.")
    rate = sum(
        info.get(w.name, {}).get("stats", {}).get("recent_jobs_per_min_by_kind", {}).get(kind, 0.0)
        for w in workers
    )
    return QueueStatus(**snapshot.model_dump(), rate_per_min=rate)


# --- the table ---------------------------------------------------------------------------------


def render(status: FleetStatus) -> str:
    """`status` as the plain-text tables `qfleet status` prints."""
    queues = _table(
        ["QUEUE", "DEPTH", "OLDEST", "JOBS/MIN"],
        [[q.name, q.depth, _age(q.oldest_age_s), f"{q.rate_per_min:.1f}"] for q in status.queues],
    )
    workers = _table(
        ["WORKER", "HOST", "MODEL", "DEVICE", "POOL", "BATCH", "DONE", "OK/FAIL", "TOK/S", "BUSY"],
        [_worker_row(w) for w in status.workers],
    )
    runs = _table(
        ["RUN", "STATE", "PROGRESS", "FAILED"],
        [[r.run_id, r.state, _progress(r.done, r.total), r.failed] for r in status.runs],
    )
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status.taken_at))
    return "\n".join(
        [
            f"qfleet status at {when}",
            "",
            queues,
            "",
            f"{len(status.workers)} worker(s)" + ("" if status.workers else ": none answered"),
            workers if status.workers else "",
            "",
            runs if status.runs else "no runs",
        ]
    )


def _worker_row(w: WorkerStatus) -> list[object]:
    batch = ", ".join(f"{k}={v}" for k, v in sorted(w.batch.items())) or "-"
    ok, failed = w.jobs.get("succeeded", 0), w.jobs.get("failed", 0) + w.jobs.get("crashed", 0)
    lane = w.interactive_slots
    return [
        w.name,
        w.host or "?",
        w.model or "(loading)",
        f"{w.device or '?'} {w.compute_type or ''}".strip(),
        f"{w.pool or '?'}x{w.concurrency or '?'}" + (f"+{lane}i" if lane else ""),
        batch,
        w.jobs_done,
        f"{ok}/{failed}",
        f"{w.tokens_per_s:.1f}",
        f"{w.active}/{(w.concurrency or 0) + lane or '?'}",
    ]


def _table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells)
    return "\n".join(line.rstrip() for line in lines)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _progress(done: int, total: int) -> str:
    percent = 100.0 * done / total if total else 0.0
    return f"{done}/{total} ({percent:.0f}%)"
