"""Which tenant owns a job: stored beside the job in Redis, checked on every read by id.

`qfleet:gw:job:<job_id>` holds the tenant for as long as the job's result lives, so any gateway
replica can answer (or refuse) a read. Another tenant's job answers 404, as if it did not exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from redis import Redis

from qfleet.producer.gateway.errors import ApiError

if TYPE_CHECKING:
    from qfleet.producer.gateway.auth import Caller
    from qfleet.producer.gateway.state import GatewayState
    from qfleet.tasks.schemas import ExtractJob, GenerateJob

OWNER_KEY: Final = "qfleet:gw:job:{job_id}"


class JobOwners:
    """Records and checks the tenant of each job the gateway submitted."""

    def __init__(self, redis: Redis, *, key_prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.prefix = key_prefix
        self.ttl_s = ttl_s

    def claim(self, job_id: str, tenant: str) -> None:
        """Record that `job_id` belongs to `tenant`."""
        self.redis.set(self._key(job_id), tenant, ex=self.ttl_s)

    def owner(self, job_id: str) -> str | None:
        """The tenant of `job_id`, or None for a job the gateway did not submit."""
        raw = self.redis.get(self._key(job_id))
        return raw.decode() if isinstance(raw, bytes) else raw

    def check(self, caller: Caller, job_id: str) -> None:
        """404 unless `caller` may see `job_id`."""
        owner = self.owner(job_id)
        if owner is None or not caller.owns(owner):
            raise ApiError(404, f"no job {job_id}", param="job_id", code="job_not_found")

    def _key(self, job_id: str) -> str:
        return self.prefix + OWNER_KEY.format(job_id=job_id)


def start_job(state: GatewayState, caller: Caller, job: GenerateJob | ExtractJob) -> None:
    """Count `job` against its tenant's limits, record its owner and enqueue it."""
    state.limits.start_job(caller.tenant, job.job_id)
    try:
        state.owners.claim(job.job_id, caller.tenant)
        state.fleet.submit(job)
    except Exception:
        state.limits.end_job(caller.tenant, job.job_id)
        raise
