"""Batch webhooks: signed the Standard Webhooks way, kept in a Redis outbox until acknowledged.

When a batch ends (`completed`, `failed`, `expired`, `cancelled`) the event is written to the
outbox in the same Redis script that records the batch's final status, so a crash cannot lose it.
Every gateway replica and batch runner runs a `WebhookSender`: it claims due events (a claim is a
later due time, so a sender that dies mid-delivery leaves the event to the next), POSTs them and
drops them on a 2xx; any other answer or error is retried with doubling delays, until
`webhook_max_attempts`, after which the event moves to the dead set for an operator to read.
Delivery is therefore at least once: a receiver dedupes on the `webhook-id` header.

The body is OpenAI's webhook event (`{"object": "event", "type": "batch.completed", "data":
{"id": ...}}`) and the signature is HMAC-SHA256 over `id.timestamp.body` with the secret's bytes
(`whsec_` + base64), sent as `webhook-signature: v1,<base64>`; OpenAI's own SDK and every Standard
Webhooks library verify it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from typing import Final
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel
from redis import Redis

from qfleet.tasks.settings import Settings

log = logging.getLogger("qfleet.gateway.webhooks")

# `qfleet:gw:webhooks:due`: event ids scored by when they are next due (a claim pushes it later).
WEBHOOK_DUE_KEY: Final = "qfleet:gw:webhooks:due"
# `qfleet:gw:webhook:<event id>`: the event's delivery (URL, body, attempts) as JSON; a week.
WEBHOOK_EVENT_KEY: Final = "qfleet:gw:webhook:{event_id}"
WEBHOOK_EVENT_TTL_S: Final = 7 * 86_400
# `qfleet:gw:webhooks:dead`: events given up after `webhook_max_attempts`, by time given up.
WEBHOOK_DEAD_KEY: Final = "qfleet:gw:webhooks:dead"
# A claimed event is due again this long after the claim unless its sender finishes with it.
CLAIM_S: Final = 120
SECRET_PREFIX: Final = "whsec_"
TERMINAL_EVENTS: Final = {
    "completed": "batch.completed",
    "failed": "batch.failed",
    "expired": "batch.expired",
    "cancelled": "batch.cancelled",
}

# Claim the event only if it is still due (another sender may have claimed it meanwhile).
_CLAIM = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""


class WebhookError(ValueError):
    """A webhook URL or secret that the gateway refuses."""


class Delivery(BaseModel):
    """One event on its way to one URL."""

    event_id: str
    url: str
    body: str
    attempts: int = 0
    last_error: str = ""


def new_event(batch_id: str, status: str, url: str) -> Delivery:
    """The delivery of `batch_id`'s event for its final `status`."""
    event_id = "evt_" + secrets.token_hex(12)
    body = {
        "id": event_id,
        "object": "event",
        "type": TERMINAL_EVENTS[status],
        "created_at": int(time.time()),
        "data": {"id": batch_id},
    }
    return Delivery(event_id=event_id, url=url, body=json.dumps(body, separators=(",", ":")))


def check_url(url: str, settings: Settings) -> str:
    """`url` if its origin is in `webhook_allowed_origins` and a secret is set; else raise."""
    if settings.webhook_secret is None:
        raise WebhookError("this gateway sends no webhooks: QFLEET_WEBHOOK_SECRET is not set")
    secret_bytes(
        settings.webhook_secret.get_secret_value()
    )  # a malformed one fails here, not later
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        raise WebhookError("a webhook URL must be http(s)://host[:port]/path, without credentials")
    if _origin(url) not in {_origin(o) for o in settings.webhook_allowed_origins}:
        raise WebhookError(
            f"webhook origin {_origin(url)} is not allowed (QFLEET_WEBHOOK_ALLOWED_ORIGINS)"
        )
    return url


def _origin(url: str) -> str:
    parts = urlsplit(url.strip())
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookError("a webhook secret looks like whsec_<base64>")
    try:
        return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError as exc:
        raise WebhookError("a webhook secret looks like whsec_<base64>") from exc


def sign(secret: str, event_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt to deliver `body`."""
    signed = f"{event_id}.{timestamp}.{body}".encode()
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        "content-type": "application/json",
    }


class WebhookSender:
    """Delivers due events from the outbox (one per process; any number per fleet)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.prefix = settings.redis_key_prefix
        self.claim = redis.register_script(_CLAIM)
        self.http = httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False)

    def close(self) -> None:
        """Release the HTTP client."""
        self.http.close()

    def deliver_due(self, limit: int = 32) -> int:
        """Try every due event once (up to `limit`); returns how many were acknowledged."""
        now = time.time()
        due = self.redis.zrangebyscore(self._due, "-inf", now, start=0, num=limit)
        acked = 0
        for raw in due:
            event_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            if self.claim(keys=[self._due], args=[event_id, now, now + CLAIM_S]):
                acked += self._attempt(event_id)
        return acked

    def _attempt(self, event_id: str) -> bool:
        key = self.prefix + WEBHOOK_EVENT_KEY.format(event_id=event_id)
        raw = self.redis.get(key)
        if raw is None:  # expired, or delivered by a sender whose claim had lapsed
            self.redis.zrem(self._due, event_id)
            return False
        delivery = Delivery.model_validate_json(raw)
        delivery.attempts += 1
        error = self._post(delivery)
        if not error:
            pipe = self.redis.pipeline()
            pipe.zrem(self._due, event_id)
            pipe.delete(key)
            pipe.execute()
            return True
        delivery.last_error = error
        self._retry_later(delivery, key)
        return False

    def _post(self, delivery: Delivery) -> str:
        """'' when the receiver acknowledged (2xx); else what went wrong."""
        assert self.settings.webhook_secret is not None
        try:
            check_url(delivery.url, self.settings)  # the allow-list may have shrunk since
            headers = sign(
                self.settings.webhook_secret.get_secret_value(),
                delivery.event_id,
                int(time.time()),
                delivery.body,
            )
            response = self.http.post(delivery.url, content=delivery.body, headers=headers)
        except (httpx.HTTPError, WebhookError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"

    def _retry_later(self, delivery: Delivery, key: str) -> None:
        pipe = self.redis.pipeline()
        if delivery.attempts >= self.settings.webhook_max_attempts:
            log.warning(
                "webhook %s given up after %d attempts: %s",
                delivery.event_id,
                delivery.attempts,
                delivery.last_error,
            )
            pipe.zrem(self._due, delivery.event_id)
            pipe.zadd(self.prefix + WEBHOOK_DEAD_KEY, {delivery.event_id: time.time()})
        else:
            delay = min(
                self.settings.webhook_backoff_s * 2 ** (delivery.attempts - 1),
                self.settings.webhook_backoff_max_s,
            )
            pipe.zadd(self._due, {delivery.event_id: time.time() + delay * random.uniform(1, 1.2)})
        pipe.set(key, delivery.model_dump_json(), ex=WEBHOOK_EVENT_TTL_S)
        pipe.execute()

    @property
    def _due(self) -> str:
        return self.prefix + WEBHOOK_DUE_KEY
