"""Waiting for jobs without a thread per request: asyncio Redis reads of results and streams.

`FleetClient.wait` and `FleetClient.stream` block a thread each; the gateway serves many
clients per process, so it reads the same Redis keys with redis-py's asyncio client: the job's
Celery result (`celery-task-meta-<id>`, polled every `POLL_S`) and its text stream
(`qfleet:stream:<id>`, read with a blocking `XREAD` that wakes on each new piece).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import anyio
from celery import Celery
from redis.asyncio import Redis as AsyncRedis

from qfleet.tasks.constants import STREAM_KEY
from qfleet.tasks.errors import JobFailedError, JobTimeoutError
from qfleet.tasks.schemas import ExtractResult, JobError, JobResult, parse_outcome

# Result polls: often enough to add at most ~10 ms to a job, one GET each.
POLL_S: Final = 0.01
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
        while True:
            data = await self.outcome(job_id)
            if data is not None:
                return data
            if time.monotonic() >= deadline:
                raise JobTimeoutError(f"job {job_id} has no result after {timeout:g}s")
            await anyio.sleep(POLL_S)

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
