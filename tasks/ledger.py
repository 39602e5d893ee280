"""The job ledger: finds messages the broker lost, and sends them again.

Kombu's Redis transport moves a message from its queue to the `unacked` hash in two steps
(BRPOP, then HSET). A worker killed between the two loses that message: it is in neither place,
so the visibility timeout never brings it back (celery#7924). The ledger closes that gap:

- at submit, each job gets a sequence number per queue list (`<queue>:<priority>`) and joins
  that list's pending set; its record (task, queue, kwargs) is the value of its claim key;
- when a worker starts a job it marks it received and raises the list's received-high-water
  mark to the job's number; when the job ends (result or dead letter) it leaves the pending set;
- lists are first in, first out, so a pending job that is not marked received while a later job
  of its list was received is no longer in the queue: a sweeper sends it again, under the same
  job id. A job that was only slow to be marked gets a duplicate, which the duplicate-delivery
  guard runs once.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from qfleet.tasks.constants import JOB_KEY

LEDGER_SEQ = "qfleet:ledger:seq:{list}"
LEDGER_PENDING = "qfleet:ledger:pending:{list}"
LEDGER_HIGH_WATER = "qfleet:ledger:received:{list}"
LEDGER_LISTS = "qfleet:ledger:lists"
RECEIVED_KEY = "qfleet:received:{job_id}"
HEADER = "qfleet_ledger"

# Claim the job id, number the job, and add it to its list's pending set, atomically.
_RECORD = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) == false then return -1 end
local seq = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[3], seq, ARGV[3])
redis.call('SADD', KEYS[4], ARGV[4])
return seq
"""
# Mark a job received and raise its list's high-water mark (never lower it).
_RECEIVED = """
redis.call('SET', KEYS[1], '1', 'EX', ARGV[2])
local high = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) > high then redis.call('SET', KEYS[2], ARGV[1]) end
return 1
"""


class LedgerRecord(BaseModel):
    """What is needed to send a job again: kept as the value of its claim key."""

    model_config = ConfigDict(extra="forbid")

    task: str
    queue: str
    priority: int
    kwargs: dict[str, Any]
    list: str
    sent_at: float


def list_name(queue: str, priority: int) -> str:
    """The ledger's name for one broker list (a queue at one priority level)."""
    return f"{queue}:{priority}"


class Ledger:
    """The ledger in Redis, under the fleet's key prefix."""

    def __init__(self, redis: Any, prefix: str = "") -> None:
        self.redis = redis
        self.prefix = prefix

    def record(self, job_id: str, record: LedgerRecord, ttl_s: int) -> int | None:
        """Claim `job_id` and number it; None when the id was already claimed."""
        seq = self.redis.eval(
            _RECORD,
            4,
            self._key(JOB_KEY, job_id=job_id),
            self._key(LEDGER_SEQ, list=record.list),
            self._key(LEDGER_PENDING, list=record.list),
            self._key(LEDGER_LISTS),
            record.model_dump_json(),
            ttl_s,
            job_id,
            record.list,
        )
        return None if int(seq) < 0 else int(seq)

    def unrecord(self, job_id: str, list_: str) -> None:
        """Undo `record` for a job that could not be sent."""
        self.redis.delete(self._key(JOB_KEY, job_id=job_id))
        self.redis.zrem(self._key(LEDGER_PENDING, list=list_), job_id)

    def received(self, job_id: str, header: dict[str, Any] | None, ttl_s: int) -> None:
        """A worker started `job_id` (its message is safe in the broker's unacked hash)."""
        if not header:
            return
        self.redis.eval(
            _RECEIVED,
            2,
            self._key(RECEIVED_KEY, job_id=job_id),
            self._key(LEDGER_HIGH_WATER, list=header["list"]),
            int(header["seq"]),
            ttl_s,
        )

    def finished(self, job_id: str, header: dict[str, Any] | None) -> None:
        """`job_id` has its outcome: it leaves the pending set."""
        if not header:
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrem(self._key(LEDGER_PENDING, list=header["list"]), job_id)
        pipe.delete(self._key(RECEIVED_KEY, job_id=job_id))
        pipe.execute()

    def lost(self, *, min_age_s: float, limit: int = 500) -> list[tuple[str, int, LedgerRecord]]:
        """Pending jobs that are in no queue any more: numbered below a received job, never
        received themselves, and older than `min_age_s` (submitters racing for the same list
        can push in a different order than they numbered)."""
        found: list[tuple[str, int, LedgerRecord]] = []
        now = time.time()
        for raw in self.redis.smembers(self._key(LEDGER_LISTS)):
            list_ = raw.decode() if isinstance(raw, bytes) else str(raw)
            high = int(self.redis.get(self._key(LEDGER_HIGH_WATER, list=list_)) or 0)
            pending_key = self._key(LEDGER_PENDING, list=list_)
            candidates = self.redis.zrangebyscore(
                pending_key, "-inf", f"({high}", 0, limit, withscores=True
            )
            for member, seq in candidates:
                job_id = member.decode() if isinstance(member, bytes) else str(member)
                if self.redis.exists(self._key(RECEIVED_KEY, job_id=job_id)):
                    continue
                raw_record = self.redis.get(self._key(JOB_KEY, job_id=job_id))
                if raw_record is None:  # claim expired: nothing left to send
                    self.redis.zrem(pending_key, job_id)
                    continue
                record = LedgerRecord.model_validate_json(raw_record)
                if now - record.sent_at >= min_age_s:
                    found.append((job_id, int(seq), record))
        return found

    def resent(self, job_id: str, record: LedgerRecord) -> None:
        """Note that `job_id` was sent again now (the next sweep waits `min_age_s` again)."""
        record.sent_at = time.time()
        key = self._key(JOB_KEY, job_id=job_id)
        self.redis.set(key, record.model_dump_json(), xx=True, keepttl=True)

    def drop(self, job_id: str, list_: str) -> None:
        """Forget a pending job that already has its outcome."""
        self.redis.zrem(self._key(LEDGER_PENDING, list=list_), job_id)

    def _key(self, template: str, **fields: str) -> str:
        return self.prefix + template.format(**fields)
