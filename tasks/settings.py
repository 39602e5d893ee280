"""All configuration, in one place: `Settings` reads `QFLEET_*` environment variables.

Precedence, highest first: keyword arguments to `Settings(...)`, environment variables, a `.env`
file in the working directory, the defaults below. Secrets are `SecretStr` and never logged.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, RedisDsn, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Device = Literal["auto", "cpu", "cuda"]
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
    visibility_timeout_s: int = Field(
        default=900,
        ge=1,
        description="Unacked messages are redelivered after this; must exceed the longest job.",
    )
    unacked_restore_interval_s: int = Field(
        default=10,
        ge=1,
        description="How often a worker looks for messages whose visibility timeout ran out.",
    )
    task_modules: list[str] = Field(
        default_factory=list,
        description="Extra modules with qfleet tasks for workers to load (JSON list).",
    )
    task_soft_time_limit_s: int = Field(default=600, ge=1, description="Soft limit per job.")
    task_time_limit_s: int = Field(default=660, ge=1, description="Hard limit per job.")
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

    @model_validator(mode="after")
    def _time_limits_fit_visibility(self) -> Settings:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("chunk_overlap_tokens must be below chunk_tokens")
        if self.task_soft_time_limit_s > self.task_time_limit_s:
            raise ValueError("task_soft_time_limit_s must not exceed task_time_limit_s")
        if self.task_time_limit_s >= self.visibility_timeout_s:
            # A job still running when its message becomes visible again runs twice (celery#5935).
            raise ValueError(
                "visibility_timeout_s must exceed task_time_limit_s, or long jobs run twice"
            )
        return self

    @cached_property
    def broker(self) -> str:
        """The broker URL with `redis_password` applied (and certificate checks for TLS)."""
        return _with_tls_defaults(_with_password(str(self.broker_url), self.redis_password))

    @cached_property
    def result_backend(self) -> str:
        """The result backend URL with `redis_password` applied (and certificate checks for TLS)."""
        url = self.result_backend_url or self.broker_url
        return _with_tls_defaults(_with_password(str(url), self.redis_password))


def _with_password(url: str, password: SecretStr | None) -> str:
    if password is None:
        return url
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{quote(user, safe='')}:{quote(password.get_secret_value(), safe='')}@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _with_tls_defaults(url: str) -> str:
    """A `rediss://` URL that verifies the server's certificate unless it says otherwise.

    Without `ssl_cert_reqs` kombu connects the broker with CERT_NONE (TLS that trusts anyone)
    and Celery's result backend refuses the URL; `ssl_cert_reqs=required` fixes both. An
    explicit `ssl_cert_reqs` (e.g. `none` for a test server) is kept.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss" or "ssl_cert_reqs=" in parts.query:
        return url
    query = "&".join(filter(None, [parts.query, "ssl_cert_reqs=required"]))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`, safe to log or print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, ""))
