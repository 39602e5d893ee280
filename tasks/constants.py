"""Names both sides of the queue agree on: queues, task names, Redis keys and their TTLs."""

from __future__ import annotations

from typing import Final

# One queue per job kind, so a fleet can dedicate workers to a kind and scale each on its depth.
QUEUE_GENERATE: Final = "qfleet.generate"
QUEUE_EXTRACT: Final = "qfleet.extract"  # bulk structured extraction
QUEUE_RETRIEVE: Final = "qfleet.retrieve"  # knowledge retrieval (the store's owner consumes it)
QUEUE_INGEST: Final = "qfleet.ingest"  # knowledge ingest and administration (the same owner)
ALL_QUEUES: Final = (QUEUE_GENERATE, QUEUE_EXTRACT, QUEUE_RETRIEVE, QUEUE_INGEST)
# Canary queues (quality loop, docs/quality.md): workers with a candidate model consume these, so
# `qfleet eval` can score a model rotation before it takes live traffic.
CANARY_SUFFIX: Final = ".canary"
CANARY_QUEUES: Final = (QUEUE_GENERATE + CANARY_SUFFIX, QUEUE_EXTRACT + CANARY_SUFFIX)

# Task names equal their queue names: one kind of job, one name, everywhere (logs, Flower, metrics).
TASK_GENERATE: Final = "qfleet.generate"
TASK_INGEST: Final = "qfleet.ingest"
TASK_RETRIEVE: Final = "qfleet.retrieve"
# Administration (versions, rollback, delete, stats) runs where ingest runs: on the store's owner.
TASK_KB_ADMIN: Final = "qfleet.kb_admin"
# The first step of a generate job that asks for retrieval: it retrieves on the store's owner,
# then enqueues the generate step (task id = the job id) with the passages attached.
TASK_RAG_RETRIEVE: Final = "qfleet.rag_retrieve"
TASK_EXTRACT: Final = "qfleet.extract"
# Sentence embeddings with the knowledge base's embedder (the gateway's /v1/embeddings): on the
# knowledge queue, whose consumer has the embedder.
TASK_EMBED: Final = "qfleet.embed"

# Our own Redis keys live beside Celery's under `Settings.redis_key_prefix`.
# `qfleet:job:<job_id>` marks a submitted job id so a second submit of the same id is not
# enqueued twice (the idempotency key of the job); it lives as long as the job's result does.
JOB_KEY: Final = "qfleet:job:{job_id}"

# `qfleet:attempts:<job_id>` counts how often a job was started (retries and redeliveries after
# a crashed worker alike); a job started more than `Settings.max_attempts` times is dead-lettered
# instead of running again. It lives as long as the job's result would.
ATTEMPTS_KEY: Final = "qfleet:attempts:{job_id}"

# `qfleet:running:<job_id>` is held while a job runs, so a duplicate delivery of the same message
# waits (it is retried after the lock's TTL) rather than running twice. It expires with the hard
# time limit, so a run that died never leaves its job locked for long.
RUNNING_KEY: Final = "qfleet:running:{job_id}"

# `qfleet:cancel:<job_id>` asks the fleet to stop a job: a queued copy is skipped when it is
# received, a running one is stopped between two tokens (its rows leave their batch) and answered
# with a `cancelled` JobError. It lives as long as the job's result would.
CANCEL_KEY: Final = "qfleet:cancel:{job_id}"

# Dead letters: `qfleet:dlq` is a sorted set of job ids by time of death, `qfleet:dlq:<job_id>`
# holds the entry (payload, error, attempts, timestamps) as JSON. Redis has no dead-letter queue
# of its own, so this is ours. Entries are kept DLQ_TTL_S, long enough for a weekend on call.
DLQ_INDEX: Final = "qfleet:dlq"
DLQ_ENTRY: Final = "qfleet:dlq:{job_id}"
DLQ_TTL_S: Final = 14 * 86_400

# `qfleet:stream:<job_id>` is a Redis stream of a streamed job's text pieces, ended by an entry
# with an `end` field. It outlives the job by STREAM_TTL_S, enough for a late reader to catch up,
# and is capped at STREAM_MAXLEN entries so a runaway job cannot grow it without bound.
STREAM_KEY: Final = "qfleet:stream:{job_id}"
STREAM_TTL_S: Final = 3_600
STREAM_MAXLEN: Final = 20_000

# Redis has no native priorities: kombu keeps one list per priority step and pops them in order,
# lowest number first. Interactive jobs therefore jump any bulk backlog already queued.
PRIORITY_INTERACTIVE: Final = 0
PRIORITY_BULK: Final = 6

# The knowledge-base version: bumped by every ingest that changed something, every rollback and
# every delete. Cached answers are keyed by it, so a change never serves a stale answer.
KB_VERSION_KEY: Final = "qfleet:kb:version"
# `qfleet:answer:<sha256>`: a cached greedy answer (TTL from Settings.answer_cache_ttl_s).
ANSWER_KEY: Final = "qfleet:answer:{digest}"
# The task id of a retrieval-augmented job's retrieve step (the job id is the generate step's).
RAG_RETRIEVE_ID: Final = "{job_id}.retrieve"

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

# Quantizations `qfleet model convert` offers (CTranslate2 names). int8 serves on CPU and GPU;
# int8_float16 is the usual GPU choice; float16/bfloat16 keep full quality at twice the size.
QUANTIZATIONS: Final = ("int8", "int8_float16", "int8_float32", "float16", "bfloat16", "float32")

# The remote-control (inspect) command every worker answers with its model, device, batch
# settings and throughput; `qfleet status` broadcasts it.
INSPECT_QFLEET_INFO: Final = "qfleet_info"

# Kombu's Redis transport keeps a queue with priorities as one list per priority level: the
# plain name for priority 0 and `<queue>\x06\x16<level>` for the others. Kombu's default steps
# are 0, 3, 6, 9 and a deployment may choose others in 0..9, so readers look at every level.
PRIORITY_SEPARATOR: Final = "\x06\x16"
PRIORITY_LEVELS: Final = tuple(range(10))
