"""What every request handler shares: settings, the fleet client, Redis, the key store.

Built once when the app starts (FastAPI's lifespan) and reached through `Depends(gateway_state)`,
so handlers never build clients of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from redis import Redis

from qfleet.producer.client import FleetClient
from qfleet.producer.gateway.keys import KeyStore
from qfleet.tasks.redisconn import PRODUCER_RETRIES, fleet_redis
from qfleet.tasks.settings import Settings


@dataclass
class GatewayState:
    """One gateway process's clients."""

    settings: Settings
    fleet: FleetClient
    redis: Redis
    keys: KeyStore

    @classmethod
    def open(cls, settings: Settings) -> GatewayState:
        """Connect to the fleet described by `settings`."""
        redis = fleet_redis(settings, retries=PRODUCER_RETRIES)
        return cls(
            settings=settings,
            fleet=FleetClient(settings),
            redis=redis,
            keys=KeyStore(redis, settings.redis_key_prefix),
        )

    def close(self) -> None:
        """Release every connection."""
        self.fleet.close()
        self.redis.close()


def gateway_state(request: Request) -> GatewayState:
    """The running app's `GatewayState` (a FastAPI dependency)."""
    state: GatewayState = request.app.state.gateway
    return state
