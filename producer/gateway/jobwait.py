"""Waiting for jobs without a thread per request: asyncio Redis reads of results and streams.

`FleetClient.wait` and `FleetClient.stream` block a thread each and poll; the gateway serves
many clients per process, so it uses redis-py's asyncio client on the same keys. A result:
Celery's Redis backend publishes every result it stores on a channel named like its key
(`celery-task-meta-<id>`), so a waiter subscribes (one pub/sub connection per process) and wakes
the moment the result lands, reading the key once before and every `FALLBACK_POLL_S` after, in
case a message was missed. A stream (`qfleet:stream:<id>`): a blocking `XREAD` that wakes on
each new piece.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import anyio
from celery import Celery
from redis.asyncio import Redis as AsyncRedis

from qfleet.tasks.constants import STREAM_KEY
from qfleet.tasks.errors import JobFailedError, JobTimeoutError
from qfleet.tasks.schemas import ExtractResult, JobError, JobResult, parse_outcome

log = logging.getLogger("qfleet.gateway")

# Between an end marker and its result (written right after), and for jobs of other kinds.
POLL_S: Final = 0.01
# A waiter re-reads the result this often even without a message (a reconnect may drop one).
FALLBACK_POLL_S: Final = 0.25
# The listener's connection needs a subscription before it can read; this channel carries none.
IDLE_CHANNEL: Final = "qfleet:gw:idle"
# A stream read waits this long for a piece before the reader checks for a result without one
# (a job that failed before it started streaming) and the client gets a keep-alive.
STREAM_BLOCK_MS: Final = 1_000

Outcome = JobResult | ExtractResult | JobError


class AsyncJobs:
    """Reads job outcomes and streams of one fleet from asyncio code."""

    def __init__(self, redis: AsyncRedis, app: Celery, key_prefix: str) -> None:
        self.redis = redis
        self.app = app
        self.prefix = key_prefix
        self._listener = ResultListener(redis, key_prefix + IDLE_CHANNEL)

    async def aclose(self) -> None:
        """Stop listening and close the connections."""
        await self._listener.aclose()
        await self.redis.aclose()

    async def outcome(self, job_id: str) -> Any:
        """The job's stored outcome as data (None while it has none; a dict for any job kind)."""
        raw = await self.redis.get(self.app.backend.get_key_for_task(job_id))
        if raw is None:
            return None
        meta = json.loads(raw)
        status = meta.get("status")
        if status == "SUCCESS":
            return meta.get("result")
        if status in ("FAILURE", "REVOKED"):
            code = "cancelled" if status == "REVOKED" else "internal"
            return {"status": "failed", "job_id": job_id, "code": code, "message": status.lower()}
        return None

    async def wait(self, job_id: str, timeout: float) -> Outcome:
        """The job's outcome once it has one; raises `JobTimeoutError` after `timeout` seconds."""
        return parse_outcome(await self.wait_data(job_id, timeout))

    async def wait_data(self, job_id: str, timeout: float) -> Any:
        """The job's outcome as stored (any job kind), once it has one."""
        deadline = time.monotonic() + timeout
        channel = self.app.backend.get_key_for_task(job_id)
        async with self._listener.watch(channel) as landed:
            while True:
                data = await self.outcome(job_id)
                if data is not None:
                    return data
                left = deadline - time.monotonic()
                if left <= 0:
                    raise JobTimeoutError(f"job {job_id} has no result after {timeout:g}s")
                with anyio.move_on_after(min(FALLBACK_POLL_S, left)):
                    await landed.wait()
                landed.clear()

    async def pieces(self, job_id: str, timeout: float) -> AsyncIterator[str | None]:
        """The job's text pieces as the worker streams them; None while none came for a while.

        Ends when the worker marks the stream's end (or, for a job that never streamed, when it
        has a result: its whole text comes as one piece).

        Raises:
            JobFailedError: the job ended with a `JobError`.
            JobTimeoutError: it did not end within `timeout` seconds.
        """
        key = self.prefix + STREAM_KEY.format(job_id=job_id)
        deadline = time.monotonic() + timeout
        last = "0"
        while time.monotonic() < deadline:
            replies: Any = await self.redis.xread({key: last}, block=STREAM_BLOCK_MS, count=256)
            for _, entries in replies or []:
                for entry_id, fields in entries:
                    last = entry_id
                    if b"t" in fields:
                        yield fields[b"t"].decode()
                    elif b"end" in fields:
                        await self._raise_if_failed(job_id)
                        return
            if not replies:
                done = await self._unstreamed(job_id, key)
                if done is not None:
                    yield done
                    return
                yield None
        raise JobTimeoutError(f"job {job_id} did not finish streaming within {timeout:g}s")

    async def _unstreamed(self, job_id: str, key: str) -> str | None:
        """The whole text of a job that has a result but no stream; raises for a failed one."""
        data = await self.outcome(job_id)
        if data is None:
            return None
        outcome = parse_outcome(data)
        if isinstance(outcome, JobError):
            raise JobFailedError(outcome)
        if await self.redis.exists(key):
            return None  # it streamed after all: its pieces come next
        return outcome.text if isinstance(outcome, JobResult) else outcome.model_dump_json()

    async def _raise_if_failed(self, job_id: str) -> None:
        # The end marker is written just before the result is stored: give it a moment.
        for _ in range(200):
            data = await self.outcome(job_id)
            if data is not None:
                outcome = parse_outcome(data)
                if isinstance(outcome, JobError):
                    raise JobFailedError(outcome)
                return
            await anyio.sleep(POLL_S)


class ResultListener:
    """One pub/sub connection that wakes the waiters of result channels as results land."""

    def __init__(self, redis: AsyncRedis, idle_channel: str) -> None:
        self.redis = redis
        self.idle_channel = idle_channel
        self._waiters: dict[bytes, set[asyncio.Event]] = {}
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def watch(self, channel: str | bytes) -> AsyncIterator[asyncio.Event]:
        """An event set whenever something is published on `channel`, while in the block."""
        name = channel.encode() if isinstance(channel, str) else channel
        event = asyncio.Event()
        await self._subscribe(name, event)
        try:
            yield event
        finally:
            # Also when the waiter was cancelled (its client left): never leave a subscription.
            with anyio.CancelScope(shield=True):
                await self._unsubscribe(name, event)

    async def _subscribe(self, name: bytes, event: asyncio.Event) -> None:
        async with self._lock:
            if self._pubsub is None:
                self._pubsub = self.redis.pubsub()
                await self._pubsub.subscribe(self.idle_channel)
                self._reader = asyncio.create_task(self._read(), name="qfleet-results")
            first = name not in self._waiters
            self._waiters.setdefault(name, set()).add(event)
            if first:
                await self._pubsub.subscribe(name)

    async def _unsubscribe(self, name: bytes, event: asyncio.Event) -> None:
        async with self._lock:
            waiters = self._waiters.get(name, set())
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(name, None)
                with contextlib.suppress(Exception):
                    await self._pubsub.unsubscribe(name)

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1.0
                )
            except asyncio.CancelledError:
                raise
            except Exception:  # a dropped connection: waiters fall back to reading the key
                log.warning("result listener lost its connection; reconnecting", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            if message is not None and message.get("type") == "message":
                for event in self._waiters.get(message["channel"], ()):
                    event.set()

    async def aclose(self) -> None:
        """Stop the reader and close the connection."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._pubsub is not None:
            await self._pubsub.aclose()
