"""Who is calling: `Authorization: Bearer KEY` → the caller's tenant (a FastAPI dependency).

Every endpoint but health depends on `require_caller`; a missing, unknown or revoked key gets a
401 in the OpenAI error shape. Jobs, files and batches belong to the caller's tenant; another
tenant's ids answer 404, as if they did not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from redis.exceptions import RedisError

from qfleet.producer.gateway.errors import ApiError
from qfleet.producer.gateway.state import GatewayState, gateway_state

BEARER = "bearer "


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of one request."""

    tenant: str
    key_prefix: str
    admin: bool = False

    def owns(self, tenant: str | None) -> bool:
        """True when this caller may see a resource of `tenant` (admins see every tenant)."""
        return self.admin or tenant == self.tenant


def require_caller(
    request: Request, state: Annotated[GatewayState, Depends(gateway_state)]
) -> Caller:
    """The caller named by the request's bearer key; 401 without a valid one."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith(BEARER) or not header[len(BEARER) :].strip():
        raise ApiError(
            401,
            "missing API key: send `Authorization: Bearer KEY` (create one with `qfleet keys "
            "create --tenant NAME`)",
            code="missing_api_key",
            headers={"www-authenticate": "Bearer"},
        )
    try:
        record = state.keys.find(header[len(BEARER) :].strip())
    except RedisError as exc:
        raise ApiError(503, "the key store is unavailable; try again", code="unavailable") from exc
    if record is None:
        raise ApiError(
            401, "invalid API key", code="invalid_api_key", headers={"www-authenticate": "Bearer"}
        )
    return Caller(tenant=record.tenant, key_prefix=record.prefix, admin=record.admin)


CallerDep = Annotated[Caller, Depends(require_caller)]
StateDep = Annotated[GatewayState, Depends(gateway_state)]
