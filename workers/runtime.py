"""The per-process model: loaded once, after fork, closed at shutdown."""

from __future__ import annotations

import logging
import threading

from qfleet.tasks.errors import ModelUnavailableError
from qfleet.tasks.settings import Settings
from qfleet.workers.engine.batcher import BatchPolicy, DynamicBatcher
from qfleet.workers.engine.model import EngineOptions, LoadedModel, load_model

log = logging.getLogger(__name__)


class WorkerRuntime:
    """Holds this process's model; tasks ask it for the model, signals load and close it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._model: LoadedModel | None = None
        self._batcher: DynamicBatcher | None = None
        # The job threads this process really runs (set from the worker at start): a batch
        # can never be larger, whatever `celery worker --concurrency` was given.
        self.pool_concurrency: int | None = None
        self._lock = threading.Lock()

    def load(self) -> LoadedModel:
        """Load the configured model unless it is loaded already."""
        with self._lock:
            if self._model is None:
                if self.settings.model_dir is None:
                    raise ModelUnavailableError(
                        "no model configured: set QFLEET_MODEL_DIR to a converted model folder"
                    )
                options = EngineOptions(
                    device=self.settings.device,
                    device_index=self.settings.device_index,
                    compute_type=self.settings.compute_type,
                    cpu_threads=self.settings.cpu_threads,
                )
                self._model = load_model(self.settings.model_dir, options)
                self._batcher = DynamicBatcher(self._model, self.policy)
            return self._model

    @property
    def policy(self) -> BatchPolicy:
        """The batching policy from settings."""
        s = self.settings
        return BatchPolicy(
            max_batch_size=s.batch_max_size or self.pool_concurrency or s.worker_concurrency,
            max_wait_ms=s.batch_max_wait_ms,
            quiet_ms=s.batch_quiet_ms,
            max_length_spread=s.batch_max_length_spread,
        )

    @property
    def batcher(self) -> DynamicBatcher:
        """The batcher in front of this process's model (loading it if needed)."""
        if self._batcher is None:
            self.load()
        assert self._batcher is not None
        return self._batcher

    @property
    def loaded(self) -> LoadedModel | None:
        """The model if it is loaded, without loading it."""
        return self._model

    @property
    def model(self) -> LoadedModel:
        """The loaded model (loading it now if a signal has not yet)."""
        return self._model or self.load()

    def close(self) -> None:
        """Free the model; safe to call twice."""
        with self._lock:
            if self._batcher is not None:
                self._batcher.close()
                self._batcher = None
            if self._model is not None:
                self._model.close()
                self._model = None
