"""Knowledge tasks: `qfleet.ingest`, `qfleet.kb_admin`, `qfleet.retrieve`, `qfleet.rag_retrieve`.

They run on the worker that owns the knowledge base (it consumes qfleet.ingest and
qfleet.retrieve). A generate job that asks for retrieval starts here (`qfleet.rag_retrieve`):
its passages are retrieved on the owner, then the generate step is enqueued on qfleet.generate
with the job's own id, so any generate worker answers it without opening the store.
"""

from __future__ import annotations

import atexit
import logging
import time
from collections.abc import Callable
from typing import Any

from celery import Task
from celery.signals import worker_shutdown

from qfleet.tasks.constants import (
    CANARY_SUFFIX,
    QUEUE_GENERATE,
    TASK_GENERATE,
    TASK_INGEST,
    TASK_KB_ADMIN,
    TASK_RAG_RETRIEVE,
    TASK_RETRIEVE,
)
from qfleet.tasks.knowledge import (
    IngestJob,
    IngestResult,
    KnowledgeAdminJob,
    KnowledgeAdminResult,
    KnowledgeTimings,
    RetrieveJob,
    RetrieveResult,
    validate_knowledge_job,
)
from qfleet.tasks.limits import parse_generate_job
from qfleet.tasks.schemas import GenerateJob, JobResult
from qfleet.workers.jobs import error_result
from qfleet.workers.knowledge.answer_cache import AnswerCache
from qfleet.workers.knowledge.kb_version import KnowledgeVersion
from qfleet.workers.knowledge.rag import RetrievedContext, answer, parse_context
from qfleet.workers.knowledge.runtime import KnowledgeRuntime
from qfleet.workers.main import app, fleet_keys, runtime, settings

log = logging.getLogger("qfleet.worker")

knowledge = KnowledgeRuntime(settings)
GENERATE_QUEUES = (QUEUE_GENERATE, QUEUE_GENERATE + CANARY_SUFFIX)
atexit.register(knowledge.close)


@worker_shutdown.connect
def _close_knowledge(**_: Any) -> None:
    knowledge.close()


def _kb_version() -> KnowledgeVersion:
    return KnowledgeVersion(fleet_keys, settings.redis_key_prefix)


def _guarded(body: Callable[[str, str], dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Run `body(job_id, worker)`; any failure becomes a `JobError` result."""

    def run(task: Task) -> dict[str, Any]:
        worker = task.request.hostname or "unknown"
        job_id = str(task.request.id)
        try:
            return body(job_id, worker)
        except Exception as exc:
            return error_result(exc, job_id=job_id, worker=worker).model_dump(mode="json")

    return run


@app.task(name=TASK_INGEST, bind=True)
def ingest_task(self: Task, job: Any = None) -> dict[str, Any]:
    """Chunk, embed and store an `IngestJob`'s documents; bump the KB version if any changed."""

    def body(job_id: str, worker: str) -> dict[str, Any]:
        started = time.perf_counter()
        parsed = validate_knowledge_job(job, IngestJob)
        report = knowledge.store.ingest(parsed.documents)
        changed = any(d.status != "unchanged" for d in report.documents)
        version = _kb_version().bump() if changed else _kb_version().current()
        log.info("ingest %s: %d chunks, %d embedded", job_id, report.chunks, report.embedded)
        return IngestResult(
            job_id=job_id,
            documents=report.documents,
            chunks=report.chunks,
            embedded=report.embedded,
            kb_version=version,
            timings=KnowledgeTimings(
                embed_ms=report.embed_seconds * 1000,
                total_ms=(time.perf_counter() - started) * 1000,
            ),
            worker=worker,
        ).model_dump(mode="json")

    return _guarded(body)(self)


@app.task(name=TASK_KB_ADMIN, bind=True)
def kb_admin_task(self: Task, job: Any = None) -> dict[str, Any]:
    """List versions, roll back, delete a source, or report stats."""

    def body(job_id: str, worker: str) -> dict[str, Any]:
        parsed = validate_knowledge_job(job, KnowledgeAdminJob)
        store = knowledge.store
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
        changes = parsed.action in ("rollback", "delete")
        version = _kb_version().bump() if changes else _kb_version().current()
        return KnowledgeAdminResult(
            job_id=job_id,
            action=parsed.action,
            source_url=parsed.source_url,
            kb_version=version,
            worker=worker,
            **fields,
        ).model_dump(mode="json")

    return _guarded(body)(self)


@app.task(name=TASK_RETRIEVE, bind=True)
def retrieve_task(self: Task, job: Any = None) -> dict[str, Any]:
    """The top-k passages for a `RetrieveJob`, with scores and provenance."""

    def body(job_id: str, worker: str) -> dict[str, Any]:
        started = time.perf_counter()
        parsed = validate_knowledge_job(job, RetrieveJob)
        version = _kb_version().current()
        passages = knowledge.store.search(parsed.query, parsed.top_k, parsed.filters)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return RetrieveResult(
            job_id=job_id,
            query=parsed.query,
            passages=passages,
            kb_version=version,
            timings=KnowledgeTimings(embed_ms=0.0, total_ms=elapsed_ms),
            worker=worker,
        ).model_dump(mode="json")

    return _guarded(body)(self)


@app.task(name=TASK_RAG_RETRIEVE, bind=True)
def rag_retrieve_task(
    self: Task, job: Any = None, submitted_at: float | None = None, generate_queue: Any = None
) -> dict[str, Any]:
    """Step 1 of a generate job with retrieval: retrieve, then enqueue the generate step.

    A failure is stored as the job's own result (a `JobError` under the job id), so the caller
    waiting on the job id sees it.
    """
    worker = self.request.hostname or "unknown"
    payload = job if isinstance(job, dict) else {}
    job_id = str(payload.get("job_id") or self.request.id)
    try:
        parsed = parse_generate_job(job, settings)
        spec = parsed.retrieval
        if spec is None:
            raise ValueError("a rag_retrieve step needs a job with `retrieval`")
        version = _kb_version().current()
        query = parsed.chat()[-1].content
        passages = knowledge.store.search(query, spec.top_k, spec.filters)
        context = RetrievedContext(passages=passages, kb_version=version)
    except Exception as exc:
        error = error_result(exc, job_id=job_id, worker=worker).model_dump(mode="json")
        app.backend.store_result(job_id, error, "SUCCESS")
        return error
    app.send_task(
        TASK_GENERATE,
        kwargs={
            "job": parsed.model_dump(mode="json"),
            "submitted_at": submitted_at,
            "context": context.model_dump(mode="json"),
        },
        task_id=parsed.job_id,
        # Quality-loop hook: `qfleet eval` may send the generate step to the canary queue.
        queue=generate_queue if generate_queue in GENERATE_QUEUES else QUEUE_GENERATE,
    )
    return {"job_id": parsed.job_id, "passages": len(passages), "kb_version": version}


def generate_with_knowledge(
    job: GenerateJob, context: Any, run: Callable[[GenerateJob], JobResult], *, worker: str
) -> JobResult:
    """Answer `job` with its retrieved passages (if any), through the answer cache."""
    cache = None
    if settings.answer_cache_ttl_s > 0:
        cache = AnswerCache(
            fleet_keys,
            key_prefix=settings.redis_key_prefix,
            ttl_s=settings.answer_cache_ttl_s,
        )
    info = runtime.model.info
    return answer(
        job,
        parse_context(context),
        run,
        cache=cache,
        model=f"{info.id}/{info.compute_type}",
        worker=worker,
    )
