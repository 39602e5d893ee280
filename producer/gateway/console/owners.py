"""Which tenant owns a job or a run: read from Redis, so every gateway replica agrees.

The gateway stores the tenant of each job it submits under `qfleet:gw:job:<job_id>`
(`tenancy.JobOwners`) and of each
run it starts under `qfleet:gw:run:<run_id>`. Things with no owner recorded (a bulk run started
from the CLI, a job sent by a Python service) belong to nobody: only admin keys see them.
"""

from __future__ import annotations

from typing import Final

from redis import Redis

from qfleet.producer.gateway.auth import Caller
from qfleet.producer.gateway.tenancy import OWNER_KEY

GW_RUN_KEY: Final = "qfleet:gw:run:{run_id}"


def record_run_owner(redis: Redis, prefix: str, run_id: str, tenant: str, ttl_s: int) -> None:
    """Remember that `tenant` started run `run_id` (a batch: its run has the batch's id)."""
    redis.set(prefix + GW_RUN_KEY.format(run_id=run_id), tenant, ex=ttl_s)


def job_owners(redis: Redis, prefix: str, job_ids: list[str]) -> dict[str, str | None]:
    """The tenant of each job id (None where none was recorded)."""
    if not job_ids:
        return {}
    raws = redis.mget([prefix + OWNER_KEY.format(job_id=j) for j in job_ids])
    return {j: _text(raw) for j, raw in zip(job_ids, raws, strict=True)}


def run_owners(redis: Redis, prefix: str, run_ids: list[str]) -> dict[str, str | None]:
    """The tenant of each run id (None where none was recorded)."""
    if not run_ids:
        return {}
    raws = redis.mget([prefix + GW_RUN_KEY.format(run_id=r) for r in run_ids])
    return {r: _text(raw) for r, raw in zip(run_ids, raws, strict=True)}


def visible(caller: Caller, owner: str | None) -> bool:
    """True when `caller` may see a thing of `owner` (admins see all, nobody's is admin-only)."""
    return caller.admin or (owner is not None and caller.owns(owner))


def _text(raw: object) -> str | None:
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)
