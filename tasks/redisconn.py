"""Redis connections for qfleet's own keys (job claims, attempts, locks, streams, dead letters).

Celery's result backend retries its own operations (`result_backend_always_retry`); these
clients retry theirs, so a Redis restart is a pause, not a lost job.
"""

from __future__ import annotations

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError
from redis.retry import Retry

from qfleet.tasks.settings import Settings

# Workers ride out a restart (about 30 s of retries); a producer reports an outage quickly.
WORKER_RETRIES = 40
PRODUCER_RETRIES = 2


def fleet_redis(settings: Settings, *, retries: int, url: str | None = None) -> Redis:
    """A client for the result-backend Redis (or `url`) that retries connection errors."""
    return Redis.from_url(
        url or settings.result_backend,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        retry_on_error=[ConnectionError, TimeoutError, BusyLoadingError],
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=30,
    )
