"""How guided rows become engine calls: chunks, padding, interrupts.

CTranslate2 prefills the part of a batch's prompts they all have in common (the static prompt
once, then as many tokens as the shortest prompt holds) in one pass, but feeds the longer rows'
remaining prompt tokens one decoding step at a time, the whole batch waiting. So rows of similar
length go together, and a call's inputs are made equally long by blank tokens: a blank costs one
prefill token, a length difference one full decoding step per token.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import ctranslate2
import numpy as np

from qfleet.workers.engine.chat import ChatTokenizer
from qfleet.workers.engine.generation import EngineFinish

# Rows per engine call. On a 2-core CPU, a decoding step over ~600-token contexts costs ~190 ms
# at 8 rows but ~960 ms at 16 (docs/performance.md): past 8 rows, a step costs more per row.
CHUNK_ROWS = 8


@dataclass
class Call:
    """What every engine call of one `decode` shares."""

    static: list[int]
    sampling: dict[str, float | int] | None
    interrupted: Callable[[], EngineFinish | None]
    cache_static: bool
    pad: bool


class _Sized(Protocol):
    @property
    def prompt_length(self) -> int: ...


Row = TypeVar("Row", bound=_Sized)


def chunks(rows: list[Row], size: int, parallel: int = 1) -> list[list[Row]]:
    """`rows` in groups of at most `size` (0: no limit), rows of similar prompt length together.

    At least `parallel` groups when there are that many rows, so every replica has work.
    """
    if not rows:
        return []
    count = max(-(-len(rows) // size) if size > 0 else 1, min(parallel, len(rows)))
    if count == 1:
        return [rows]
    ordered = sorted(rows, key=lambda row: row.prompt_length)
    # Even groups: 17 rows at 8 make 6 + 6 + 5, not 8 + 8 + 1.
    bounds = [round(n * len(ordered) / count) for n in range(count + 1)]
    return [ordered[a:b] for a, b in itertools.pairwise(bounds)]


def blank_token(tokenizer: ChatTokenizer) -> int:
    """The token that pads a call's inputs: a single space."""
    return tokenizer.encode(" ")[-1]


def pad_inputs(inputs: list[list[int]], at: int, pad_id: int) -> list[list[int]]:
    """Make every input as long as the longest by blank tokens at offset `at`."""
    longest = max(len(ids) for ids in inputs)
    return [ids[:at] + [pad_id] * (longest - len(ids)) + ids[at:] for ids in inputs]


def to_numpy(logits: Any) -> np.ndarray:
    # Results hold logits per hypothesis, per step; one hypothesis, one step here.
    while isinstance(logits, list):
        logits = logits[-1]
    if logits.device != "cpu":
        logits = logits.to_device(ctranslate2.Device.cpu)
    return np.array(logits, dtype=np.float32).reshape(-1)


@dataclass
class Interrupts:
    """The job's deadline and cancel flag, polled between tokens and repairs."""

    deadline: float | None
    cancelled: Callable[[], bool] | None
    _asked: float = 0.0
    _cancelled: bool = False

    def __call__(self) -> EngineFinish | None:
        now = time.monotonic()
        if self.deadline is not None and now > self.deadline:
            return "timeout"
        # A cancel flag lives in Redis: asked at most every 0.2 s, not per token.
        if self.cancelled is not None and not self._cancelled and now - self._asked > 0.2:
            self._asked = now
            self._cancelled = self.cancelled()
        return "cancelled" if self._cancelled else None


class StepLogits:
    """A speculation callback that hands each row its own logits of the step.

    CTranslate2 gives the logits of every row still decoding, in batch order, to the first such
    row's callback (the others get none); a row leaves the batch once its callback stops it or
    it ends. `rows[n].on_token(step, logits)` gets its row of them, converted only when the row
    is at a choice (`at_choice`).
    """

    def __init__(self, rows: Sequence[Any]) -> None:
        self.rows = rows
        self.alive = list(range(len(rows)))  # the rows of this step's logits, in order
        self.leaving: set[int] = set()  # rows that leave the batch after this step
        self.logits: np.ndarray | None = None

    def callback(self, call: Call) -> Callable[[ctranslate2.GenerationStepResult], bool]:
        def on_step(step: ctranslate2.GenerationStepResult) -> bool:
            batch_id = int(step.batch_id)
            logits = step.logits  # None unless the call asked for logits
            if logits is not None and logits.shape and logits.shape[0]:  # a step's first row
                self.alive = [n for n in self.alive if n not in self.leaving]
                self.leaving.clear()
                self.logits = None
                fits = logits.shape[0] == len(self.alive)
                if fits and any(self.rows[n].at_choice() for n in self.alive):
                    self.logits = np.array(logits, dtype=np.float32)
            mine = None
            if self.logits is not None and batch_id in self.alive:
                mine = self.logits[self.alive.index(batch_id)]
            stop = call.interrupted() is not None or self.rows[batch_id].on_token(step, mine)
            if stop or step.is_last:
                self.leaving.add(batch_id)
            return bool(stop)

        return on_step
