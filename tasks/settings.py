"""All configuration, in one place: `Settings` reads `QFLEET_*` environment variables.

Precedence, highest first: keyword arguments to `Settings(...)`, environment variables, a `.env`
file in the working directory, the defaults below. Secrets are `SecretStr` and never logged.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, RedisDsn, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qfleet.tasks.urls import redact_url, with_password, with_tls_defaults

Device = Literal["auto", "cpu", "cuda"]
RecordsMode = Literal["off", "on", "sampled"]
RedactionKind = Literal["email", "phone", "ipv4", "card"]
ComputeType = Literal[
    "auto",
    "default",
    "int8",
    "int8_float16",
    "int8_float32",
    "int8_bfloat16",
    "float16",
    "bfloat16",
    "float32",
]


class Settings(BaseSettings):
    """qfleet's settings; every field is `QFLEET_<NAME>` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="QFLEET_", env_file=".env", extra="ignore", frozen=True
    )

    # --- Redis: broker and result backend -------------------------------------------------
    broker_url: RedisDsn = Field(
        default=RedisDsn("redis://127.0.0.1:6379/0"),
        description="Broker URL; rediss:// enables TLS, redis://user:pass@host works for ACLs.",
    )
    result_backend_url: RedisDsn | None = Field(
        default=None, description="Result backend URL; defaults to the broker URL."
    )
    redis_password: SecretStr | None = Field(
        default=None, description="Password injected into both URLs (keeps it out of the URL)."
    )
    redis_key_prefix: str = Field(
        default="",
        description="Prefix for every Redis key and queue (share one Redis between fleets).",
    )
    result_ttl_s: int = Field(default=86_400, ge=60, description="How long results are kept.")
    visibility_timeout_s: float = Field(
        default=900,
        ge=0.1,
        description="Unacked messages of a dead worker are redelivered after this; a running "
        "job's heartbeat keeps its own message, so jobs may run longer.",
    )
    unacked_restore_interval_s: float = Field(
        default=10,
        ge=0.1,
        description="How often a worker looks for messages whose visibility timeout ran out.",
    )
    task_modules: list[str] = Field(
        default_factory=list,
        description="Extra modules with qfleet tasks for workers to load (JSON list).",
    )
    task_soft_time_limit_s: float = Field(default=600, ge=0.1, description="Soft limit per job.")
    task_time_limit_s: float = Field(default=660, ge=0.1, description="Hard limit per job.")
    prefetch_multiplier: int = Field(
        default=1,
        ge=1,
        description="Messages reserved per worker thread beyond the one it runs.",
    )

    # --- Worker: model and engine ---------------------------------------------------------
    model_dir: Path | None = Field(
        default=None, description="CTranslate2 model folder (from `qfleet model ...`)."
    )
    device: Device = Field(default="auto", description="auto picks CUDA when visible, else CPU.")
    device_index: int = Field(default=0, ge=0, description="GPU index for this worker process.")
    compute_type: ComputeType = Field(
        default="auto", description="auto: int8_float16 on CUDA, int8 on CPU."
    )
    cpu_threads: int = Field(
        default=0,
        ge=0,
        description="Threads per engine call (per replica); 0 = from the engine layout.",
    )
    worker_concurrency: int = Field(
        default=16, ge=1, description="Jobs one worker process holds at once (threads)."
    )
    worker_interactive_slots: int = Field(
        default=2,
        ge=0,
        le=64,
        description="Job threads only interactive (priority 0) jobs can take, beside the "
        "worker's concurrency, so an interactive job never waits for a bulk job to end; 0 = off.",
    )
    batch_max_size: int = Field(
        default=0,
        ge=0,
        description="Most jobs in one engine call; 0 = from the engine layout.",
    )
    batch_max_wait_ms: float = Field(
        default=200.0, ge=0, description="Longest a job waits for batch-mates before it runs."
    )
    batch_quiet_ms: float = Field(
        default=20.0,
        ge=0,
        description="Stop waiting for batch-mates once none arrived for this long; 0 = off.",
    )
    batch_max_length_spread: int = Field(
        default=64, ge=0, description="Prompt-length spread (tokens) allowed in one engine call."
    )

    # --- Engine scheduler and layout (docs/performance.md) -------------------------------------
    engine_replicas: int = Field(
        default=0,
        ge=0,
        description="Engine calls decoding side by side on one model; 0 = tuned or default layout.",
    )
    engine_interactive_replica: bool = Field(
        default=True,
        description="One more replica that serves interactive jobs only (never behind bulk).",
    )
    engine_preempt: bool = Field(
        default=True,
        description="Pause a bulk call (resumed later, no tokens lost) when interactive must wait.",
    )
    engine_use_tuned: bool = Field(
        default=True,
        description="Use the layout `qfleet tune` cached for this machine and model.",
    )

    # --- Retries, dead letters, lost messages -----------------------------------------------
    ledger_sweep_interval_s: float = Field(
        default=15.0, gt=0, description="How often workers look for messages the broker lost."
    )
    ledger_min_age_s: float = Field(
        default=30.0, ge=0, description="A job is sent again only if it was sent this long ago."
    )
    max_attempts: int = Field(
        default=4,
        ge=1,
        description="Starts of one job (retries + redeliveries) before it is dead-lettered.",
    )
    retry_backoff_s: float = Field(
        default=2.0, ge=0, description="First retry delay; doubles per attempt, with jitter."
    )
    retry_backoff_max_s: float = Field(default=60.0, ge=0, description="Longest retry delay.")

    # --- Reliability: running jobs stay owned, alive and cancellable (docs/reliability.md) ---
    job_heartbeat_s: float = Field(
        default=10.0,
        gt=0,
        description="How often a running job renews its lock and keeps its message from "
        "redelivery (at most a quarter of the visibility timeout); a lock lapses after three "
        "missed beats (a dead worker).",
    )
    cancel_poll_s: float = Field(
        default=0.25, gt=0, le=1.0, description="How often a worker looks for cancelled jobs."
    )

    # --- Operations: metrics and Flower (docs/operations.md) -----------------------------------
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65_535,
        description="Prometheus exporter port of a worker process; 0 turns it off.",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the worker's exporter binds; loopback unless a scraper needs more.",
    )
    flower_user: str = Field(default="admin", min_length=1, description="Flower's basic-auth user.")
    flower_password: SecretStr | None = Field(
        default=None, description="Flower's basic-auth password; `qfleet flower` requires one."
    )

    # --- Knowledge base ------------------------------------------------------------------
    kb_dir: Path | None = Field(
        default=None,
        description="Folder of the embedded knowledge base (default: ~/.local/share/qfleet/kb).",
    )
    qdrant_url: str | None = Field(
        default=None, description="A Qdrant server to use instead of the embedded store."
    )
    qdrant_api_key: SecretStr | None = Field(default=None, description="API key of that server.")
    kb_collection: str = Field(
        default="qfleet_kb", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Collection name."
    )
    embedder_dir: Path | None = Field(
        default=None,
        description="CTranslate2 embedder folder (default: the converted all-MiniLM-L6-v2).",
    )
    embedder_compute_type: ComputeType = Field(
        default="auto", description="auto: int8 on CPU, int8_float16 on CUDA."
    )
    chunk_tokens: int = Field(default=200, ge=16, le=510, description="Tokens per chunk.")
    chunk_overlap_tokens: int = Field(default=40, ge=0, description="Tokens shared by neighbours.")
    answer_cache_ttl_s: int = Field(
        default=3_600, ge=0, description="How long greedy answers are cached; 0 turns it off."
    )
    # --- Knowledge base: answers that show their evidence (docs/knowledge.md) -----------------
    rag_relevance_floor: float = Field(
        default=0.34,
        ge=0.0,
        le=1.0,
        description="Passages less relevant than this (0-1) are not retrieved; a question "
        "with none left is answered 'I don't know'. Calibrated per embedder.",
    )

    # --- Limits (the worker enforces the model's context window on top) ----------------------
    max_prompt_chars: int = Field(default=32_000, ge=1, description="Largest prompt text.")
    max_new_tokens: int = Field(default=2_048, ge=1, description="Largest `max_tokens` accepted.")
    max_prompt_tokens: int = Field(
        default=0,
        ge=0,
        description="Largest prompt in tokens, counted by the worker; 0 = the model's context.",
    )
    max_document_chars: int = Field(
        default=32_000, ge=1, description="Largest extraction document; a larger one fails alone."
    )
    max_documents_per_job: int = Field(
        default=64, ge=1, le=64, description="Most documents in one extraction job."
    )
    max_schema_chars: int = Field(
        default=32_000, ge=2, le=32_000, description="Largest extraction schema (JSON characters)."
    )
    max_schema_depth: int = Field(
        default=8, ge=1, le=8, description="Deepest nesting of subschemas in an extraction schema."
    )
    max_batch_file_bytes: int = Field(
        default=200_000_000, ge=1, description="Largest input file `qfleet run submit` reads."
    )

    # --- The HTTP gateway (`qfleet gateway`) ------------------------------------------------
    gateway_host: str = Field(
        default="127.0.0.1",
        description="Address the gateway binds; loopback unless clients on other hosts need it.",
    )
    gateway_port: int = Field(default=8000, ge=1, le=65535, description="Port of the gateway.")
    gateway_max_body_bytes: int = Field(
        default=2_000_000,
        ge=1_024,
        description="Largest request body the gateway reads (413 above it); file uploads excepted.",
    )
    # Files, batches and webhooks of the gateway (docs/gateway.md, "Files and batches").
    gateway_max_file_bytes: int = Field(
        default=50_000_000,
        ge=1_024,
        le=500_000_000,
        description="Largest uploaded file (files live in Redis memory; 512 MB at most).",
    )
    gateway_file_ttl_s: int = Field(
        default=7 * 86_400,
        ge=60,
        description="Files (and batches) expire this long after their last write.",
    )
    gateway_max_batch_lines: int = Field(
        default=50_000, ge=1, description="Most requests in one batch input file."
    )
    gateway_follow_batches: bool = Field(
        default=True,
        description="Gateway processes follow batches too (off: only `qfleet batch-runner`).",
    )
    batch_followers: int = Field(
        default=4, ge=1, le=64, description="Batches one process follows at once."
    )
    batch_window: int = Field(
        default=64, ge=1, le=10_000, description="Jobs in flight per followed batch."
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Signing secret of batch webhooks, `whsec_` + base64 (Standard Webhooks).",
    )
    webhook_allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) webhooks may call (JSON list); default none.",
    )
    webhook_max_attempts: int = Field(
        default=12, ge=1, le=100, description="Deliveries of one event before it is given up."
    )
    webhook_backoff_s: float = Field(
        default=5.0, gt=0, description="First webhook retry delay; doubles per attempt."
    )
    webhook_backoff_max_s: float = Field(
        default=3_600.0, gt=0, description="Longest delay between two webhook attempts."
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, le=60, description="How long one webhook POST may take."
    )
    gateway_requests_per_minute: int = Field(
        default=600,
        ge=0,
        description="Requests one tenant may make per minute (429 above); 0 = no limit.",
    )
    gateway_jobs_in_flight: int = Field(
        default=64,
        ge=0,
        description="Unfinished jobs one tenant may have (429 above); 0 = no limit.",
    )
    gateway_job_timeout_s: float = Field(
        default=300.0, gt=0, description="Longest a request waits for its job (504 after it)."
    )
    gateway_models_cache_s: float = Field(
        default=10.0, gt=0, description="How long the list of served models is reused."
    )
    gateway_models_timeout_s: float = Field(
        default=0.5,
        gt=0,
        description="How long the gateway waits for workers to say what they serve.",
    )
    gateway_threads: int = Field(
        default=256,
        ge=8,
        description="Threads for blocking calls (submits, Redis reads) per gateway process.",
    )
    gateway_max_embedding_inputs: int = Field(
        default=256, ge=1, le=2048, description="Most texts in one /v1/embeddings request."
    )

    # --- Quality loop: request records, feedback, the gate (docs/quality.md) -----------------
    records: RecordsMode = Field(
        default="off",
        description="Keep a durable request record of every job (on), a share (sampled), or none.",
    )
    records_sample_rate: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Share of jobs recorded when records=sampled."
    )
    records_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL of the record store (postgresql://user:pass@host:5432/db).",
    )
    records_retention_days: int = Field(
        default=30, ge=0, description="Records older than this are deleted; 0 keeps them forever."
    )
    records_redact: list[RedactionKind] = Field(
        default=["email", "phone"],
        description="Built-in redactions of stored text (JSON list of email, phone, ipv4, card).",
    )
    records_redact_patterns: list[str] = Field(
        default_factory=list,
        description="More regular expressions whose matches are masked in stored text (JSON list).",
    )
    gate_margin: float = Field(
        default=0.02,
        ge=0.0,
        le=1.0,
        description="Most a candidate may score below live and still be promoted by the gate.",
    )

    @model_validator(mode="after")
    def _limits_are_consistent(self) -> Settings:
        if self.records != "off" and self.records_url is None:
            raise ValueError("records=on/sampled needs records_url (a PostgreSQL URL)")
        for pattern in self.records_redact_patterns:
            re.compile(pattern)  # a bad pattern fails at start, not on the first record
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("chunk_overlap_tokens must be below chunk_tokens")
        if self.task_soft_time_limit_s > self.task_time_limit_s:
            raise ValueError("task_soft_time_limit_s must not exceed task_time_limit_s")
        return self

    @property
    def heartbeat_s(self) -> float:
        """The heartbeat actually used: four beats fit in every visibility timeout, so a live
        job's message is never redelivered (celery#5935)."""
        return min(self.job_heartbeat_s, self.visibility_timeout_s / 4)

    @cached_property
    def broker(self) -> str:
        """The broker URL with `redis_password` applied (and certificate checks for TLS)."""
        return with_tls_defaults(with_password(str(self.broker_url), self.redis_password))

    @cached_property
    def result_backend(self) -> str:
        """The result backend URL with `redis_password` applied (and certificate checks for TLS)."""
        url = self.result_backend_url or self.broker_url
        return with_tls_defaults(with_password(str(url), self.redis_password))


__all__ = ["Settings", "redact_url"]
