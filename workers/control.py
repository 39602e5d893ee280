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

from qfleet.tasks.constants import INSPECT_QFLEET_INFO
from qfleet.workers.main import runtime, settings
from qfleet.workers.metrics import exporter_port, stats


def batch_settings() -> dict[str, Any]:
    """The worker's batching knobs (every setting whose name mentions batch) and its layout."""
    knobs = {name: value for name, value in settings.model_dump().items() if "batch" in name}
    if runtime.layout is not None:
        knobs["layout"] = f"{runtime.layout.label} ({runtime.layout.source})"
    return knobs


def engine_info() -> dict[str, Any] | None:
    """The engine layout in use (replicas, threads, batch, where it came from) and its load."""
    layout = runtime.layout
    if layout is None or runtime.loaded is None:
        return None
    return {**layout.as_dict(), **runtime.batcher.snapshot()}


def worker_info() -> dict[str, Any]:
    """What this worker process serves and how it has done, as JSON data."""
    loaded = runtime.loaded
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
        "batch": batch_settings(),
        "engine": engine_info(),
        "metrics_port": exporter_port(),
        "stats": stats.snapshot(),
    }


@inspect_command(name=INSPECT_QFLEET_INFO)
def qfleet_info(state: Any, **_: Any) -> dict[str, Any]:
    """qfleet: model, device, batch settings and throughput of this worker."""
    return worker_info()
