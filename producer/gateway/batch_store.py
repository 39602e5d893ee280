"""Batches in Redis: the record, its status changes, its result lines and its follower's lease.

A batch is a Redis hash: `meta` (what it was created with, JSON), `status`, one `<status>_at`
time per status reached, the ids of its output and error files, `errors` (JSON) and the request
counts. Status changes are Redis scripts that check the current status first, so a cancel from a
request handler and the follower's own progress never overwrite each other; the final change
also writes the webhook event (if any) in the same script, so it cannot be lost.

Result lines reach the output (or error) file through one script that adds the line's
`custom_id` to the batch's id set and appends the line only when the id was new: every
`custom_id` gets exactly one line, whoever follows the batch and however often it restarts.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from typing import Any, Final, Literal

from pydantic import BaseModel, Field
from redis import Redis

from qfleet.producer.gateway.webhooks import (
    WEBHOOK_DUE_KEY,
    WEBHOOK_EVENT_KEY,
    WEBHOOK_EVENT_TTL_S,
    new_event,
)
from qfleet.producer.runs.lease import holder_died_here

# `qfleet:gw:batch:<id>`: the batch (a hash); `...:ids`: custom_ids that have a line already.
BATCH_KEY: Final = "qfleet:gw:batch:{batch_id}"
BATCH_IDS_KEY: Final = "qfleet:gw:batch:{batch_id}:ids"
# `qfleet:gw:batch:<id>:lease`: "host:pid:token" of the process following the batch. It lapses
# BATCH_LEASE_S after its holder stopped renewing it (every BATCH_LEASE_S / 4), so a killed
# follower's batch is picked up by another process within that time.
BATCH_LEASE_KEY: Final = "qfleet:gw:batch:{batch_id}:lease"
BATCH_LEASE_S: Final = 12
# `qfleet:gw:batch:<id>:input`: the batch's own copy of its input file, so deleting the file
# while the batch runs does not break it.
BATCH_INPUT_KEY: Final = "qfleet:gw:batch:{batch_id}:input"
# `qfleet:gw:batches:<tenant>`: the tenant's batch ids by creation time (for listing).
TENANT_BATCHES_KEY: Final = "qfleet:gw:batches:{tenant}"
# `qfleet:gw:batches:active`: ids of batches not yet in a final status: what followers look at.
ACTIVE_BATCHES_KEY: Final = "qfleet:gw:batches:active"

BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]
FINAL: Final = frozenset({"failed", "completed", "expired", "cancelled"})

_TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return 0 end
local allowed = false
for status in string.gmatch(ARGV[3], '[^,]+') do
  if status == current then allowed = true end
end
if not allowed then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], ARGV[1] .. '_at', ARGV[2])
for i = 9, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if ARGV[4] == '1' then redis.call('SREM', KEYS[2], ARGV[5]) end
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[4], ARGV[6], 'EX', ARGV[7])
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[8])
end
return 1
"""

_APPEND = """
local added = 0
for i = 3, #ARGV, 2 do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('APPEND', KEYS[2], ARGV[i + 1])
    added = added + 1
  end
end
if added > 0 then redis.call('HINCRBY', KEYS[3], ARGV[2], added) end
for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[1]) end
return added
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class BatchMeta(BaseModel):
    """What a batch was created with (never changes)."""

    id: str
    tenant: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None = None
    webhook_url: str | None = None
    created_at: int
    expires_at: int


class BatchErrorData(BaseModel):
    """One problem of a batch's input file (OpenAI's `errors.data[]`)."""

    code: str
    message: str
    line: int | None = None
    param: str | None = None


class BatchErrors(BaseModel):
    """OpenAI's `errors` object."""

    object: Literal["list"] = "list"
    data: list[BatchErrorData]


class RequestCounts(BaseModel):
    """How many requests the batch has, and how many ended each way."""

    total: int = 0
    completed: int = 0
    failed: int = 0


