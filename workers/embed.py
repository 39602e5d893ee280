"""The embed task: `qfleet.embed`, on the knowledge queue (its consumer owns the embedder).

Vectors come from the knowledge base's own embedder (`workers/knowledge/embedder.py`), the one
its store searches with, so `/v1/embeddings` and retrieval agree on what a text means.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from pydantic import ValidationError

from qfleet.tasks.constants import TASK_EMBED
from qfleet.tasks.embeddings import EmbedJob, EmbedResult
from qfleet.tasks.errors import InvalidJobError
from qfleet.tasks.schemas import describe_validation_error
from qfleet.workers.policy import JobContext, JobTask


@shared_task(base=JobTask, name=TASK_EMBED, bind=True)
def embed_task(self: JobTask, ctx: JobContext, job: Any = None) -> EmbedResult:
    """Embed an `EmbedJob`; the policy turns its outcome into an `EmbedResult` or a `JobError`."""
    try:
        parsed = EmbedJob.model_validate(job)
    except ValidationError as exc:
        raise InvalidJobError(f"invalid embed job: {describe_validation_error(exc)}") from exc
    model = self.context.knowledge.store.embedder
    vectors = model.embed(parsed.input)
    return EmbedResult(
        job_id=parsed.job_id,
        model=model.model_id,
        dim=model.dim,
        vectors=vectors.tolist(),
        prompt_tokens=sum(model.count_tokens(text) for text in parsed.input),
        worker=ctx.worker,
    )
