"""Which models the live workers serve: `GET /v1/models` and the `model` check of every request.

Workers answer qfleet's `qfleet_info` inspect broadcast (the one `qfleet status` uses) with the
model ids their manifests name (`serves`). A broadcast waits its whole timeout for replies, so
the answer is cached for `gateway_models_cache_s` and refreshed in the background once stale;
a broadcast nobody answered does not empty a list that was seen recently (a worker busy on a
shared CPU may miss one timeout).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from qfleet.producer.client import BROKER_ERRORS
from qfleet.tasks.constants import INSPECT_QFLEET_INFO

ModelKind = Literal["chat", "embedding"]
# A list seen this many cache periods ago survives broadcasts that nobody answered.
KEEP_PERIODS = 6


@dataclass(frozen=True)
class ServedModel:
    """One model id some live worker serves, and which workers do."""

    id: str
    kind: ModelKind
    workers: tuple[str, ...]
    seen_at: float


# Asks the workers, waiting `timeout` seconds for replies.
Broadcast = Callable[[float], list[dict[str, Any]]]
# With no list yet, a refresh waits this many times longer: a slow reply beats a false 404/503.
COLD_TIMEOUT_FACTOR = 4


class ModelCatalog:
    """The models of the live fleet, from worker manifests, cached."""

    def __init__(self, broadcast: Broadcast, *, cache_s: float, timeout_s: float = 0.5) -> None:
        self._broadcast = broadcast
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._models: dict[str, ServedModel] = {}
        self._taken_at = 0.0
        self._answered_at = 0.0
        self._lock = threading.Lock()
        self._refreshing = False

    @classmethod
    def for_app(cls, app: Any, *, timeout_s: float, cache_s: float) -> ModelCatalog:
        """A catalog that asks the workers of Celery `app`."""

        def broadcast(timeout: float) -> list[dict[str, Any]]:
            replies = app.control.broadcast(INSPECT_QFLEET_INFO, reply=True, timeout=timeout)
            return list(replies or [])

        return cls(broadcast, cache_s=cache_s, timeout_s=timeout_s)

    def models(self) -> list[ServedModel]:
        """Every served model, sorted by id (asks the workers when the cache is cold or stale)."""
        now = time.monotonic()
        if not self._taken_at:
            self.refresh()
        elif now - self._taken_at > self.cache_s:
            self._refresh_in_background()
        return sorted(self._models.values(), key=lambda m: m.id)

    def cached(self, model_id: str, kind: ModelKind) -> ServedModel | None:
        """`model_id` from a fresh cache without blocking (None: ask with `find`)."""
        if not self._taken_at or time.monotonic() - self._taken_at > self.cache_s:
            return None
        model = self._models.get(model_id)
        return model if model is not None and model.kind == kind else None

    def find(self, model_id: str, kind: ModelKind) -> ServedModel | None:
        """The served model `model_id` of `kind`; asks the workers again once before giving up."""
        for attempt in range(2):
            model = next((m for m in self.models() if m.id == model_id), None)
            if model is not None and model.kind == kind:
                return model
            if attempt == 0 and time.monotonic() - self._taken_at > 1.0:
                self.refresh()  # a worker that started a moment ago counts
            else:
                break
        return None

    def refresh(self) -> None:
        """Ask the workers now (one broadcast timeout)."""
        timeout = self.timeout_s * (1 if self._models else COLD_TIMEOUT_FACTOR)
        try:
            replies = self._broadcast(timeout)
        except BROKER_ERRORS:
            replies = []
        found = _parse(replies)
        with self._lock:
            now = time.monotonic()
            self._taken_at = now
            if found:
                self._models, self._answered_at = found, now
            elif now - self._answered_at > KEEP_PERIODS * self.cache_s:
                self._models = {}
            self._refreshing = False

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True
        threading.Thread(target=self.refresh, name="qfleet-models", daemon=True).start()


def _parse(replies: list[dict[str, Any]]) -> dict[str, ServedModel]:
    workers: dict[tuple[str, ModelKind], list[str]] = {}
    for reply in replies:
        for worker, info in reply.items():
            serves = info.get("serves") if isinstance(info, dict) else None
            if not isinstance(serves, dict):
                continue
            fields: tuple[tuple[str, ModelKind], ...] = (
                ("model", "chat"),
                ("embedder", "embedding"),
            )
            for field, kind in fields:
                model_id = serves.get(field)
                if isinstance(model_id, str) and model_id:
                    workers.setdefault((model_id, kind), []).append(worker)
    now = time.time()
    return {
        model_id: ServedModel(model_id, kind, tuple(sorted(names)), now)
        for (model_id, kind), names in workers.items()
    }
