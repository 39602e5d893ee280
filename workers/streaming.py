"""Publishing a job's text to a Redis stream while it is generated."""

from __future__ import annotations

from typing import Any

from qfleet.tasks.constants import STREAM_KEY, STREAM_MAXLEN, STREAM_TTL_S


class TokenStream:
    """Appends text pieces of one job to `qfleet:stream:<job_id>`, then an end marker."""

    def __init__(self, redis: Any, job_id: str, prefix: str = "") -> None:
        self.redis = redis
        self.key = prefix + STREAM_KEY.format(job_id=job_id)
        self._started = False

    def push(self, text: str) -> None:
        """Publish one piece (called from the engine thread, between decoding steps)."""
        self._add({"t": text})

    def close(self, finish_reason: str) -> None:
        """Mark the end: `stop`, `length`, or `error:<code>`."""
        self._add({"end": finish_reason})

    def _add(self, fields: dict[str, str]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(self.key, fields, maxlen=STREAM_MAXLEN, approximate=True)
        if not self._started or "end" in fields:
            pipe.expire(self.key, STREAM_TTL_S)
            self._started = True
        pipe.execute()
