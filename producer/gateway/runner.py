"""The batch runner: the loop that follows batches and sends webhooks, in any number of processes.

Every gateway process runs one in a background thread (unless `gateway_follow_batches` is off)
and `qfleet batch-runner` runs one on its own. Each pass it delivers due webhooks and looks at the
active batches: a batch whose lease is free (its follower finished, was killed, or never existed)
is taken and followed in a thread of its own, up to `batch_followers` at once. A request handler
never follows a batch; it only writes the batch's record.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

from redis.exceptions import RedisError

from qfleet.producer.gateway.batch_store import BATCH_LEASE_S, BatchStore
from qfleet.producer.gateway.batches import BatchInterruptedError, BatchRun
from qfleet.producer.gateway.files import FileStore
from qfleet.producer.gateway.webhooks import WebhookSender
from qfleet.tasks.redisconn import WORKER_RETRIES, fleet_redis
from qfleet.tasks.settings import Settings

log = logging.getLogger("qfleet.gateway.runner")

# How often the loop looks for batches without a follower and for due webhooks.
POLL_S: Final = 1.0


class BatchRunner:
    """Follows free batches and delivers webhooks until stopped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # A runner rides out a Redis restart like a worker does.
        self.redis = fleet_redis(settings, retries=WORKER_RETRIES)
        prefix, ttl = settings.redis_key_prefix, settings.gateway_file_ttl_s
        self.store = BatchStore(self.redis, prefix, ttl)
        self.files = FileStore(self.redis, prefix, ttl)
        self.sender = WebhookSender(self.redis, settings)
        self.stopping = threading.Event()
        self.following: dict[str, threading.Thread] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> BatchRunner:
        """Run the loop in a background thread (the gateway's way)."""
        self._thread = threading.Thread(target=self.run, name="qfleet-batch-runner", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        """Loop until `stop()` (the `qfleet batch-runner` way)."""
        log.info("batch runner started (up to %d batches)", self.settings.batch_followers)
        # Webhooks go out from a thread of their own: a slow receiver never delays batches.
        self._sender_thread = threading.Thread(
            target=self._loop, args=(self.sender.deliver_due,), name="qfleet-webhooks", daemon=True
        )
        self._sender_thread.start()
        self._loop(self.step)
        self._sender_thread.join()

    def _loop(self, action: Callable[[], object]) -> None:
        while not self.stopping.is_set():
            try:
                action()
            except RedisError as exc:
                log.warning("batch runner: Redis unavailable (%s); retrying", exc)
            except Exception:
                # A background loop must outlive any one bad record; the log says which.
                log.exception("batch runner: unexpected error; going on")
            self.stopping.wait(POLL_S)

    def step(self) -> None:
        """One pass: take the batches that have no live follower."""
        for batch_id, thread in list(self.following.items()):
            if not thread.is_alive():
                del self.following[batch_id]
        for batch_id in self.store.active():
            if len(self.following) >= self.settings.batch_followers:
                break
            if batch_id not in self.following:
                self._try_follow(batch_id)

    def _try_follow(self, batch_id: str) -> None:
        token = self.store.take_lease(batch_id)
        if token is None:
            return
        meta = self.store.meta(batch_id)
        if meta is None:  # the batch expired: nothing left to follow
            self.store.deactivate(batch_id)
            self.store.release_lease(batch_id, token)
            return
        thread = threading.Thread(
            target=self._follow, args=(batch_id, token), name=f"batch-{batch_id}", daemon=True
        )
        self.following[batch_id] = thread
        thread.start()

    def _follow(self, batch_id: str, token: str) -> None:
        lost = threading.Event()
        beat = threading.Thread(target=self._renew, args=(batch_id, token, lost), daemon=True)
        beat.start()
        try:
            meta = self.store.meta(batch_id)
            if meta is None:
                return
            log.info("following batch %s", batch_id)
            with tempfile.TemporaryDirectory(prefix="qfleet-batch-") as work:
                BatchRun(
                    self.settings,
                    self.store,
                    self.files,
                    meta,
                    Path(work),
                    interrupted=lambda: lost.is_set() or self.stopping.is_set(),
                ).follow()
        except BatchInterruptedError:
            log.info("batch %s left to another follower", batch_id)
        except Exception:
            # Released below: this or another process picks the batch up again next pass.
            log.exception("following batch %s failed; it will be resumed", batch_id)
        finally:
            lost.set()
            beat.join()
            self.store.release_lease(batch_id, token)

    def _renew(self, batch_id: str, token: str, done: threading.Event) -> None:
        """Renew the lease until `done`; set `done` when the lease was lost."""
        while not done.wait(BATCH_LEASE_S / 4):
            try:
                if not self.store.renew_lease(batch_id, token):
                    log.warning("batch %s: lease lost; stopping", batch_id)
                    done.set()
            except RedisError as exc:
                log.warning("batch %s: could not renew the lease (%s)", batch_id, exc)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following (followed batches are left to other processes) and close."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for thread in list(self.following.values()):
            thread.join(timeout)
        self.sender.close()
        self.redis.close()
