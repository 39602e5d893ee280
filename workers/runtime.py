"""The per-process model: loaded once, after fork, closed at shutdown."""

from __future__ import annotations

import logging
import threading

from qfleet.tasks.errors import ModelUnavailableError
from qfleet.tasks.settings import Settings
from qfleet.workers.engine.layout import (
    EngineLayout,
    cpu_slots,
    layout_cache_path,
    resolve_layout,
)
from qfleet.workers.engine.manifest import ModelManifest
from qfleet.workers.engine.model import (
    EngineOptions,
    LoadedModel,
    load_model,
    resolve_compute_type,
    resolve_device,
)
from qfleet.workers.engine.scheduler import EngineScheduler, SchedulerPolicy

log = logging.getLogger(__name__)


class WorkerRuntime:
    """Holds this process's model; tasks ask it for the model, signals load and close it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._model: LoadedModel | None = None
        self._scheduler: EngineScheduler | None = None
        self.layout: EngineLayout | None = None
        # The job threads this process really runs (set from the worker at start): a batch
        # can never be larger, whatever `celery worker --concurrency` was given.
        self.pool_concurrency: int | None = None
        self._lock = threading.Lock()
        self._warned = False

    def load(self) -> LoadedModel:
        """Load the configured model unless it is loaded already."""
        with self._lock:
            if self._model is None:
                if self.settings.model_dir is None:
                    raise ModelUnavailableError(
                        "no model configured: set QFLEET_MODEL_DIR to a converted model folder"
                    )
                layout = self.layout = self.choose_layout()
                options = EngineOptions(
                    device=self.settings.device,
                    device_index=self.settings.device_index,
                    compute_type=self.settings.compute_type,
                    cpu_threads=layout.threads,
                    replicas=layout.replicas + int(layout.interactive_replica),
                )
                self._model = load_model(self.settings.model_dir, options)
                self._scheduler = EngineScheduler(self._model, self.policy)
                log.info("engine layout %s (%s)", layout.label, layout.source)
            return self._model

    def choose_layout(self) -> EngineLayout:
        """Replicas, threads and batch size for this machine: settings, tuned, or default."""
        s = self.settings
        assert s.model_dir is not None
        device = resolve_device(s.device)
        manifest = ModelManifest.read(s.model_dir)
        tuned = None
        if s.engine_use_tuned:
            compute_type = resolve_compute_type(s.compute_type, device)
            tuned = layout_cache_path(device, manifest.model_id, compute_type)
        return resolve_layout(
            device=device,
            tuned_path=tuned,
            pinned_replicas=s.engine_replicas,
            pinned_threads=s.cpu_threads,
            pinned_batch=s.batch_max_size,
            fallback_batch=self.pool_concurrency or s.worker_concurrency,
            interactive_replica=s.engine_interactive_replica,
        )

    @property
    def policy(self) -> SchedulerPolicy:
        """The scheduling policy from settings and the layout."""
        s = self.settings
        layout = self.layout or self.choose_layout()
        # Rows come from the job threads this process runs: split them so every replica
        # gets a call's worth, whatever `celery worker --concurrency` was given.
        threads = self.pool_concurrency or s.worker_concurrency
        per_replica = max(threads // layout.replicas, 1)
        if per_replica < layout.max_batch_size and not self._warned:
            self._warned = True
            log.warning(
                "%d job threads fill %d replicas with calls of %d rows, not %d: set "
                "QFLEET_WORKER_CONCURRENCY to %d (or more, for interactive jobs)",
                threads, layout.replicas, per_replica, layout.max_batch_size,
                layout.replicas * layout.max_batch_size,
            )  # fmt: skip
        return SchedulerPolicy(
            max_batch_size=min(layout.max_batch_size, per_replica),
            max_wait_ms=s.batch_max_wait_ms,
            quiet_ms=s.batch_quiet_ms,
            max_length_spread=s.batch_max_length_spread,
            replicas=layout.replicas,
            interactive_replica=layout.interactive_replica,
            preempt=s.engine_preempt,
            cpu_slots=cpu_slots(self._model.device if self._model else s.device, layout),
        )

    @property
    def batcher(self) -> EngineScheduler:
        """The scheduler in front of this process's model (loading it if needed)."""
        if self._scheduler is None:
            self.load()
        assert self._scheduler is not None
        return self._scheduler

    scheduler = batcher

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
            if self._scheduler is not None:
                self._scheduler.close()
                self._scheduler = None
            if self._model is not None:
                self._model.close()
                self._model = None
