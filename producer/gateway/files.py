"""The gateway's file store: batch input and output files, in Redis, readable by every replica.

Why Redis: the fleet already needs it and nothing else, every gateway replica and batch runner
reaches it, and APPEND lets a batch's output file grow line by line while clients read it. The
price is memory: a file is one Redis string (Redis caps one at 512 MB), so uploads are capped by
`gateway_max_file_bytes` and every file expires `gateway_file_ttl_s` after its last write. A
deployment with many large batches should give Redis the memory for them (docs/gateway.md).

Files belong to the tenant that created them; the routers answer 404 to every other tenant.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel
from redis import Redis

# `qfleet:gw:file:<id>` -> the file's record (JSON, with its tenant); `...:data` -> its bytes.
FILE_KEY: Final = "qfleet:gw:file:{file_id}"
FILE_DATA_KEY: Final = "qfleet:gw:file:{file_id}:data"
# `qfleet:gw:files:<tenant>`: the tenant's file ids scored by creation time (for listing). An
# entry whose file expired is dropped when a listing meets it.
TENANT_FILES_KEY: Final = "qfleet:gw:files:{tenant}"
# Content is read back in slices, so a large file never sits whole in the gateway's memory.
READ_CHUNK_BYTES: Final = 1 << 20

Purpose = Literal["batch", "batch_output"]


class FileObject(BaseModel):
    """A file, as the OpenAI API describes one."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class FileRecord(BaseModel):
    """What Redis keeps of a file besides its bytes."""

    id: str
    tenant: str
    filename: str
    purpose: Purpose
    created_at: int
    expires_at: int


class FileStore:
    """Creates, reads, lists and deletes files in Redis."""

    def __init__(self, redis: Redis, key_prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.prefix = key_prefix
        self.ttl_s = ttl_s

    def create(self, tenant: str, filename: str, purpose: Purpose, data: bytes = b"") -> FileRecord:
        """Store a new file of `tenant` (an empty one grows with `append`)."""
        now = int(time.time())
        record = FileRecord(
            id="file-" + secrets.token_hex(12),
            tenant=tenant,
            filename=filename,
            purpose=purpose,
            created_at=now,
            expires_at=now + self.ttl_s,
        )
        pipe = self.redis.pipeline()
        pipe.set(self.key(record.id), record.model_dump_json(), ex=self.ttl_s)
        pipe.set(self.data_key(record.id), data, ex=self.ttl_s)
        pipe.zadd(self._index(tenant), {record.id: time.time()})
        pipe.expire(self._index(tenant), self.ttl_s)
        pipe.execute()
        return record

    def get(self, file_id: str) -> FileRecord | None:
        """The file's record, or None when it does not exist (or expired)."""
        raw = self.redis.get(self.key(file_id))
        return FileRecord.model_validate_json(raw) if raw else None

    def size(self, file_id: str) -> int:
        """The file's length in bytes now (an output file grows while its batch runs)."""
        return int(self.redis.strlen(self.data_key(file_id)))

    def describe(self, record: FileRecord) -> FileObject:
        """The OpenAI file object of `record`."""
        return FileObject(
            id=record.id,
            bytes=self.size(record.id),
            created_at=record.created_at,
            filename=record.filename,
            purpose=record.purpose,
            expires_at=record.expires_at,
        )

    def chunks(self, file_id: str) -> Iterator[bytes]:
        """The file's bytes as they are now, a slice at a time."""
        return self._slices(self.data_key(file_id))

    def _slices(self, key: str) -> Iterator[bytes]:
        length = int(self.redis.strlen(key))
        for start in range(0, length, READ_CHUNK_BYTES):
            end = min(start + READ_CHUNK_BYTES, length) - 1
            chunk: Any = self.redis.getrange(key, start, end)
            yield bytes(chunk)

    def copy_to(self, file_id: str, path: Path) -> int:
        """Write the file's bytes to `path`; returns how many."""
        return self.copy_key(self.data_key(file_id), path)

    def copy_key(self, key: str, path: Path) -> int:
        """Write the Redis string `key` (a file's bytes, or a copy of them) to `path`."""
        written = 0
        with path.open("wb") as stream:
            for chunk in self._slices(key):
                stream.write(chunk)
                written += len(chunk)
        return written

    def touch(self, file_id: str) -> None:
        """Restart the file's expiry (a batch's output file, when the batch ends)."""
        record = self.get(file_id)
        if record is None:
            return
        record.expires_at = int(time.time()) + self.ttl_s
        pipe = self.redis.pipeline()
        pipe.set(self.key(file_id), record.model_dump_json(), ex=self.ttl_s)
        pipe.expire(self.data_key(file_id), self.ttl_s)
        pipe.execute()

    def delete(self, record: FileRecord) -> None:
        """Remove the file and its bytes."""
        pipe = self.redis.pipeline()
        pipe.delete(self.key(record.id), self.data_key(record.id))
        pipe.zrem(self._index(record.tenant), record.id)
        pipe.execute()

    def list(
        self, tenant: str, *, purpose: str | None, after: str | None, limit: int, newest_first: bool
    ) -> tuple[list[FileRecord], bool]:
        """A page of the tenant's files after the file `after`; and whether more follow."""
        index = self._index(tenant)
        members: list[Any] = self.redis.zrange(index, 0, -1, desc=newest_first)
        ids = [_text(i) for i in members]
        if after is not None:
            ids = ids[ids.index(after) + 1 :] if after in ids else []
        page: list[FileRecord] = []
        for file_id in ids:
            record = self.get(file_id)
            if record is None:
                self.redis.zrem(index, file_id)  # expired
                continue
            if purpose is not None and record.purpose != purpose:
                continue
            if len(page) == limit:
                return page, True
            page.append(record)
        return page, False

    def key(self, file_id: str) -> str:
        """The Redis key of the file's record."""
        return self.prefix + FILE_KEY.format(file_id=file_id)

    def data_key(self, file_id: str) -> str:
        """The Redis key of the file's bytes."""
        return self.prefix + FILE_DATA_KEY.format(file_id=file_id)

    def _index(self, tenant: str) -> str:
        return self.prefix + TENANT_FILES_KEY.format(tenant=tenant)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
