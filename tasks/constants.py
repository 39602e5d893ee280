"""Names both sides of the queue agree on: queues, task names, Redis keys and their TTLs."""

from __future__ import annotations

from typing import Final

# One queue per job kind, so a fleet can dedicate workers to a kind and scale each on its depth.
QUEUE_GENERATE: Final = "qfleet.generate"
QUEUE_EXTRACT: Final = "qfleet.extract"
QUEUE_RETRIEVE: Final = "qfleet.retrieve"  # reserved for retrieval jobs
QUEUE_INGEST: Final = "qfleet.ingest"  # reserved for knowledge ingest
ALL_QUEUES: Final = (QUEUE_GENERATE, QUEUE_EXTRACT, QUEUE_RETRIEVE, QUEUE_INGEST)

# Task names equal their queue names: one kind of job, one name, everywhere (logs, Flower, metrics).
TASK_GENERATE: Final = "qfleet.generate"
TASK_EXTRACT: Final = "qfleet.extract"

# Our own Redis keys live beside Celery's under `Settings.redis_key_prefix`.
# `qfleet:job:<job_id>` marks a submitted job id so a second submit of the same id is not
# enqueued twice (the idempotency key of the job); it lives as long as the job's result does.
JOB_KEY: Final = "qfleet:job:{job_id}"

# A bulk run's spec and progress (a hash), and its jobs in flight (a hash job id -> item ids).
# Kept a week after the last update: long enough to resume or inspect a run, then forgotten.
RUN_KEY: Final = "qfleet:run:{run_id}"
RUN_PENDING_KEY: Final = "qfleet:run:{run_id}:pending"
RUN_TTL_S: Final = 7 * 24 * 3600
# One producer follows a run at a time; its lease lapses this long after it stops renewing it
# (a crashed producer), so a resume waits at most this long.
RUN_LEASE_S: Final = 10

# Models built for tests and the demo are cached under this folder of the user's cache dir.
CACHE_DIR_NAME: Final = "qfleet"
MODEL_MANIFEST: Final = "qfleet-model.json"
