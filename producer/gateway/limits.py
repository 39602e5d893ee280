"""Per-tenant limits: requests per minute and jobs in flight, answered 429 with `retry-after`.

Both counters live in Redis, so every gateway replica enforces the same limit.

- Requests per minute: a fixed one-minute window per tenant (`INCR` + `EXPIRE`); past the
  limit, `retry-after` is the seconds left in the window.
- Jobs in flight: a sorted set per tenant of its unfinished job ids, scored by when the gateway
  stops counting them (the job timeout). A request that waits for its job takes the job out when
  it ends; a job submitted to be read later leaves when it has a result, noticed when the tenant
  is at its limit (so the usual path costs two commands).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Final

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from qfleet.producer.gateway.errors import ApiError

# `qfleet:gw:rpm:<tenant>:<minute>`: requests of one tenant in one minute (expires after two).
RPM_KEY: Final = "qfleet:gw:rpm:{tenant}:{minute}"
# `qfleet:gw:inflight:<tenant>`: sorted set job id -> when it stops counting (unix time).
INFLIGHT_KEY: Final = "qfleet:gw:inflight:{tenant}"
# How soon a client refused for jobs in flight should try again (jobs finish in seconds).
INFLIGHT_RETRY_S: Final = 1


class TenantLimits:
    """Checks and counts one tenant's requests and jobs against the gateway's settings."""

    def __init__(
        self,
        redis: Redis,
        *,
        key_prefix: str,
        requests_per_minute: int,
        jobs_in_flight: int,
        job_timeout_s: float,
        finished: Callable[[str], bool],
    ) -> None:
        self.redis = redis
        self.prefix = key_prefix
        self.requests_per_minute = requests_per_minute
        self.jobs_in_flight = jobs_in_flight
        self.job_timeout_s = job_timeout_s
        self.finished = finished

    def count_request(self, tenant: str) -> None:
        """Count one request of `tenant`; 429 past its requests per minute."""
        if not self.requests_per_minute:
            return
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(self._rpm_key(tenant, now))
        pipe.expire(self._rpm_key(tenant, now), 120)
        self._check_rate(tenant, int(pipe.execute()[0]), now)

    async def count_request_async(self, tenant: str, redis: AsyncRedis) -> None:
        """`count_request` on an asyncio client (no thread needed)."""
        if not self.requests_per_minute:
            return
        now = time.time()
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(self._rpm_key(tenant, now))
            pipe.expire(self._rpm_key(tenant, now), 120)
            replies = await pipe.execute()
        self._check_rate(tenant, int(replies[0]), now)

    def _rpm_key(self, tenant: str, now: float) -> str:
        return self.prefix + RPM_KEY.format(tenant=tenant, minute=int(now // 60))

    def _check_rate(self, tenant: str, count: int, now: float) -> None:
        if count > self.requests_per_minute:
            retry = max(1, math.ceil((int(now // 60) + 1) * 60 - now))
            raise ApiError(
                429,
                f"rate limit reached: {self.requests_per_minute} requests per minute for tenant "
                f"{tenant} (QFLEET_GATEWAY_REQUESTS_PER_MINUTE); retry after {retry}s",
                code="rate_limit_exceeded",
                headers={"retry-after": str(retry)},
            )

    def start_job(self, tenant: str, job_id: str) -> None:
        """Count `job_id` as in flight for `tenant`; 429 when the tenant has too many."""
        if not self.jobs_in_flight:
            return
        key = self.prefix + INFLIGHT_KEY.format(tenant=tenant)
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(key, {job_id: now + self.job_timeout_s})
        pipe.expire(key, math.ceil(self.job_timeout_s) + 60)
        pipe.zcard(key)
        count = int(pipe.execute()[2])
        if count > self.jobs_in_flight and self._prune(key, now, keep=job_id) > self.jobs_in_flight:
            self.redis.zrem(key, job_id)
            raise ApiError(
                429,
                f"too many jobs in flight: tenant {tenant} may have {self.jobs_in_flight} "
                "unfinished jobs (QFLEET_GATEWAY_JOBS_IN_FLIGHT)",
                code="too_many_jobs_in_flight",
                headers={"retry-after": str(INFLIGHT_RETRY_S)},
            )

    def end_job(self, tenant: str, job_id: str) -> None:
        """`job_id` no longer counts for `tenant` (it finished, failed or was given up on)."""
        if self.jobs_in_flight:
            self.redis.zrem(self.prefix + INFLIGHT_KEY.format(tenant=tenant), job_id)

    async def end_job_async(self, tenant: str, job_id: str, redis: AsyncRedis) -> None:
        """`end_job` on an asyncio client (no thread needed)."""
        if self.jobs_in_flight:
            await redis.zrem(self.prefix + INFLIGHT_KEY.format(tenant=tenant), job_id)

    def _prune(self, key: str, now: float, *, keep: str) -> int:
        """Drop timed-out and finished jobs from `key`; how many remain."""
        self.redis.zremrangebyscore(key, "-inf", now)
        raw: Any = self.redis.zrange(key, 0, -1)
        members = [_text(m) for m in raw]
        done = [m for m in members if m != keep and self.finished(m)]
        if done:
            self.redis.zrem(key, *done)
        return len(members) - len(done)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
