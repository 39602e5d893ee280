"""The worker's context: settings, app, runtime, Redis clients and the job policy, built once.

`workers/main.py` builds it at start-up (from `Settings()`, or from the settings `qfleet worker`
made of its options) and attaches it to the Celery app; a task reaches it as `self.context`, a
signal handler or remote-control command through its app (`context_of(app)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Celery
from redis import Redis

from qfleet.tasks.app import create_app
from qfleet.tasks.redisconn import WORKER_RETRIES, fleet_redis
from qfleet.tasks.settings import Settings
from qfleet.workers.knowledge.runtime import KnowledgeRuntime
from qfleet.workers.policy import JobPolicy
from qfleet.workers.running import JobWatch
from qfleet.workers.runtime import WorkerRuntime
from qfleet.workers.sweeper import LedgerSweeper

_ATTRIBUTE = "qfleet_context"


@dataclass
class WorkerContext:
    """Everything a worker process's tasks share; one per process, built before any job."""

    settings: Settings
    app: Celery
    runtime: WorkerRuntime
    knowledge: KnowledgeRuntime
    redis: Redis  # qfleet's own keys, on the result-backend Redis
    broker_redis: Redis  # the broker's own keys (kombu's unacked index)
    watch: JobWatch
    policy: JobPolicy
    sweeper: LedgerSweeper
    # The interactive lane (workers/lane.py), once the worker's consumer started it.
    lane: Any = None

    @classmethod
    def build(cls, settings: Settings) -> WorkerContext:
        """The context for `settings`, attached to a new Celery app."""
        app = create_app(settings)
        redis = fleet_redis(settings, retries=WORKER_RETRIES)
        broker_redis = redis
        if settings.broker != settings.result_backend:
            broker_redis = fleet_redis(settings, retries=WORKER_RETRIES, url=settings.broker)
        watch = JobWatch(
            redis,
            broker_redis,
            key_prefix=settings.redis_key_prefix,
            heartbeat_s=settings.heartbeat_s,
            poll_s=settings.cancel_poll_s,
        )
        context = cls(
            settings=settings,
            app=app,
            runtime=WorkerRuntime(settings),
            knowledge=KnowledgeRuntime(settings),
            redis=redis,
            broker_redis=broker_redis,
            watch=watch,
            policy=JobPolicy(settings, redis, watch),
            sweeper=LedgerSweeper(app, redis, settings),
        )
        setattr(app, _ATTRIBUTE, context)
        return context

    def close(self) -> None:
        """Free the model and the knowledge base, stop the threads; safe to call twice."""
        self.watch.close()
        self.sweeper.stop()
        self.knowledge.close()
        self.runtime.close()


def context_of(app: Any) -> WorkerContext:
    """The context `app` was built with (a qfleet worker app always has one)."""
    context = getattr(app, _ATTRIBUTE, None)
    if not isinstance(context, WorkerContext):
        raise RuntimeError("this Celery app was not built by qfleet.workers.main.create_worker_app")
    return context
