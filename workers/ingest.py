"""The knowledge-base write tasks: `qfleet.ingest` and `qfleet.kb_admin`.

They run on the worker that owns the knowledge base (it consumes qfleet.ingest). Every change
(an ingest that changed something, a rollback, a delete) bumps the knowledge-base version, so no
answer cached before it is served after it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task

from qfleet.tasks.constants import TASK_INGEST, TASK_KB_ADMIN
from qfleet.tasks.knowledge import (
    IngestJob,
    IngestResult,
    KnowledgeAdminJob,
    KnowledgeAdminResult,
    KnowledgeTimings,
    validate_knowledge_job,
)
from qfleet.workers.knowledge.kb_version import KnowledgeVersion
from qfleet.workers.policy import JobContext, JobTask

log = logging.getLogger("qfleet.worker")


@shared_task(base=JobTask, name=TASK_INGEST, bind=True)
def ingest_task(self: JobTask, ctx: JobContext, job: Any = None) -> IngestResult:
    """Chunk, embed and store an `IngestJob`'s documents; bump the KB version if any changed."""
    worker = self.context
    started = time.perf_counter()
    parsed = validate_knowledge_job(job, IngestJob)
    report = worker.knowledge.store.ingest(parsed.documents)
    changed = any(d.status != "unchanged" for d in report.documents)
    kb_version = KnowledgeVersion(worker.redis, worker.settings.redis_key_prefix)
    version = kb_version.bump() if changed else kb_version.current()
    log.info("ingest %s: %d chunks, %d embedded", ctx.job_id, report.chunks, report.embedded)
    return IngestResult(
        job_id=ctx.job_id,
        documents=report.documents,
        chunks=report.chunks,
        embedded=report.embedded,
        kb_version=version,
        timings=KnowledgeTimings(
            embed_ms=report.embed_seconds * 1000,
            total_ms=(time.perf_counter() - started) * 1000,
        ),
        worker=ctx.worker,
    )


@shared_task(base=JobTask, name=TASK_KB_ADMIN, bind=True)
def kb_admin_task(self: JobTask, ctx: JobContext, job: Any = None) -> KnowledgeAdminResult:
    """List versions, roll back, delete a source, or report stats."""
    worker = self.context
    parsed = validate_knowledge_job(job, KnowledgeAdminJob)
    store = worker.knowledge.store
    fields: dict[str, Any] = {}
    if parsed.action == "versions":
        fields["versions"] = store.versions(parsed.source_url or "")
    elif parsed.action == "rollback":
        store.rollback(parsed.source_url or "", parsed.version or "")
        fields["versions"] = store.versions(parsed.source_url or "")
    elif parsed.action == "delete":
        fields["deleted_chunks"] = store.delete(parsed.source_url or "")
    else:
        fields["stats"] = store.stats()
    kb_version = KnowledgeVersion(worker.redis, worker.settings.redis_key_prefix)
    changes = parsed.action in ("rollback", "delete")
    version = kb_version.bump() if changes else kb_version.current()
    return KnowledgeAdminResult(
        job_id=ctx.job_id,
        action=parsed.action,
        source_url=parsed.source_url,
        kb_version=version,
        worker=ctx.worker,
        **fields,
    )
