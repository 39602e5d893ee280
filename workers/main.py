"""The worker entry point: `celery -A qfleet.workers.main worker` (or `qfleet worker`).

The worker's context (settings, app, runtime, Redis clients, job policy) is built once, when the
app is first asked for: `celery -A` reads `app` from this module (built from `Settings()`, i.e.
the environment); `qfleet worker` builds it from the settings its options made
(`create_worker_app(settings)`), so no option travels through the environment.

The model is loaded once per process *after* fork: a CTranslate2 generator created in a prefork
parent hangs every task in its children, and CUDA does not survive fork either.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
from typing import Any

from celery import Celery
from celery.signals import (
    task_revoked,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from qfleet.tasks.settings import Settings, redact_url
from qfleet.workers.context import WorkerContext
from qfleet.workers.lane import InteractiveLaneStep
from qfleet.workers.policy import answer_revoked

log = logging.getLogger("qfleet.worker")

# Modules that define the job tasks (each task a `JobTask`, reaching the context through its app),
# then metrics (signal handlers) and the `qfleet_info` inspect command.
TASK_MODULES = (
    "qfleet.workers.generate",
    "qfleet.workers.retrieve",
    "qfleet.workers.ingest",
    "qfleet.workers.extract",
    "qfleet.workers.embed",
)
WORKER_MODULES = ("qfleet.workers.metrics", "qfleet.workers.control")


def create_worker_app(settings: Settings | None = None) -> Celery:
    """A worker's Celery app with its context built from `settings` (the environment if None)."""
    context = WorkerContext.build(settings or Settings())
    app = context.app
    app.conf.include = [*TASK_MODULES, *context.settings.task_modules, *WORKER_MODULES]
    # Job threads only interactive jobs can take (QFLEET_WORKER_INTERACTIVE_SLOTS, workers/lane.py).
    app.steps["consumer"].add(InteractiveLaneStep)
    _connect(context)
    atexit.register(context.close)
    return app


@functools.cache
def default_app() -> Celery:
    """The app `celery -A qfleet.workers.main` serves, built on first use from `Settings()`."""
    return create_worker_app()


def __getattr__(name: str) -> Any:
    # `celery -A qfleet.workers.main` looks up `app`; building it lazily lets `qfleet worker`
    # import this module and build its own app from its options instead.
    if name in ("app", "celery"):
        return default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _connect(context: WorkerContext) -> None:
    uid = f"qfleet-{id(context)}"

    def on_init(sender: Any = None, **_: Any) -> None:
        _announce_urls(context, "qfleet worker")
        context.runtime.pool_concurrency = getattr(sender, "concurrency", None)
        pool = getattr(sender, "pool_cls", None)
        if "prefork" not in getattr(pool, "__module__", str(pool)):
            _load_model(context)

    def on_ready(**_: Any) -> None:
        # Logging is configured only now, so the load is reported here rather than where it ran.
        _announce_urls(context, "qfleet worker ready")
        _announce_model(context)
        log.info(
            "job threads: %s for every job, %d more for interactive jobs only "
            "(QFLEET_WORKER_INTERACTIVE_SLOTS; 0 with the prefork pool)",
            context.runtime.pool_concurrency,
            context.lane.slots if context.lane is not None else 0,
        )
        context.sweeper.start()

    def on_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
        answer_revoked(sender, request, str(getattr(request, "hostname", None) or "unknown"))

    worker_init.connect(on_init, weak=False, dispatch_uid=f"{uid}-init")
    worker_ready.connect(on_ready, weak=False, dispatch_uid=f"{uid}-ready")
    worker_process_init.connect(
        lambda **_: _load_model(context), weak=False, dispatch_uid=f"{uid}-fork"
    )
    worker_process_shutdown.connect(
        lambda **_: context.close(), weak=False, dispatch_uid=f"{uid}-child-exit"
    )
    worker_shutdown.connect(lambda **_: context.close(), weak=False, dispatch_uid=f"{uid}-exit")
    task_revoked.connect(on_revoked, weak=False, dispatch_uid=f"{uid}-revoked")


def _announce_urls(context: WorkerContext, what: str) -> None:
    settings = context.settings
    log.info(
        "%s: broker %s, results %s",
        what,
        redact_url(settings.broker),
        redact_url(settings.result_backend),
    )


def _announce_model(context: WorkerContext) -> None:
    loaded = context.runtime.loaded
    if loaded is not None:
        log.info(
            "model %s on %s (%s), loaded in %.2fs; manifest %s",
            loaded.manifest.model_id,
            loaded.device,
            loaded.compute_type,
            loaded.load_seconds,
            json.dumps(loaded.manifest.raw, sort_keys=True),
        )


def _load_model(context: WorkerContext) -> None:
    # A worker that only serves the knowledge queues needs no generation model.
    if context.settings.model_dir is not None:
        context.runtime.load()


__all__ = ["TASK_MODULES", "create_worker_app", "default_app"]
