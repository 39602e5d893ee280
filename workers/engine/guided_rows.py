"""What the guided decoder takes and gives, one row (one document) each."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qfleet.workers.engine.generation import EngineFinish


@dataclass
class GuidedRow:
    """What to decode for one document: its prompt, schema and budget (and forced start)."""

    prompt_ids: list[int]
    schema: dict[str, Any]
    max_new_tokens: int
    prefix: bytes = b""  # object text already decided (a repair pass starts from it)


@dataclass
class GuidedOutput:
    """One row's decoded object text and how it was obtained."""

    token_ids: list[int]
    text: str
    finish_reason: EngineFinish
    repairs: int
    generate_seconds: float
    repaired_fields: list[str] = field(default_factory=list)
    trimmed_fields: list[str] = field(default_factory=list)
    error: str | None = None
