"""The answer cache: identical greedy requests answered from Redis.

The key covers everything that decides a greedy answer: the model (id and compute type), the
decoding parameters, the full conversation as the model sees it (reference passages included)
and the knowledge-base version those passages were retrieved at. An ingest or a rollback bumps
that version, so no answer computed before it is served after it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from qfleet.tasks.constants import ANSWER_KEY
from qfleet.tasks.schemas import GenerateJob, JobResult


class AnswerCache:
    """Greedy `JobResult`s by request digest, each kept for `ttl_s` seconds."""

    def __init__(self, redis: Any, *, key_prefix: str = "", ttl_s: int = 3_600) -> None:
        self.redis = redis
        self.key_prefix = key_prefix
        self.ttl_s = ttl_s

    def key(self, model: str, job: GenerateJob, kb_version: int | None) -> str:
        """The Redis key of `job`'s answer by `model` at `kb_version`."""
        request = {
            "model": model,
            "messages": [m.model_dump() for m in job.chat()],
            "max_tokens": job.max_tokens,
            "temperature": job.temperature,
            "top_p": job.top_p,
            "top_k": job.top_k,
            "stop": job.stop,
            "kb_version": kb_version,
        }
        if job.structured:  # only then, so plain answers keep the keys they had
            request["json_schema"] = job.json_schema
            request["json_object"] = job.json_object
        digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        return self.key_prefix + ANSWER_KEY.format(digest=digest)

    def get(self, key: str) -> JobResult | None:
        """The cached answer under `key`, if any."""
        raw = self.redis.get(key)
        return JobResult.model_validate_json(raw) if raw else None

    def put(self, key: str, result: JobResult) -> None:
        """Cache `result` under `key` for the TTL."""
        self.redis.set(key, result.model_dump_json(), ex=self.ttl_s)
