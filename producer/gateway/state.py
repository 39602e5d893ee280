"""What every request handler shares: settings, the fleet client, Redis, the key store.

Built once when the app starts (FastAPI's lifespan) and reached through `Depends(gateway_state)`,
so handlers never build clients of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio.to_thread
from celery.result import AsyncResult
from fastapi import Request
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from qfleet.producer.client import FleetClient
from qfleet.producer.gateway.catalog import ModelCatalog
from qfleet.producer.gateway.jobwait import AsyncJobs
from qfleet.producer.gateway.keys import KeyStore
from qfleet.producer.gateway.limits import TenantLimits
from qfleet.producer.gateway.tenancy import JobOwners
from qfleet.tasks.redisconn import PRODUCER_RETRIES, fleet_redis
from qfleet.tasks.settings import Settings


@dataclass
class GatewayState:
    """One gateway process's clients."""

    settings: Settings
    fleet: FleetClient
    redis: Redis
    keys: KeyStore
    catalog: ModelCatalog
    limits: TenantLimits
    owners: JobOwners
    jobs: AsyncJobs

    @classmethod
    def open(cls, settings: Settings) -> GatewayState:
        """Connect to the fleet described by `settings` (called in the app's event loop)."""
        # Waiting on Redis and Celery runs in threads: room for every client being served.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.gateway_threads
        redis = fleet_redis(settings, retries=PRODUCER_RETRIES)
        fleet = FleetClient(settings)
        prefix = settings.redis_key_prefix
        return cls(
            settings=settings,
            fleet=fleet,
            redis=redis,
            keys=KeyStore(redis, prefix),
            catalog=ModelCatalog.for_app(
                fleet.app,
                timeout_s=settings.gateway_models_timeout_s,
                cache_s=settings.gateway_models_cache_s,
            ),
            limits=TenantLimits(
                redis,
                key_prefix=prefix,
                requests_per_minute=settings.gateway_requests_per_minute,
                jobs_in_flight=settings.gateway_jobs_in_flight,
                job_timeout_s=settings.gateway_job_timeout_s,
                finished=lambda job_id: bool(AsyncResult(job_id, app=fleet.app).ready()),
            ),
            owners=JobOwners(redis, key_prefix=prefix, ttl_s=settings.result_ttl_s),
            jobs=AsyncJobs(AsyncRedis.from_url(settings.result_backend), fleet.app, prefix),
        )

    async def aclose(self) -> None:
        """Release every connection."""
        await self.jobs.aclose()
        self.fleet.close()
        self.redis.close()


def gateway_state(request: Request) -> GatewayState:
    """The running app's `GatewayState` (a FastAPI dependency)."""
    state: GatewayState = request.app.state.gateway
    return state
