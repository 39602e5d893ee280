"""Remote-control commands qfleet adds to every worker (Celery's `inspect`, over the broker).

`qfleet status` broadcasts `qfleet_info` to learn what Celery's own `inspect stats` cannot tell:
which model a worker serves, on which device, with which batch settings and engine layout, and
how fast it has been.
Read-only, and it returns plain JSON data (no secrets: settings are picked field by field).
"""

from __future__ import annotations

import socket
from typing import Any

from celery.worker.control import inspect_command

from qfleet.tasks.constants import INSPECT_QFLEET_INFO, QUEUE_RETRIEVE
from qfleet.tasks.errors import QfleetError
from qfleet.tasks.settings import Settings
from qfleet.workers.context import WorkerContext, context_of
from qfleet.workers.engine.manifest import ModelManifest
from qfleet.workers.knowledge.embedder import EmbedderManifest
from qfleet.workers.knowledge.open import resolve_embedder_dir
from qfleet.workers.metrics import exporter_port, stats


def batch_settings(context: WorkerContext) -> dict[str, Any]:
    """The worker's batching knobs (every setting whose name mentions batch) and its layout."""
    runtime = context.runtime
    knobs = {n: v for n, v in context.settings.model_dump().items() if "batch" in n}
    if runtime.layout is not None:
        knobs["layout"] = f"{runtime.layout.label} ({runtime.layout.source})"
    return knobs


def engine_info(context: WorkerContext) -> dict[str, Any] | None:
    """The engine layout in use (replicas, threads, batch, where it came from) and its load."""
    runtime = context.runtime
    layout = runtime.layout
    if layout is None or runtime.loaded is None:
        return None
    return {**layout.as_dict(), **runtime.batcher.snapshot()}


def served_models(settings: Settings, queues: list[str]) -> dict[str, str | None]:
    """The model ids this worker answers for (the gateway's `/v1/models`), from manifests.

    Read from the folders, not the loaded model: a prefork parent loads none itself. The
    embedder counts only on a worker that consumes the knowledge queues (it runs embeddings).
    """
    model = ModelManifest.read(settings.model_dir).model_id if settings.model_dir else None
    embedder = None
    if QUEUE_RETRIEVE in queues:
        try:
            embedder = EmbedderManifest.read(resolve_embedder_dir(settings)).model_id
        except QfleetError:
            embedder = None
    return {"model": model, "embedder": embedder}


def worker_info(context: WorkerContext, queues: list[str] | None = None) -> dict[str, Any]:
    """What this worker process serves and how it has done, as JSON data."""
    settings = context.settings
    loaded = context.runtime.loaded
    model = None
    if loaded is not None:
        model = {
            "id": loaded.manifest.model_id,
            "device": loaded.device,
            "device_index": settings.device_index,
            "compute_type": loaded.compute_type,
            "load_seconds": round(loaded.load_seconds, 3),
        }
    return {
        "host": socket.gethostname(),
        "model": model,
        "batch": batch_settings(context),
        "engine": engine_info(context),
        "metrics_port": exporter_port(),
        "stats": stats.snapshot(),
        "serves": served_models(settings, queues or []),
        "interactive_lane": lane_info(context),
    }


def lane_info(context: WorkerContext) -> dict[str, Any]:
    """The interactive lane: its job threads (0 = off) and how many run a job now."""
    lane = context.lane
    if lane is None:
        return {"slots": 0, "running": 0}
    return {"slots": lane.slots, "running": lane.running()}


@inspect_command(name=INSPECT_QFLEET_INFO)
def qfleet_info(state: Any, **_: Any) -> dict[str, Any]:
    """qfleet: model, device, batch settings and throughput of this worker."""
    consumer = getattr(state, "consumer", None)
    task_consumer = getattr(consumer, "task_consumer", None)
    queues = [q.name for q in getattr(task_consumer, "queues", [])]
    return worker_info(context_of(state.consumer.app), queues)
