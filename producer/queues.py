"""Queue depth and the age of the oldest message, read straight from Redis.

Kombu's Redis transport LPUSHes new messages and BRPOPs from the right, so the oldest message of a
list is at index -1. A queue is one list per priority level (`tasks.constants.PRIORITY_LEVELS`),
every key under `QFLEET_REDIS_KEY_PREFIX` (kombu's `global_keyprefix`). The age comes from the
`submitted_at` that `FleetClient` puts in each job's kwargs; a message without one (sent by some
other client) counts in the depth but gives no age.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterable
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict, Field

from qfleet.tasks.constants import ALL_QUEUES, PRIORITY_LEVELS, PRIORITY_SEPARATOR


class LevelSnapshot(BaseModel):
    """One priority level of a queue at one moment (0 is served first)."""

    model_config = ConfigDict(frozen=True)

    priority: int
    depth: int
    oldest_age_s: float | None = None


class QueueSnapshot(BaseModel):
    """One queue at one moment; `levels` lists its non-empty priority levels."""

    model_config = ConfigDict(frozen=True)

    name: str
    depth: int
    oldest_age_s: float | None = None
    levels: list[LevelSnapshot] = Field(default_factory=list)


def queue_keys(queue: str, prefix: str = "") -> list[str]:
    """The Redis list keys holding `queue`, one per priority level."""
    return [
        f"{prefix}{queue}{PRIORITY_SEPARATOR}{level}" if level else f"{prefix}{queue}"
        for level in PRIORITY_LEVELS
    ]


def submitted_at(raw: bytes | str | None) -> float | None:
    """The `submitted_at` of a raw kombu message on a Redis list, or None when it has none."""
    if raw is None:
        return None
    try:
        message = json.loads(raw)
        body: Any = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        # Celery's message protocol 2: the body is [args, kwargs, embed].
        _, kwargs, _ = json.loads(body)
        value = kwargs.get("submitted_at")
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return None
    return float(value) if isinstance(value, int | float) else None


def read_queues(
    client: redis.Redis,
    prefix: str = "",
    queues: Iterable[str] = ALL_QUEUES,
    now: float | None = None,
) -> list[QueueSnapshot]:
    """Depth and oldest-message age of each queue, in one Redis round trip."""
    queues = list(queues)
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for key in queue_keys(queue, prefix):
            pipe.llen(key)
            pipe.lindex(key, -1)
    replies = pipe.execute()
    now = time.time() if now is None else now
    snapshots = []
    per_queue = 2 * len(PRIORITY_LEVELS)
    for index, queue in enumerate(queues):
        chunk = replies[index * per_queue : (index + 1) * per_queue]
        levels = [
            LevelSnapshot(priority=level, depth=int(depth), oldest_age_s=_age(raw, now))
            for level, depth, raw in zip(PRIORITY_LEVELS, chunk[0::2], chunk[1::2], strict=True)
            if int(depth)
        ]
        ages = [lv.oldest_age_s for lv in levels if lv.oldest_age_s is not None]
        snapshots.append(
            QueueSnapshot(
                name=queue,
                depth=sum(lv.depth for lv in levels),
                oldest_age_s=max(ages) if ages else None,
                levels=levels,
            )
        )
    return snapshots


def _age(raw: bytes | str | None, now: float) -> float | None:
    stamp = submitted_at(raw)
    return None if stamp is None else max(now - stamp, 0.0)
