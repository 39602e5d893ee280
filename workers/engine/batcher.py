"""The names job code has always used for the engine's front door, kept for its call sites.

`DynamicBatcher` is the `EngineScheduler` (overlapping calls, lanes, preemption) and
`BatchPolicy` its `SchedulerPolicy`; see workers/engine/scheduler.py.
"""

from __future__ import annotations

from qfleet.workers.engine.scheduler import EngineScheduler, SchedulerPolicy

DynamicBatcher = EngineScheduler
BatchPolicy = SchedulerPolicy

__all__ = ["BatchPolicy", "DynamicBatcher"]
