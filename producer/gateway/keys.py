"""API keys and tenants: `qfleet keys create --tenant NAME` prints a key once; Redis keeps a hash.

A key is `qf-` + 32 random bytes (URL-safe base64). Redis stores only its SHA-256 digest, so a
leaked Redis dump leaks no usable key; the first characters of the key (its `prefix`) are kept for
`qfleet keys list` and logs. Admin keys (for the console) see every tenant.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any, Final

from pydantic import BaseModel
from redis import Redis

# `qfleet:apikey:<sha256 hex>` -> the key's record (JSON); `qfleet:apikeys` is the set of digests.
API_KEY: Final = "qfleet:apikey:{digest}"
API_KEYS_INDEX: Final = "qfleet:apikeys"
KEY_PREFIX: Final = "qf-"
# Characters of a key shown in lists and logs: enough to tell keys apart, useless to an attacker.
SHOWN_CHARS: Final = 10


class ApiKey(BaseModel):
    """What the gateway knows of one key (never the key itself)."""

    digest: str
    prefix: str
    tenant: str
    name: str = ""
    admin: bool = False
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        """False once revoked."""
        return self.revoked_at is None


def digest_of(key: str) -> str:
    """The SHA-256 hex digest Redis stores for `key`."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """Creates, finds, lists and revokes API keys in Redis."""

    def __init__(self, redis: Redis, key_prefix: str = "") -> None:
        self.redis = redis
        self.prefix = key_prefix

    def create(self, tenant: str, *, name: str = "", admin: bool = False) -> tuple[str, ApiKey]:
        """Make a new key for `tenant`; returns the key (shown once) and its record."""
        if not tenant or len(tenant) > 64 or not tenant.replace("-", "").replace("_", "").isalnum():
            raise ValueError("tenant must be 1-64 letters, digits, '-' or '_'")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        record = ApiKey(
            digest=digest_of(key),
            prefix=key[:SHOWN_CHARS],
            tenant=tenant,
            name=name,
            admin=admin,
            created_at=time.time(),
        )
        pipe = self.redis.pipeline()
        pipe.set(self._key(record.digest), record.model_dump_json())
        pipe.sadd(self.prefix + API_KEYS_INDEX, record.digest)
        pipe.execute()
        return key, record

    def find(self, key: str) -> ApiKey | None:
        """The active record of `key`, or None for an unknown or revoked key."""
        raw = self.redis.get(self._key(digest_of(key)))
        if raw is None:
            return None
        record = ApiKey.model_validate_json(raw)
        return record if record.active else None

    def list(self) -> list[ApiKey]:
        """Every key, active or revoked, oldest first."""
        digests = sorted(self.redis.smembers(self.prefix + API_KEYS_INDEX))
        raws: list[Any] = self.redis.mget([self._key(_text(d)) for d in digests]) if digests else []
        records = [ApiKey.model_validate_json(r) for r in raws if r is not None]
        return sorted(records, key=lambda r: r.created_at)

    def revoke(self, prefix_or_key: str) -> ApiKey | None:
        """Revoke the key whose shown prefix (or whole text) matches; None if none does."""
        for record in self.list():
            if record.prefix == prefix_or_key or record.digest == digest_of(prefix_or_key):
                record.revoked_at = time.time()
                self.redis.set(self._key(record.digest), record.model_dump_json())
                return record
        return None

    def _key(self, digest: str) -> str:
        return self.prefix + API_KEY.format(digest=digest)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
