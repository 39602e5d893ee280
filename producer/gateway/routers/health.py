"""`/healthz` (the process answers) and `/readyz` (Redis answers): no key needed."""

from __future__ import annotations

from fastapi import APIRouter
from redis.exceptions import RedisError

from qfleet.producer.gateway.auth import StateDep
from qfleet.producer.gateway.errors import ApiError

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(state: StateDep) -> dict[str, str]:
    """The gateway can reach Redis, so it can take work."""
    try:
        state.redis.ping()
    except RedisError as exc:
        raise ApiError(
            503, f"Redis does not answer: {type(exc).__name__}", code="not_ready"
        ) from exc
    return {"status": "ready"}
