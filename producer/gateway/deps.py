"""Dependencies the resource routers share beyond authentication: the per-tenant request limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from redis.exceptions import RedisError

from qfleet.producer.gateway.auth import Caller, CallerDep, StateDep
from qfleet.producer.gateway.errors import ApiError


async def limited_caller(caller: CallerDep, state: StateDep) -> Caller:
    """The caller, once this request is counted against its tenant's requests per minute."""
    if not state.limits.requests_per_minute:
        return caller
    try:
        await state.limits.count_request_async(caller.tenant, state.jobs.redis)
    except RedisError as exc:
        raise ApiError(
            503, "the rate limiter is unavailable; try again", code="unavailable"
        ) from exc
    return caller


LimitedCallerDep = Annotated[Caller, Depends(limited_caller)]
