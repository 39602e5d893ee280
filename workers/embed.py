"""The embed task: `qfleet.embed`, on the knowledge queue (its consumer has the embedder).

The embedder is the knowledge base's own (`workers/knowledge/embedder.py`), loaded once per
process on the first embed job, so a worker that never embeds never loads it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Task
from pydantic import ValidationError

from qfleet.tasks.constants import TASK_EMBED
from qfleet.tasks.embeddings import EmbedJob, EmbedResult
from qfleet.tasks.errors import InvalidJobError
from qfleet.tasks.schemas import describe_validation_error
from qfleet.workers.jobs import error_result
from qfleet.workers.knowledge.embedder import Embedder
from qfleet.workers.knowledge.open import resolve_embedder_dir
from qfleet.workers.main import app, settings

log = logging.getLogger("qfleet.worker")

_embedder: Embedder | None = None
_lock = threading.Lock()


def embedder() -> Embedder:
    """This process's embedder (loaded on first use)."""
    global _embedder
    with _lock:
        if _embedder is None:
            _embedder = Embedder(
                resolve_embedder_dir(settings),
                device=settings.device,
                compute_type=settings.embedder_compute_type,
                cpu_threads=settings.cpu_threads,
            )
        return _embedder


def embed(job: EmbedJob, *, worker: str) -> EmbedResult:
    """The vectors of `job`'s texts."""
    model = embedder()
    vectors = model.embed(job.input)
    return EmbedResult(
        job_id=job.job_id,
        model=model.model_id,
        dim=model.dim,
        vectors=vectors.tolist(),
        prompt_tokens=sum(model.count_tokens(text) for text in job.input),
        worker=worker,
    )


@app.task(name=TASK_EMBED, bind=True)
def embed_task(self: Task, job: Any = None) -> dict[str, Any]:
    """Embed an `EmbedJob`; always ends in an `EmbedResult` or a `JobError` as JSON data."""
    worker = self.request.hostname or "unknown"
    job_id = str(self.request.id)
    try:
        try:
            parsed = EmbedJob.model_validate(job)
        except ValidationError as exc:
            raise InvalidJobError(f"invalid embed job: {describe_validation_error(exc)}") from exc
        return embed(parsed, worker=worker).model_dump(mode="json")
    except Exception as exc:
        return error_result(exc, job_id=job_id, worker=worker).model_dump(mode="json")
