"""What the guided decoder takes and gives, and its state, one row (one document) each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ctranslate2
import llguidance
import numpy as np

from qfleet.workers.engine.generation import EngineFinish
from qfleet.workers.engine.guided_choice import Choice, choice_here
from qfleet.workers.engine.json_trail import Cut, JsonTrail


@dataclass
class GuidedRow:
    """What to decode for one document: its prompt, schema and budget (and forced start)."""

    prompt_ids: list[int]
    schema: dict[str, Any]
    max_new_tokens: int
    prefix: bytes = b""  # object text already decided (a repair pass starts from it)
    # Root fields whose option the model's calibrated scores decide (guided_choice.py).
    choices: dict[str, Choice] = field(default_factory=dict)


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
    # Fields whose option calibration changed: field -> what the model wrote first, and why.
    chosen: dict[str, str] = field(default_factory=dict)


@dataclass
class RowState:
    """Decoding state of one document."""

    spec: GuidedRow
    matcher: llguidance.LLMatcher
    ll: llguidance.LLTokenizer
    ids: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # byte offset after each token
    trail: JsonTrail = field(default_factory=JsonTrail)
    repairs: int = 0
    refused: bool = False
    refused_token: int | None = None
    cut: Cut | None = None
    complete: bool = False
    finish_reason: EngineFinish = "stop"
    repaired_fields: set[str] = field(default_factory=set)
    trimmed_fields: set[str] = field(default_factory=set)
    error: str | None = None
    forced: bytes | None = None  # an option calibration chose, to append before going on
    decided: set[str] = field(default_factory=set)
    chosen: dict[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return not self.complete and self.error is None and self.finish_reason == "stop"

    @property
    def prompt_length(self) -> int:
        return len(self.spec.prompt_ids)

    def at_choice(self) -> bool:
        return choice_here(self.trail, self.spec.choices, self.decided) is not None

    @property
    def remaining(self) -> int:
        return self.spec.max_new_tokens - len(self.ids)

    def accept(self, tokens: Sequence[int]) -> Cut | None:
        """Append tokens the matcher already consumed; mark the row complete when it is."""
        cut = None
        for token in tokens:
            self.ids.append(token)
            cut = self.trail.feed(self.ll.decode_bytes([token])) or cut
            self.ends.append(len(self.trail.text))
        if self.matcher.is_accepting():
            self.complete = True
        return cut

    def on_token(
        self, step: ctranslate2.GenerationStepResult, logits: np.ndarray | None = None
    ) -> bool:
        """The speculation callback; True stops this row in the current call."""
        if not self.active or self.remaining <= 0:
            return True
        name = choice_here(self.trail, self.spec.choices, self.decided)
        if name is not None and logits is not None:
            self.decided.add(name)
            choice = self.spec.choices[name]
            pick = choice.pick(logits)
            if step.token_id != choice.first_tokens[pick]:
                wrote = self.ll.decode_bytes([step.token_id]).decode("utf-8", "replace")
                self.forced = choice.options[pick]
                self.chosen[name] = f"the model began {wrote!r}; calibrated against a prompt"
                self.chosen[name] += " without the document, its scores chose this option"
                return True
        if self.matcher.try_consume_tokens([step.token_id]) != 1:
            self.refused, self.refused_token = True, step.token_id
            return True
        self.cut = self.accept([step.token_id])
        if self.remaining <= 0 and not self.complete:
            self.finish_reason = "length"
        return self.complete or self.cut is not None or self.finish_reason != "stop"
