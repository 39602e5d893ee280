"""A run's state in Redis: its spec, its progress, its jobs in flight, its status and lease.

Kept `RUN_TTL_S` after the last update, so `qfleet run status` and `qfleet run resume` work from
any host with only the run id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from pydantic import BaseModel
from redis.exceptions import RedisError

from qfleet.producer.client import FleetClient
from qfleet.producer.runs.lease import RunLease
from qfleet.producer.runs.spec import RunSpec, RunStatus
from qfleet.tasks.constants import RUN_KEY, RUN_PENDING_KEY, RUN_TTL_S
from qfleet.tasks.errors import BrokerUnavailableError

ItemOutcome = Literal["done", "failed", "cancelled"]


class RunProgress(BaseModel):
    """Where a run stands (what `qfleet run status` prints)."""

    run_id: str
    status: RunStatus
    total: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    in_flight: int = 0
    rate_per_s: float = 0.0
    eta_s: float | None = None
    output: str = ""
    errors: str = ""
    updated_at: float = 0.0

    @property
    def remaining(self) -> int:
        """Items with no outcome yet (cancelled ones included: a new run does them)."""
        return max(self.total - self.done - self.failed, 0)


class RunStore:
    """A run's keys in Redis: spec and progress (a hash), jobs in flight (a hash), the lease."""

    def __init__(self, fleet: FleetClient, run_id: str) -> None:
        self.redis = fleet.app.backend.client
        prefix = fleet.settings.redis_key_prefix
        self.key = prefix + RUN_KEY.format(run_id=run_id)
        self.pending_key = prefix + RUN_PENDING_KEY.format(run_id=run_id)
        self.lease = RunLease(self.redis, self.key + ":lease", run_id)
        self.run_id = run_id

    def save_spec(self, spec: RunSpec) -> None:
        """Store what the run was submitted with (read back by `qfleet run resume`)."""
        self.redis.hset(self.key, mapping={"spec": spec.model_dump_json()})
        self._touch()

    def spec(self) -> RunSpec | None:
        """The stored spec, or None for an unknown run."""
        raw = self.redis.hget(self.key, "spec")
        return RunSpec.model_validate_json(raw) if raw else None

    def progress(self) -> RunProgress | None:
        """The last published progress, or None before any."""
        data = {k.decode(): v.decode() for k, v in self.redis.hgetall(self.key).items()}
        if "status" not in data:
            return None
        fields = {k: v for k, v in data.items() if k in RunProgress.model_fields}
        if fields.get("eta_s") == "":
            fields["eta_s"] = None
        return RunProgress.model_validate({"run_id": self.run_id, **fields})

    def publish(self, progress: RunProgress) -> None:
        """Store `progress` for `qfleet run status` (and refresh the run's TTL)."""
        mapping = progress.model_dump(mode="json", exclude={"run_id"})
        mapping["eta_s"] = "" if progress.eta_s is None else progress.eta_s
        self.redis.hset(self.key, mapping={k: str(v) for k, v in mapping.items()})
        self._touch()

    def status(self) -> str | None:
        """The run's status field alone (cheap: read every poll for a cancel)."""
        raw = self.redis.hget(self.key, "status")
        return raw.decode() if raw else None

    def set_status(self, status: RunStatus) -> None:
        """Set the run's status field."""
        self.redis.hset(self.key, "status", status)

    def pending(self) -> dict[str, list[str]]:
        """Jobs in flight: job id -> the item ids it covers."""
        return {k.decode(): json.loads(v) for k, v in self.redis.hgetall(self.pending_key).items()}

    def add_pending(self, job_id: str, item_ids: list[str]) -> None:
        """Record a job about to be sent."""
        self.redis.hset(self.pending_key, job_id, json.dumps(item_ids))
        self.redis.expire(self.pending_key, RUN_TTL_S)

    def drop_pending(self, job_id: str) -> None:
        """Forget a job whose items are written."""
        self.redis.hdel(self.pending_key, job_id)

    def _touch(self) -> None:
        self.redis.expire(self.key, RUN_TTL_S)


@contextmanager
def broker_errors() -> Iterator[None]:
    """Redis failures as qfleet's `BrokerUnavailableError` (the CLI maps it to exit code 4)."""
    try:
        yield
    except RedisError as exc:
        raise BrokerUnavailableError(f"could not reach Redis: {exc}") from exc


class Tracker:
    """Counts and rate of one follow session (the rate counts this session's items only)."""

    def __init__(self, spec: RunSpec, *, total: int, done: int = 0, failed: int = 0) -> None:
        self.spec = spec
        self.total = total
        self.counts: dict[ItemOutcome, int] = {"done": done, "failed": failed, "cancelled": 0}
        self.started = time.monotonic()
        self.this_session = 0

    def add(self, outcome: ItemOutcome, count: int = 1) -> None:
        """Count `count` items that ended with `outcome`."""
        self.counts[outcome] += count
        self.this_session += count

    def progress(self, status: RunStatus, in_flight: int) -> RunProgress:
        """The run's progress now."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.this_session / elapsed
        done, failed = self.counts["done"], self.counts["failed"]
        remaining = max(self.total - done - failed, 0)
        return RunProgress(
            run_id=self.spec.run_id,
            status=status,
            total=self.total,
            done=done,
            failed=failed,
            cancelled=self.counts["cancelled"],
            in_flight=in_flight,
            rate_per_s=rate,
            eta_s=remaining / rate if rate > 0 else None,
            output=str(self.spec.output),
            errors=str(self.spec.errors),
            updated_at=time.time(),
        )
