"""From checked items to jobs: which items travel together, and the job ids they get.

Job ids are derived from the run id and the item ids, so submitting the same chunk again is
deduplicated by the fleet's job-id claim.
"""

from __future__ import annotations

import hashlib
import re

from qfleet.producer.runs.items import RunItem
from qfleet.tasks.schemas import ExtractDocument, ExtractJob, GenerateJob

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


def job_id_for(run_id: str, item_ids: list[str]) -> str:
    """`<run>.<item>` for one item with a plain id; a digest of the ids otherwise."""
    if len(item_ids) == 1 and _SAFE_ID.match(item_ids[0]):
        return f"{run_id}.{item_ids[0]}"
    digest = hashlib.sha256("\n".join(item_ids).encode()).hexdigest()[:20]
    return f"{run_id}.{digest}"


def document_id(position: int) -> str:
    """A document's id inside its job: item ids may hold any characters, positions do not."""
    return f"d{position}"


def build_job(run_id: str, items: list[RunItem]) -> GenerateJob | ExtractJob:
    """The job for `items` (one generate item, or extract items of one group).

    The items were checked when the file was read: the job is assembled from their checked
    parts, not validated again.
    """
    job_id = job_id_for(run_id, [item.id for item in items])
    job = items[0].job
    if job is None:
        raise ValueError(f"item {items[0].id!r} was rejected: it has no job to send")
    if isinstance(job, GenerateJob):
        return job.model_copy(update={"job_id": job_id})
    documents = [ExtractDocument(id=document_id(n), text=item.text) for n, item in enumerate(items)]
    return job.model_copy(update={"job_id": job_id, "documents": documents})


def plan_chunks(items: list[RunItem], batch: int) -> list[list[RunItem]]:
    """Jobs' worth of items: generate items alone, extract items `batch` at a time per group."""
    chunks: list[list[RunItem]] = []
    open_chunks: dict[str, list[RunItem]] = {}
    for item in items:
        if item.kind == "generate":
            chunks.append([item])
            continue
        chunk = open_chunks.setdefault(item.group, [])
        chunk.append(item)
        if len(chunk) == batch:
            chunks.append(open_chunks.pop(item.group))
    chunks.extend(open_chunks.values())
    return chunks