class Batch(BaseModel):
    """A batch, as the OpenAI API describes one."""

    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts = Field(default_factory=RequestCounts)
    metadata: dict[str, str] | None = None


class BatchStore:
    """Reads and changes batches in Redis."""

    def __init__(self, redis: Redis, key_prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.prefix = key_prefix
        self.ttl_s = ttl_s
        self._transition = redis.register_script(_TRANSITION)
        self._append = redis.register_script(_APPEND)
        self._renew = redis.register_script(_RENEW)

    def create(self, meta: BatchMeta) -> None:
        """Store a new batch (`validating`) and put it where followers look."""
        key = self.key(meta.id)
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping={"meta": meta.model_dump_json(), "status": "validating"})
        pipe.expire(key, self.ttl_s)
        pipe.zadd(self._index(meta.tenant), {meta.id: time.time()})
        pipe.expire(self._index(meta.tenant), self.ttl_s)
        pipe.sadd(self.prefix + ACTIVE_BATCHES_KEY, meta.id)
        pipe.execute()

    def meta(self, batch_id: str) -> BatchMeta | None:
        """What the batch was created with, or None for an unknown (or expired) batch."""
        raw = self.redis.hget(self.key(batch_id), "meta")
        return BatchMeta.model_validate_json(raw) if raw else None

    def get(self, batch_id: str) -> tuple[BatchMeta, Batch] | None:
        """The batch's meta and its OpenAI object, or None."""
        raw = self.redis.hgetall(self.key(batch_id))
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if "meta" not in fields:
            return None
        meta = BatchMeta.model_validate_json(fields["meta"])
        times: dict[str, Any] = {
            k: int(float(v)) for k, v in fields.items() if k.endswith("_at") and v
        }
        batch = Batch(
            id=meta.id,
            endpoint=meta.endpoint,
            errors=BatchErrors.model_validate_json(fields["errors"])
            if "errors" in fields
            else None,
            input_file_id=meta.input_file_id,
            completion_window=meta.completion_window,
            status=fields["status"],
            output_file_id=fields.get("output_file_id") or None,
            error_file_id=fields.get("error_file_id") or None,
            request_counts=RequestCounts(
                **{n: int(fields.get(n, 0)) for n in ("total", "completed", "failed")}
            ),
            metadata=meta.metadata,
            **{**times, "created_at": meta.created_at, "expires_at": meta.expires_at},
        )
        return meta, batch

    def status(self, batch_id: str) -> str | None:
        """The batch's status alone (cheap enough to read on every poll)."""
        raw = self.redis.hget(self.key(batch_id), "status")
        return _text(raw) if raw else None

    def page(self, tenant: str, *, after: str | None, limit: int) -> tuple[list[Batch], bool]:
        """A page of the tenant's batches, newest first, after the batch `after`."""
        index = self._index(tenant)
        start = 0
        if after is not None:
            rank: Any = self.redis.zrevrank(index, after)
            start = 0 if rank is None else int(rank) + 1
        page: list[Batch] = []
        members: list[Any] = self.redis.zrevrange(index, start, start + limit)
        ids = [_text(i) for i in members]
        for batch_id in ids[:limit]:
            found = self.get(batch_id)
            if found is None:
                self.redis.zrem(index, batch_id)  # expired
            else:
                page.append(found[1])
        return page, len(ids) > limit

    def set_fields(self, batch_id: str, **fields: Any) -> None:
        """Set plain fields of the batch (file ids, total)."""
        self.redis.hset(self.key(batch_id), mapping={k: str(v) for k, v in fields.items()})

    def transition(
        self, meta: BatchMeta, to: BatchStatus, allowed: set[str], **fields: str
    ) -> bool:
        """Move the batch to `to` if its status is one of `allowed`; False if it was not.

        Reaching a final status takes the batch off the active set and, when the batch names a
        webhook, writes the event to the outbox in the same step.
        """
        event_key, event, event_id = "", "", ""
        if to in FINAL and meta.webhook_url:
            delivery = new_event(meta.id, to, meta.webhook_url)
            event_id = delivery.event_id
            event_key = self.prefix + WEBHOOK_EVENT_KEY.format(event_id=event_id)
            event = delivery.model_dump_json()
        keys = [
            self.key(meta.id),
            self.prefix + ACTIVE_BATCHES_KEY,
            self.prefix + WEBHOOK_DUE_KEY,
            event_key or self.key(meta.id),  # unused without an event
        ]
        args: list[Any] = [to, time.time(), ",".join(sorted(allowed)), int(to in FINAL)]
        args += [meta.id, event, WEBHOOK_EVENT_TTL_S, event_id]
        for name, value in fields.items():
            args += [name, value]
        done = bool(self._transition(keys=keys, args=args))
        if done:
            pipe = self.redis.pipeline()
            for key in (self.key(meta.id), self._ids(meta.id), self.input_key(meta.id)):
                pipe.expire(key, self.ttl_s)
            pipe.execute()
        return done

    def append(
        self, batch_id: str, data_key: str, counter: str, lines: list[tuple[str, str]]
    ) -> int:
        """Append (custom_id, line) pairs whose id has no line yet; count them in `counter`."""
        if not lines:
            return 0
        args: list[Any] = [self.ttl_s, counter]
        for custom_id, line in lines:
            args += [custom_id, line]
        # Every write restarts the expiry of the batch's keys: a long batch never outlives them.
        keys = [self._ids(batch_id), data_key, self.key(batch_id), self.input_key(batch_id)]
        return int(self._append(keys=keys, args=args))

    def answered(self, batch_id: str) -> set[str]:
        """The custom_ids that have a line (output or error) already."""
        return {_text(i) for i in self.redis.smembers(self._ids(batch_id))}

    def active(self) -> list[str]:
        """Ids of batches that need a follower (not yet in a final status)."""
        return sorted(_text(i) for i in self.redis.smembers(self.prefix + ACTIVE_BATCHES_KEY))

    def deactivate(self, batch_id: str) -> None:
        """Forget a batch whose record expired or vanished."""
        self.redis.srem(self.prefix + ACTIVE_BATCHES_KEY, batch_id)

    # --- the follower's lease -------------------------------------------------------------

    def take_lease(self, batch_id: str) -> str | None:
        """Become the batch's follower; the lease token, or None if a live process has it."""
        key = self._lease(batch_id)
        token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        if self.redis.set(key, token, nx=True, ex=BATCH_LEASE_S):
            return token
        if holder_died_here(_text(self.redis.get(key) or b"")):
            self.redis.delete(key)
            if self.redis.set(key, token, nx=True, ex=BATCH_LEASE_S):
                return token
        return None

    def renew_lease(self, batch_id: str, token: str) -> bool:
        """Extend the lease; False when `token` no longer holds it."""
        return bool(self._renew(keys=[self._lease(batch_id)], args=[token, BATCH_LEASE_S]))

    def release_lease(self, batch_id: str, token: str) -> None:
        """Give the lease up (only if `token` still holds it)."""
        if self.redis.get(self._lease(batch_id)) == token.encode():
            self.redis.delete(self._lease(batch_id))

    def key(self, batch_id: str) -> str:
        """The Redis key of the batch."""
        return self.prefix + BATCH_KEY.format(batch_id=batch_id)

    def input_key(self, batch_id: str) -> str:
        """The Redis key of the batch's copy of its input."""
        return self.prefix + BATCH_INPUT_KEY.format(batch_id=batch_id)

    def _ids(self, batch_id: str) -> str:
        return self.prefix + BATCH_IDS_KEY.format(batch_id=batch_id)

    def _lease(self, batch_id: str) -> str:
        return self.prefix + BATCH_LEASE_KEY.format(batch_id=batch_id)

    def _index(self, tenant: str) -> str:
        return self.prefix + TENANT_BATCHES_KEY.format(tenant=tenant)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
    return False
