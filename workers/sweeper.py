"""The ledger sweeper: one thread per worker sends again jobs whose message the broker lost.

Only one worker of a fleet sweeps at a time (a Redis lock per interval). See tasks/ledger.py for
how a lost message is recognised.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery

from qfleet.tasks.ledger import HEADER, Ledger
from qfleet.tasks.settings import Settings

log = logging.getLogger("qfleet.worker")

SWEEP_LOCK = "qfleet:ledger:sweeping"


class LedgerSweeper:
    """Runs `sweep()` every `ledger_sweep_interval_s` in a daemon thread."""

    def __init__(self, app: Celery, redis: Any, settings: Settings) -> None:
        self.app = app
        self.redis = redis
        self.settings = settings
        self.ledger = Ledger(redis, settings.redis_key_prefix)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="qfleet-sweeper", daemon=True)

    def start(self) -> None:
        """Start sweeping in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current sweep."""
        self._stop.set()

    def _loop(self) -> None:
        interval = self.settings.ledger_sweep_interval_s
        while not self._stop.wait(interval):
            try:
                lock = self.settings.redis_key_prefix + SWEEP_LOCK
                if self.redis.set(lock, "1", nx=True, px=max(int(interval * 900), 1)):
                    self.sweep()
            except Exception:  # a sweep must never take the worker down
                log.exception("ledger sweep failed; trying again in %.0fs", interval)

    def sweep(self) -> int:
        """Send lost jobs again; returns how many were sent."""
        sent = 0
        for job_id, seq, record in self.ledger.lost(min_age_s=self.settings.ledger_min_age_s):
            if self.app.AsyncResult(job_id).state == "SUCCESS":
                self.ledger.drop(job_id, record.list)
                continue
            log.warning(
                "job %s is in no queue and was never started (its message was lost by the "
                "broker); sending it again", job_id
            )  # fmt: skip
            self.app.send_task(
                record.task,
                kwargs=record.kwargs,
                task_id=job_id,
                queue=record.queue,
                priority=record.priority,
                headers={HEADER: {"list": record.list, "seq": seq}},
            )
            self.ledger.resent(job_id, record)
            sent += 1
        return sent
