"""The Celery app factory shared by producer and workers.

Every delivery-relevant setting is chosen here, once, with the reason beside it.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue  # type: ignore[attr-defined]

from qfleet.tasks.constants import (
    ALL_QUEUES,
    CANARY_QUEUES,
    QUEUE_EXTRACT,
    QUEUE_GENERATE,
    QUEUE_INGEST,
    QUEUE_RETRIEVE,
    TASK_EMBED,
    TASK_EXTRACT,
    TASK_GENERATE,
    TASK_INGEST,
    TASK_KB_ADMIN,
    TASK_RAG_RETRIEVE,
    TASK_RETRIEVE,
)
from qfleet.tasks.settings import Settings

JSON_ONLY = ["json"]


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration for `settings`, as a plain dict (inspectable in tests)."""
    transport_options: dict[str, Any] = {
        # One visibility timeout everywhere Celery reads it: the broker's unacked-restore and the
        # result backend. It must exceed the hard time limit (enforced by Settings).
        "visibility_timeout": settings.visibility_timeout_s,
        # A crashed worker's messages come back once their visibility timeout has passed; look
        # for them every interval (one cheap ZRANGE), not every 10 × 10 s as kombu would.
        "unacked_restore_interval": settings.unacked_restore_interval_s,
        "unacked_restore_throttle": 1,
    }
    if settings.redis_key_prefix:
        transport_options["global_keyprefix"] = settings.redis_key_prefix
    return {
        "broker_url": settings.broker,
        "result_backend": settings.result_backend,
        "broker_transport_options": dict(transport_options),
        "result_backend_transport_options": dict(transport_options),
        "broker_connection_retry_on_startup": True,
        # JSON only: a pickle message on a shared broker is remote code execution.
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": JSON_ONLY,
        "result_accept_content": JSON_ONLY,
        # At-least-once: a message is acked after the job ran, and requeued if the process died.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # One reserved message per thread: LLM jobs are long, so prefetching more only parks work
        # on a busy worker (unfair) and widens what a crash leaves waiting for the visibility
        # timeout. Throughput comes from in-process batching, not from prefetch.
        "worker_prefetch_multiplier": settings.prefetch_multiplier,
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "task_time_limit": settings.task_time_limit_s,
        "task_track_started": True,
        "result_expires": settings.result_ttl_s,
        # Storing and reading results survives a Redis restart: retried, not failed.
        "result_backend_always_retry": True,
        "result_backend_max_retries": 30,
        "result_backend_max_sleep_between_retries_ms": 1000,
        "result_extended": True,
        **_routing(),
        "task_create_missing_queues": False,
        # Worker events feed Flower and `qfleet status`. No task-sent event: it would double the
        # Redis round trips of every submit, and queue depth/age come from the queues themselves.
        "worker_send_task_events": True,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
    }


def _routing() -> dict[str, Any]:
    """Queues, and the route of every task to its queue."""
    default_exchange = Exchange("qfleet", type="direct")  # type: ignore[no-untyped-call]
    return {
        "task_queues": [
            Queue(name, default_exchange, routing_key=name)  # type: ignore[no-untyped-call]
            for name in (*ALL_QUEUES, *CANARY_QUEUES)  # canaries: quality-loop hook
        ],
        "task_default_queue": QUEUE_GENERATE,
        "task_default_exchange": default_exchange.name,
        "task_default_routing_key": QUEUE_GENERATE,
        "task_routes": {
            TASK_GENERATE: {"queue": QUEUE_GENERATE, "routing_key": QUEUE_GENERATE},
            TASK_INGEST: {"queue": QUEUE_INGEST, "routing_key": QUEUE_INGEST},
            TASK_KB_ADMIN: {"queue": QUEUE_INGEST, "routing_key": QUEUE_INGEST},
            TASK_RETRIEVE: {"queue": QUEUE_RETRIEVE, "routing_key": QUEUE_RETRIEVE},
            TASK_RAG_RETRIEVE: {"queue": QUEUE_RETRIEVE, "routing_key": QUEUE_RETRIEVE},
            TASK_EXTRACT: {"queue": QUEUE_EXTRACT, "routing_key": QUEUE_EXTRACT},
            TASK_EMBED: {"queue": QUEUE_RETRIEVE, "routing_key": QUEUE_RETRIEVE},
        },
    }


def create_app(settings: Settings | None = None, *, main: str = "qfleet") -> Celery:
    """A Celery app configured from `settings` (read from the environment when omitted)."""
    settings = settings or Settings()
    app = Celery(main)
    app.conf.update(celery_config(settings))
    app.conf.qfleet_settings = settings
    return app
