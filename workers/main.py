"""The worker entry point: `celery -A qfleet.workers.main worker` (or `qfleet worker`).

The model is loaded once per process *after* fork: a CTranslate2 generator created in a prefork
parent hangs every task in its children, and CUDA does not survive fork either.
"""

from __future__ import annotations

import atexit
import json
import logging
from typing import Any

from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
)

from qfleet.tasks.app import create_app
from qfleet.tasks.redisconn import WORKER_RETRIES, fleet_redis
from qfleet.tasks.settings import Settings, redact_url
from qfleet.workers.policy import JobRunner
from qfleet.workers.runtime import WorkerRuntime
from qfleet.workers.sweeper import LedgerSweeper

log = logging.getLogger("qfleet.worker")

settings = Settings()
app = create_app(settings)
# Modules that define tasks; each imports `app`, `runtime` and `settings` from here.
app.conf.include = [
    "qfleet.workers.generate",
    "qfleet.workers.knowledge_tasks",
    "qfleet.workers.extract",
    "qfleet.workers.embed",
    *settings.task_modules,
]
# Metrics (signal handlers) and the `qfleet_info` inspect command: imported by the worker only.
app.conf.include += ["qfleet.workers.metrics", "qfleet.workers.control"]
runtime = WorkerRuntime(settings)
fleet_keys = fleet_redis(settings, retries=WORKER_RETRIES)
job_runner = JobRunner(settings, fleet_keys)
sweeper = LedgerSweeper(app, fleet_keys, settings)
atexit.register(runtime.close)


@worker_init.connect
def _load_in_pool_without_fork(sender: Any = None, **_: Any) -> None:
    log.info(
        "qfleet worker: broker %s, results %s",
        redact_url(settings.broker),
        redact_url(settings.result_backend),
    )
    runtime.pool_concurrency = getattr(sender, "concurrency", None)
    pool = getattr(sender, "pool_cls", None)
    pool_name = getattr(pool, "__module__", str(pool))
    if "prefork" not in pool_name:
        _load_model()


@worker_ready.connect
def _announce(**_: Any) -> None:
    # Logging is configured only now, so the load is reported here rather than where it ran.
    log.info(
        "qfleet worker ready: broker %s, results %s",
        redact_url(settings.broker),
        redact_url(settings.result_backend),
    )
    loaded = runtime.loaded
    if loaded is not None:
        log.info(
            "model %s on %s (%s), loaded in %.2fs; manifest %s",
            loaded.manifest.model_id,
            loaded.device,
            loaded.compute_type,
            loaded.load_seconds,
            json.dumps(loaded.manifest.raw, sort_keys=True),
        )
    sweeper.start()


@worker_process_init.connect
def _load_after_fork(**_: Any) -> None:
    _load_model()


def _load_model() -> None:
    # A worker that only serves the knowledge queues needs no generation model.
    if settings.model_dir is not None:
        runtime.load()


@worker_process_shutdown.connect
def _close_model(**_: Any) -> None:
    runtime.close()


__all__ = ["app", "fleet_keys", "job_runner", "runtime", "settings"]
