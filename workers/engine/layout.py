"""The engine layout of a worker: replicas, threads per replica, batch size, and where it came from.

Which layout is fastest differs from machine to machine (cores, cache, SIMD, GPU), so `qfleet
tune` measures the candidates on the real model and caches the winner per CPU model, core count,
device, model and compute type. A worker uses, in this order: what settings pin
(QFLEET_ENGINE_REPLICAS, QFLEET_CPU_THREADS, QFLEET_BATCH_MAX_SIZE), the tuned layout for this
machine, or a default: one replica with every core on small CPUs, two overlapping calls above.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from qfleet.workers.engine.cache import default_cache_root

log = logging.getLogger(__name__)

LayoutSource = Literal["settings", "tuned", "default"]
# CPUs with at most this many cores run one replica with every core by default.
SMALL_CPU_CORES = 2


@dataclass(frozen=True)
class EngineLayout:
    """How one worker process runs its model."""

    replicas: int
    threads: int
    max_batch_size: int
    interactive_replica: bool = True
    source: LayoutSource = "default"

    @property
    def label(self) -> str:
        """Short form for logs and tables: `2x1 b16 +i`."""
        extra = " +i" if self.interactive_replica else ""
        return f"{self.replicas}x{self.threads} b{self.max_batch_size}{extra}"

    def as_dict(self) -> dict[str, object]:
        """JSON data for status replies and the cache."""
        return {**asdict(self), "label": self.label}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (`unknown` where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def machine_key(device: str, model_id: str, compute_type: str) -> str:
    """The cache key of a tuned layout: what makes another machine's choice wrong here."""
    raw = f"{cpu_model()}-{usable_cores()}c-{device}-{model_id}-{compute_type}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw)


def layout_cache_path(device: str, model_id: str, compute_type: str) -> Path:
    """Where `qfleet tune` keeps its choice for this machine and model."""
    return default_cache_root() / "layouts" / f"{machine_key(device, model_id, compute_type)}.json"


def save_tuned(path: Path, layout: EngineLayout, measurements: list[dict[str, object]]) -> None:
    """Cache `layout` with the measurements it was chosen from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"layout": layout.as_dict(), "cpu": cpu_model(), "cores": usable_cores(),
            "measurements": measurements}  # fmt: skip
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2))
    tmp.replace(path)


def load_tuned(path: Path) -> EngineLayout | None:
    """The cached layout at `path`, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text())["layout"]
        return EngineLayout(
            replicas=int(data["replicas"]),
            threads=int(data["threads"]),
            max_batch_size=int(data["max_batch_size"]),
            interactive_replica=bool(data.get("interactive_replica", True)),
            source="tuned",
        )
    except (OSError, KeyError, TypeError, ValueError) as exc:
        if path.exists():
            log.warning("ignoring the tuned layout in %s: %s", path, exc)
        return None


def cpu_slots(device: str, layout: EngineLayout) -> int:
    """Calls that decode at once without oversubscribing the cores; 0 (no limit) on a GPU."""
    if device != "cpu":
        return 0
    return max(usable_cores() // max(layout.threads, 1), 1)


def default_layout(device: str, cores: int, batch: int) -> EngineLayout:
    """The layout without tuning: one call with every core on small CPUs, two side by side above.

    On two cores, one replica with both threads gave more aggregate throughput than two
    one-thread replicas at batch 16-32 on both machines measured (docs/performance.md), so
    machines with up to SMALL_CPU_CORES cores run one call at a time; larger ones give each of
    two replicas half the cores (`qfleet tune` measures both). On a GPU the two calls share the
    device (kernels of one fill the gaps of the other).
    """
    if device == "cuda":
        return EngineLayout(replicas=2, threads=1, max_batch_size=batch)
    replicas = 2 if cores > SMALL_CPU_CORES else 1
    return EngineLayout(replicas=replicas, threads=max(cores // replicas, 1), max_batch_size=batch)


def resolve_layout(
    *,
    device: str,
    tuned_path: Path | None,
    pinned_replicas: int,
    pinned_threads: int,
    pinned_batch: int,
    fallback_batch: int,
    interactive_replica: bool,
) -> EngineLayout:
    """Settings first, then the tuned layout, then the default; pinned values always win."""
    base = (load_tuned(tuned_path) if tuned_path else None) or default_layout(
        device, usable_cores(), fallback_batch
    )
    pinned = bool(pinned_replicas or pinned_threads or pinned_batch)
    replicas = pinned_replicas or base.replicas
    threads = pinned_threads or (
        base.threads if not pinned_replicas else max(usable_cores() // replicas, 1)
    )
    return EngineLayout(
        replicas=replicas,
        threads=threads if device != "cuda" else base.threads,
        max_batch_size=pinned_batch or base.max_batch_size,
        interactive_replica=interactive_replica,
        source="settings" if pinned else base.source,
    )
