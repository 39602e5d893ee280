"""The knowledge-base version counter in Redis: what cached answers are keyed by."""

from __future__ import annotations

from typing import Any

from qfleet.tasks.constants import KB_VERSION_KEY


class KnowledgeVersion:
    """`qfleet:kb:version` under this fleet's key prefix."""

    def __init__(self, redis: Any, key_prefix: str = "") -> None:
        self.redis = redis
        self.key = key_prefix + KB_VERSION_KEY

    def current(self) -> int:
        """The version now (0 before the first change)."""
        return int(self.redis.get(self.key) or 0)

    def bump(self) -> int:
        """Record a change (ingest, rollback, delete); returns the new version."""
        return int(self.redis.incr(self.key))
