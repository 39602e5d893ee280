"""The dead-letter store: jobs that failed for good, with what is needed to look and redrive."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from qfleet.tasks.constants import DLQ_ENTRY, DLQ_INDEX, DLQ_TTL_S


class DeadLetter(BaseModel):
    """One dead job: its payload as received, why it died, and when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str
    task: str
    queue: str
    payload: Any = Field(description="The job payload as the worker received it.")
    error_code: str
    error_message: str
    attempts: int
    worker: str | None = None
    first_seen_at: float | None = None
    dead_at: float = Field(default_factory=time.time)


class DeadLetterStore:
    """Dead letters in Redis, under the fleet's key prefix."""

    def __init__(self, redis: Any, prefix: str = "") -> None:
        self.redis = redis
        self.prefix = prefix

    def add(self, letter: DeadLetter) -> None:
        """Store `letter` (replacing an older letter of the same job)."""
        pipe = self.redis.pipeline()
        pipe.set(self._entry(letter.job_id), letter.model_dump_json(), ex=DLQ_TTL_S)
        pipe.zadd(self._index, {letter.job_id: letter.dead_at})
        pipe.execute()

    def get(self, job_id: str) -> DeadLetter | None:
        """The letter of `job_id`, if any."""
        raw = self.redis.get(self._entry(job_id))
        return DeadLetter.model_validate_json(raw) if raw else None

    def list(self, limit: int = 100) -> list[DeadLetter]:
        """The newest `limit` letters, newest first (expired entries are dropped)."""
        ids = [i.decode() for i in self.redis.zrevrange(self._index, 0, max(limit, 1) - 1)]
        letters = []
        for job_id in ids:
            letter = self.get(job_id)
            if letter is None:
                self.redis.zrem(self._index, job_id)
            else:
                letters.append(letter)
        return letters

    def count(self) -> int:
        """How many letters are stored."""
        return int(self.redis.zcard(self._index))

    def remove(self, job_id: str) -> bool:
        """Delete one letter; False when there was none."""
        pipe = self.redis.pipeline()
        pipe.delete(self._entry(job_id))
        pipe.zrem(self._index, job_id)
        deleted, _ = pipe.execute()
        return bool(deleted)

    def purge(self) -> int:
        """Delete every letter; returns how many there were."""
        ids = [i.decode() for i in self.redis.zrange(self._index, 0, -1)]
        for job_id in ids:
            self.remove(job_id)
        return len(ids)

    @property
    def _index(self) -> str:
        return self.prefix + DLQ_INDEX

    def _entry(self, job_id: str) -> str:
        return self.prefix + DLQ_ENTRY.format(job_id=job_id)
