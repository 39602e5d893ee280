"""The per-process knowledge base: opened on the first knowledge job, closed at shutdown.

Only a worker that consumes `qfleet.ingest` / `qfleet.retrieve` ever opens it, so a worker that
only generates never takes the embedded store's folder lock.
"""

from __future__ import annotations

import logging
import threading

from qfleet.tasks.settings import Settings
from qfleet.workers.knowledge.open import open_store
from qfleet.workers.knowledge.store import KnowledgeStore

log = logging.getLogger(__name__)


class KnowledgeRuntime:
    """Holds this process's `KnowledgeStore`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: KnowledgeStore | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> KnowledgeStore:
        """The store, opened now if this is the first knowledge job of the process."""
        with self._lock:
            if self._store is None:
                self._store = open_store(self.settings)
                stats = self._store.stats()
                log.info(
                    "knowledge base open: %s, %d chunks (%d latest) from %d sources, embedder %s",
                    stats.backend,
                    stats.chunks,
                    stats.latest_chunks,
                    stats.sources,
                    stats.embedder,
                )
            return self._store

    def close(self) -> None:
        """Flush and release the store (its folder lock too); safe to call twice."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
