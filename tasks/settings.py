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
        default=3_600,
        ge=1,
        description="Unacked messages are redelivered after this; must exceed the longest job.",
    )
    unacked_restore_interval_s: int = Field(
        default=10,
        ge=1,
        description="How often a worker looks for messages whose visibility timeout ran out.",
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
    cpu_threads: int = Field(default=0, ge=0, description="Threads per generation; 0 = all cores.")
    worker_concurrency: int = Field(
        default=4, ge=1, description="Jobs one worker process holds at once (threads)."
    )

    # --- Limits (the worker enforces the model's context window on top) ----------------------
    max_prompt_chars: int = Field(default=32_000, ge=1, description="Largest prompt text.")
    max_new_tokens: int = Field(default=2_048, ge=1, description="Largest `max_tokens` accepted.")

    @model_validator(mode="after")
    def _time_limits_fit_visibility(self) -> Settings:
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
        """The broker URL with `redis_password` applied."""
        return _with_password(str(self.broker_url), self.redis_password)

    @cached_property
    def result_backend(self) -> str:
        """The result backend URL with `redis_password` applied."""
        url = self.result_backend_url or self.broker_url
        return _with_password(str(url), self.redis_password)


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


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`, safe to log or print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, ""))
