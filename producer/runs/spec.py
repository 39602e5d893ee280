"""What a run is: its spec (stored in Redis so a resume needs only the run id) and its errors."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from qfleet.tasks.errors import QfleetError
from qfleet.tasks.schemas import DEFAULT_EXTRACT_MAX_TOKENS, MAX_DOCUMENTS_PER_JOB

RunKind = Literal["generate", "extract"]
RunFormat = Literal["native", "openai"]
RunStatus = Literal["running", "finished", "cancelled", "interrupted"]


class RunCancelledError(QfleetError):
    """The run was cancelled; a cancelled run is not resumed."""

    code = "run_cancelled"


class RunBusyError(QfleetError):
    """Another producer is following this run right now."""

    code = "run_busy"


class RunSpec(BaseModel):
    """Everything needed to (re)start a run; stored in Redis so `qfleet run resume` needs only
    the run id."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")
    kind: RunKind = "extract"
    input: Path
    output: Path
    errors: Path
    format: RunFormat = "native"
    json_schema: dict[str, Any] | None = None
    instructions: str | None = None
    max_tokens: int = DEFAULT_EXTRACT_MAX_TOKENS
    temperature: float = 0.0
    batch: int = Field(default=16, ge=1, le=MAX_DOCUMENTS_PER_JOB)
    window: int = Field(default=64, ge=1, le=10_000, description="Jobs in flight at once.")


def default_run_id(input_path: Path, output: Path) -> str:
    """The same input and output give the same run id, so repeating a command resumes it."""
    key = f"{input_path.resolve()}\n{output.resolve()}"
    return "run-" + hashlib.sha256(key.encode()).hexdigest()[:12]
