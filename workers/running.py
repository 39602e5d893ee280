"""What keeps a running job owned and alive: its lock, its heartbeat and its cancel flag.

A job's running-lock holds a token only its run knows. One watcher thread per worker process
renews the locks of the jobs that process runs (a heartbeat), so a redelivered copy of a long
job keeps waiting however long the job takes, and polls their cancel keys, so a cancelled job's
rows stop within one poll interval. A lock is released only by its owner (compare-and-delete in
Lua): a first copy that finishes late cannot remove a second copy's lock.

The same heartbeat keeps the job's message out of the broker's redelivery. Kombu's Redis
transport records each unacknowledged message in the sorted set `unacked_index` (under the
transport's `global_keyprefix`), scored with the time it was fetched, and puts back every message
whose score is older than the visibility timeout — also messages whose job is still running
(celery#5935). Refreshing the score of the running delivery's tag (`ZADD XX`: never re-adding a
tag the worker acked or kombu restored) keeps a live job's message where it is; a worker that
died stops refreshing, so its messages come back as before.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from qfleet.tasks.constants import CANCEL_KEY

log = logging.getLogger("qfleet.worker")

# kombu.transport.redis.Channel.unacked_index_key (prefixed by the transport's global_keyprefix).
UNACKED_INDEX = "unacked_index"

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RunningLock:
    """A job's running-lock with an owner token: taken once, renewed and released by its owner."""

    def __init__(self, redis: Any, key: str, ttl_s: float) -> None:
        self.redis = redis
        self.key = key
        self.ttl_ms = max(int(ttl_s * 1000), 1)
        self.token = uuid.uuid4().hex
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take the lock; False when another run holds it."""
        return bool(self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """Extend the lock by its TTL; False when this run no longer owns it."""
        return bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> bool:
        """Delete the lock if this run still owns it; False when it did not (nothing deleted)."""
        return bool(self._release(keys=[self.key], args=[self.token]))

    def remaining_s(self) -> float:
        """Seconds until the current holder's lock expires (0 when nobody holds it)."""
        return max(int(self.redis.pttl(self.key)), 0) / 1000


@dataclass(eq=False)
class RunningJob:
    """One job this process runs: what the watcher renews and the flag it sets on cancel."""

    job_id: str
    lock: RunningLock | None
    delivery_tag: str | None
    cancel_key: str
    cancelled: threading.Event = field(default_factory=threading.Event)


class JobWatch:
    """The watcher thread of one worker process (started on first use, again after a fork)."""

    def __init__(
        self,
        redis: Any,
        broker_redis: Any,
        *,
        key_prefix: str,
        heartbeat_s: float,
        poll_s: float,
    ) -> None:
        self.redis = redis
        self.broker_redis = broker_redis
        self.key_prefix = key_prefix
        self.heartbeat_s = heartbeat_s
        self.poll_s = poll_s
        self._jobs: set[RunningJob] = set()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()

    def cancel_key(self, job_id: str) -> str:
        """The Redis key whose existence asks the fleet to stop `job_id`."""
        return self.key_prefix + CANCEL_KEY.format(job_id=job_id)

    def cancel_requested(self, job_id: str) -> bool:
        """True when someone cancelled `job_id`."""
        return bool(self.redis.exists(self.cancel_key(job_id)))

    def watch(self, job_id: str, lock: RunningLock | None, delivery_tag: str | None) -> RunningJob:
        """Start renewing and cancel-polling `job_id` until `unwatch`."""
        job = RunningJob(job_id, lock, delivery_tag, self.cancel_key(job_id))
        with self._lock:
            self._jobs.add(job)
            if self._pid != os.getpid():  # first job, or first job in a forked child
                self._pid = os.getpid()
                thread = threading.Thread(target=self._loop, name="qfleet-job-watch", daemon=True)
                thread.start()
        return job

    def unwatch(self, job: RunningJob) -> None:
        """Stop watching `job` (it finished)."""
        with self._lock:
            self._jobs.discard(job)

    def close(self) -> None:
        """Stop the thread after its current round."""
        self._stop.set()

    def _loop(self) -> None:
        next_beat = 0.0
        while not self._stop.wait(self.poll_s):
            with self._lock:
                jobs = list(self._jobs)
            if not jobs:
                continue
            try:
                self.poll_cancels(jobs)
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.heartbeat_s
                    self.heartbeat(jobs)
            except Exception:  # the watcher must outlive a Redis blip; the next round retries
                log.exception("job watcher round failed; trying again")

    def poll_cancels(self, jobs: list[RunningJob]) -> None:
        """Set the cancelled flag of every job whose cancel key exists."""
        pipe = self.redis.pipeline(transaction=False)
        for job in jobs:
            pipe.exists(job.cancel_key)
        for job, exists in zip(jobs, pipe.execute(), strict=True):
            if exists and not job.cancelled.is_set():
                log.warning("job %s cancelled; stopping it", job.job_id)
                job.cancelled.set()

    def heartbeat(self, jobs: list[RunningJob]) -> None:
        """Renew each job's lock and refresh its message's place in kombu's unacked index."""
        now = time.time()
        tags = {job.delivery_tag: now for job in jobs if job.delivery_tag}
        if tags:
            self.broker_redis.zadd(self.key_prefix + UNACKED_INDEX, tags, xx=True)
        for job in jobs:
            if job.lock is not None and not job.lock.renew():
                log.warning("job %s lost its running-lock (expired); renewing stopped", job.job_id)
                job.lock = None
