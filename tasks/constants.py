"""Names both sides of the queue agree on: queues, task names, Redis keys and their TTLs."""

from __future__ import annotations

from typing import Final

# One queue per job kind, so a fleet can dedicate workers to a kind and scale each on its depth.
QUEUE_GENERATE: Final = "qfleet.generate"
QUEUE_EXTRACT: Final = "qfleet.extract"  # reserved for bulk extraction
QUEUE_RETRIEVE: Final = "qfleet.retrieve"  # knowledge retrieval (the store's owner consumes it)
QUEUE_INGEST: Final = "qfleet.ingest"  # knowledge ingest and administration (the same owner)
ALL_QUEUES: Final = (QUEUE_GENERATE, QUEUE_EXTRACT, QUEUE_RETRIEVE, QUEUE_INGEST)

# Task names equal their queue names: one kind of job, one name, everywhere (logs, Flower, metrics).
TASK_GENERATE: Final = "qfleet.generate"
TASK_INGEST: Final = "qfleet.ingest"
TASK_RETRIEVE: Final = "qfleet.retrieve"
# Administration (versions, rollback, delete, stats) runs where ingest runs: on the store's owner.
TASK_KB_ADMIN: Final = "qfleet.kb_admin"
# The first step of a generate job that asks for retrieval: it retrieves on the store's owner,
# then enqueues the generate step (task id = the job id) with the passages attached.
TASK_RAG_RETRIEVE: Final = "qfleet.rag_retrieve"

# Our own Redis keys live beside Celery's under `Settings.redis_key_prefix`.
# `qfleet:job:<job_id>` marks a submitted job id so a second submit of the same id is not
# enqueued twice (the idempotency key of the job); it lives as long as the job's result does.
JOB_KEY: Final = "qfleet:job:{job_id}"

# The knowledge-base version: bumped by every ingest that changed something, every rollback and
# every delete. Cached answers are keyed by it, so a change never serves a stale answer.
KB_VERSION_KEY: Final = "qfleet:kb:version"
# `qfleet:answer:<sha256>`: a cached greedy answer (TTL from Settings.answer_cache_ttl_s).
ANSWER_KEY: Final = "qfleet:answer:{digest}"
# The task id of a retrieval-augmented job's retrieve step (the job id is the generate step's).
RAG_RETRIEVE_ID: Final = "{job_id}.retrieve"

# Models built for tests and the demo are cached under this folder of the user's cache dir.
CACHE_DIR_NAME: Final = "qfleet"
MODEL_MANIFEST: Final = "qfleet-model.json"
