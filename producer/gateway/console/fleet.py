"""The Fleet page's data: workers, queues per priority, and a short history of samples.

Workers answer Celery's remote control (`producer.status`); queues are read straight from
Redis, one list per priority level. Every snapshot also appends a sample (tokens/s, queue depth,
batch size) to a ring buffer in Redis, at most one per `SAMPLE_EVERY_S` across all replicas, so
a page opened now shows the last few minutes, not an empty chart.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Final

from fastapi import APIRouter
from pydantic import BaseModel, Field
from redis import Redis
from redis.exceptions import RedisError

from qfleet.producer.gateway.auth import CallerDep, StateDep
from qfleet.producer.gateway.console.route import ConsoleRoute
from qfleet.producer.gateway.errors import ApiError
from qfleet.producer.gateway.state import GatewayState
from qfleet.producer.queues import read_queues
from qfleet.producer.status import FleetStatus, WorkerStatus, collect_status
from qfleet.tasks.constants import ALL_QUEUES
from qfleet.tasks.settings import redact_url

# `qfleet:console:samples` is a list of JSON samples, newest first, trimmed to SAMPLES_KEPT;
# `...:samples:tick` is held SAMPLE_EVERY_S so replicas polling at once add one sample, not two.
SAMPLES_KEY: Final = "qfleet:console:samples"
SAMPLE_TICK_KEY: Final = "qfleet:console:samples:tick"
SAMPLE_EVERY_S: Final = 2
SAMPLES_KEPT: Final = 180  # six minutes at one sample every two seconds
SAMPLES_TTL_S: Final = 86_400
# Celery's inspect waits this long for worker replies; a snapshot is reused this long so that
# several open pages cost the workers one broadcast.
INSPECT_TIMEOUT_S: Final = 1.0
SNAPSHOT_REUSE_S: Final = 1.5

router = APIRouter(route_class=ConsoleRoute)


class PriorityDepth(BaseModel):
    """One priority level of a queue (0 is served first)."""

    priority: int
    depth: int
    oldest_age_s: float | None = None


class QueueView(BaseModel):
    """A queue as the console shows it."""

    name: str
    depth: int
    oldest_age_s: float | None = None
    priorities: list[PriorityDepth]
    consumers: list[str] = Field(description="Workers consuming this queue right now.")
    rate_per_min: float = 0.0
    problem: str | None = None


class Sample(BaseModel):
    """One point of the Fleet page's charts."""

    t: float
    tokens_per_s: float
    queued: int
    batch_size: float | None = None
    busy: int = 0


class FleetView(BaseModel):
    """Everything the Fleet page shows."""

    taken_at: float
    redis: str
    workers: list[WorkerStatus]
    queues: list[QueueView]
    samples: list[Sample]
    problems: list[str]


_cache_lock = threading.Lock()
_cache: dict[str, tuple[float, FleetStatus]] = {}


@router.get("/fleet")
def fleet(caller: CallerDep, state: StateDep) -> FleetView:
    """Workers, queues and recent samples; 503 naming the cause when Redis does not answer."""
    del caller  # the fleet is shared infrastructure: every key may look at it
    where = redact_url(state.settings.broker)
    try:
        state.redis.ping()
        queues = read_priorities(state.redis, state.settings.redis_key_prefix)
    except RedisError as exc:
        raise ApiError(
            503, f"Redis at {where} does not answer ({type(exc).__name__}: {exc})",
            code="redis_unavailable",
        ) from exc  # fmt: skip
    status = cached_status(state)
    views = [_queue_view(q, status) for q in queues]
    samples = _record_sample(state, status, views)
    return FleetView(
        taken_at=status.taken_at,
        redis=where,
        workers=status.workers,
        queues=views,
        samples=samples,
        problems=_problems(status, views),
    )


def read_priorities(
    redis: Redis, prefix: str, now: float | None = None
) -> list[tuple[str, list[PriorityDepth]]]:
    """Each queue's depth and oldest-message age per priority level, in one round trip."""
    return [
        (snap.name, [PriorityDepth(**level.model_dump()) for level in snap.levels])
        for snap in read_queues(redis, prefix, ALL_QUEUES, now)
    ]


def cached_status(state: GatewayState) -> FleetStatus:
    """The fleet's status, reused for `SNAPSHOT_REUSE_S` (one broadcast serves many pages)."""
    key = state.settings.redis_key_prefix
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < SNAPSHOT_REUSE_S:
            return cached[1]
        status = collect_status(state.fleet.app, state.settings, timeout=INSPECT_TIMEOUT_S)
        _cache[key] = (time.monotonic(), status)
        return status


def _queue_view(queue: tuple[str, list[PriorityDepth]], status: FleetStatus) -> QueueView:
    name, levels = queue
    consumers = [w.name for w in status.workers if name in w.queues]
    ages = [p.oldest_age_s for p in levels if p.oldest_age_s is not None]
    depth = sum(p.depth for p in levels)
    rate = next((q.rate_per_min for q in status.queues if q.name == name), 0.0)
    problem = None
    if not consumers:
        problem = (
            f"no worker consumes {name}: its jobs wait until one starts "
            f"(qfleet worker --queues {name})"
        )
    return QueueView(
        name=name, depth=depth, oldest_age_s=max(ages) if ages else None, priorities=levels,
        consumers=consumers, rate_per_min=rate, problem=problem,
    )  # fmt: skip


def _problems(status: FleetStatus, queues: list[QueueView]) -> list[str]:
    problems = []
    if not status.workers:
        problems.append("no worker answered: start one with `qfleet worker` (or check its logs)")
    problems += [q.problem for q in queues if q.problem and q.depth]
    problems += [
        f"worker {w.name} has not loaded a model yet" for w in status.workers if _loading(w)
    ]
    return problems


def _loading(worker: WorkerStatus) -> bool:
    serves_models = any(q in worker.queues for q in ("qfleet.generate", "qfleet.extract"))
    return serves_models and worker.model is None


def _record_sample(
    state: GatewayState, status: FleetStatus, queues: list[QueueView]
) -> list[Sample]:
    sizes = [w.recent_batch_size for w in status.workers if w.recent_batch_size]
    sample = Sample(
        t=status.taken_at,
        tokens_per_s=round(sum(w.recent_tokens_per_s for w in status.workers), 2),
        queued=sum(q.depth for q in queues),
        batch_size=round(sum(sizes) / len(sizes), 2) if sizes else None,
        busy=sum(w.active for w in status.workers),
    )
    redis, prefix = state.redis, state.settings.redis_key_prefix
    try:
        stored = bool(redis.set(prefix + SAMPLE_TICK_KEY, "1", nx=True, ex=SAMPLE_EVERY_S))
        if stored:
            pipe = redis.pipeline()
            pipe.lpush(prefix + SAMPLES_KEY, sample.model_dump_json())
            pipe.ltrim(prefix + SAMPLES_KEY, 0, SAMPLES_KEPT - 1)
            pipe.expire(prefix + SAMPLES_KEY, SAMPLES_TTL_S)
            pipe.execute()
        raws: list[Any] = redis.lrange(prefix + SAMPLES_KEY, 0, SAMPLES_KEPT - 1)
    except RedisError:
        return [sample]
    samples = [Sample.model_validate(json.loads(raw)) for raw in reversed(raws)]
    # The charts end at this moment even when another poll stored this tick's sample.
    return samples if stored else [*samples[-(SAMPLES_KEPT - 1) :], sample]
