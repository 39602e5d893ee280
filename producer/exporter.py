"""`qfleet exporter`: queue depth and oldest-message age as Prometheus metrics.

Flower and the worker exporters cannot see a queue nobody consumes; this small exporter reads
Redis on every scrape (one pipelined round trip), so a backlog shows even with zero workers.
Needs `pip install 'qfleet[ops]'` (prometheus_client).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from qfleet.producer.queues import read_queues
from qfleet.tasks.constants import ALL_QUEUES
from qfleet.tasks.settings import Settings

log = logging.getLogger("qfleet.exporter")

# The exporter's series; alert rules and the dashboard refer to these names (a test checks).
QUEUE_DEPTH = "qfleet_queue_depth"
QUEUE_OLDEST_AGE = "qfleet_queue_oldest_age_seconds"
REDIS_UP = "qfleet_exporter_redis_up"
EXPORTER_METRICS = (QUEUE_DEPTH, QUEUE_OLDEST_AGE, REDIS_UP)


class QueueCollector(Collector):
    """Reads every queue's depth and oldest age from Redis when Prometheus scrapes."""

    def __init__(self, client: redis.Redis, prefix: str, queues: Iterable[str] = ALL_QUEUES):
        self.client = client
        self.prefix = prefix
        self.queues = list(queues)

    def collect(self) -> Iterator[Metric]:
        """One scrape: `qfleet_queue_depth`, `..._oldest_age_seconds` (0 when empty), Redis up."""
        up = GaugeMetricFamily(REDIS_UP, "1 when the last read of Redis succeeded.")
        try:
            snapshots = read_queues(self.client, self.prefix, self.queues)
        except redis.RedisError as exc:
            log.warning("reading queues failed: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        depth = GaugeMetricFamily(QUEUE_DEPTH, "Messages waiting in the queue.", labels=["queue"])
        age = GaugeMetricFamily(
            QUEUE_OLDEST_AGE,
            "Seconds since the oldest waiting message was submitted (0 when the queue is empty).",
            labels=["queue"],
        )
        for snapshot in snapshots:
            depth.add_metric([snapshot.name], snapshot.depth)
            age.add_metric([snapshot.name], snapshot.oldest_age_s or 0.0)
        yield from (depth, age, up)


def queue_registry(settings: Settings) -> CollectorRegistry:
    """A registry holding only the queue collector for `settings`' Redis."""
    registry = CollectorRegistry()
    client = redis.Redis.from_url(settings.broker, socket_timeout=5, socket_connect_timeout=5)
    registry.register(QueueCollector(client, settings.redis_key_prefix))
    return registry


def serve(settings: Settings, host: str, port: int) -> Any:
    """Serve the queue metrics on http://HOST:PORT/metrics until interrupted."""
    server, thread = start_http_server(port, addr=host, registry=queue_registry(settings))
    log.info("queue metrics on http://%s:%d/metrics", host, port)
    try:
        while thread.is_alive():
            time.sleep(1)
    finally:
        server.shutdown()
