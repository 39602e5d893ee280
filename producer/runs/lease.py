"""The run lease: one producer follows a run at a time; a dead follower's lease is taken over.

The lease is a Redis key holding `<host>:<pid>` with a TTL of `RUN_LEASE_S`, renewed on every
poll. A follower that died on this host is noticed at once (its pid is gone); one that died
elsewhere lets its lease lapse.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from qfleet.producer.runs.spec import RunBusyError
from qfleet.tasks.constants import RUN_LEASE_S


def lease_owner() -> str:
    """This process's name as a lease holder."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_died_here(holder: str) -> bool:
    """True when `holder` (`host:pid[:...]`, as `lease_owner` writes it) is a process of this
    host that no longer exists: its lease can be taken over at once instead of after it lapses."""
    host, pid, *_ = [*holder.split(":"), "", ""]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class RunLease:
    """A run's lease key."""

    def __init__(self, redis: Any, key: str, run_id: str) -> None:
        self.redis = redis
        self.key = key
        self.run_id = run_id

    def take(self, owner: str, wait_s: float) -> None:
        """Become the run's only follower, waiting up to `wait_s` for a dead one's lease.

        Raises:
            RunBusyError: a live follower holds it.
        """
        deadline = time.monotonic() + wait_s
        while not self.redis.set(self.key, owner, nx=True, ex=RUN_LEASE_S):
            if self._holder_died_here():
                self.redis.delete(self.key)
                continue
            if time.monotonic() > deadline:
                raise RunBusyError(
                    f"run {self.run_id} is being followed by another producer; wait for it, or "
                    f"for {RUN_LEASE_S}s after it died"
                )
            time.sleep(0.2)

    def renew(self, owner: str) -> None:
        """Extend `owner`'s lease (taken back if it lapsed meanwhile)."""
        if self.redis.get(self.key) in (None, owner.encode()):
            self.redis.set(self.key, owner, ex=RUN_LEASE_S)

    def release(self, owner: str) -> None:
        """Give the lease up if `owner` holds it."""
        if self.redis.get(self.key) == owner.encode():
            self.redis.delete(self.key)

    def _holder_died_here(self) -> bool:
        """True when the lease belongs to a process of this host that no longer exists."""
        raw = self.redis.get(self.key)
        return holder_died_here((raw or b"").decode())
        return False
