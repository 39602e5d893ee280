"""One `generate_batch` call for a group of requests that share sampling settings.

Each row keeps its own budget and stop strings: CTranslate2's per-token callback stops a row the
moment it is done, so one long request does not make its batch-mates generate for nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import ctranslate2

from qfleet.tasks.schemas import FinishReason
from qfleet.workers.engine.chat import ChatTokenizer

TextSink = Callable[[str], None]
# Why the engine stopped a row: the job's own reasons (`stop`, `length`), or the worker's: the
# row ran past its deadline (`timeout`) or its job was cancelled (`cancelled`). The last two never
# reach a `JobResult`; the task body turns them into a `JobError`.
EngineFinish = FinishReason | Literal["timeout", "cancelled"]
# Scheduling lanes: interactive rows are served before bulk rows (the job's `priority`).
Lane = Literal["interactive", "bulk"]


@dataclass(frozen=True)
class Sampling:
    """Decoding settings CTranslate2 applies to a whole call; requests are grouped by them."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0

    @property
    def greedy(self) -> bool:
        """True when decoding takes the most likely token at each step."""
        return self.temperature == 0.0 or self.top_k == 1

    def options(self) -> dict[str, float | int]:
        """The `generate_batch` keyword arguments for these settings."""
        if self.greedy:
            return {"sampling_topk": 1}
        return {
            "sampling_topk": self.top_k,
            "sampling_topp": self.top_p,
            "sampling_temperature": self.temperature,
        }


@dataclass
class GenerationRequest:
    """What one job asks of the engine, already tokenized.

    `static_prompt_ids` is a prefix shared by many jobs (the system turn): CTranslate2 computes
    its state once and caches it. `prompt_ids` is the rest of the prompt.
    """

    prompt_ids: list[int]
    max_new_tokens: int
    stop: Sequence[str] = ()
    on_text: TextSink | None = None
    static_prompt_ids: Sequence[int] = ()
    lane: Lane = "interactive"
    # `time.monotonic()` after which the row is stopped with `timeout` (None: no deadline).
    deadline: float | None = None
    # Polled between tokens; True stops the row with `cancelled`.
    cancelled: Callable[[], bool] | None = None

    @property
    def prompt_tokens(self) -> int:
        """Length of the whole prompt."""
        return len(self.static_prompt_ids) + len(self.prompt_ids)


@dataclass
class GenerationOutput:
    """What one job got back."""

    token_ids: list[int]
    text: str
    finish_reason: EngineFinish
    generate_seconds: float
    batch_size: int


@dataclass
class Row:
    """Decoding state of one request; it outlives an engine call, so a paused row resumes.

    A row paused between tokens (to let an interactive row in) keeps what it generated; the next
    call feeds the prompt plus those tokens and decoding continues where it stopped.
    """

    request: GenerationRequest
    tokenizer: ChatTokenizer
    ids: list[int] = field(default_factory=list)
    finish_reason: EngineFinish | None = None
    text: str = ""
    # When the row first entered an engine call (time.perf_counter()), and that call's size.
    started: float | None = None
    batch_size: int = 0
    _emitted: int = 0

    def push(self, token_id: int, end_ids: frozenset[int]) -> bool:
        """Take one generated token; True when this row is finished."""
        if self.finish_reason is not None:
            return True
        if self.interrupted():
            return True
        if token_id in end_ids:
            self.finish_reason = "stop"
            return True
        self.ids.append(token_id)
        if self.request.stop or self.request.on_text:
            self._update_text()
        if self.finish_reason is None and len(self.ids) >= self.request.max_new_tokens:
            self.finish_reason = "length"
        return self.finish_reason is not None

    @property
    def resume_ids(self) -> list[int]:
        """What the next call is given as prompt: the prompt and what was generated so far."""
        return [*self.request.prompt_ids, *self.ids]

    @property
    def remaining(self) -> int:
        """New tokens this row may still generate."""
        return max(self.request.max_new_tokens - len(self.ids), 1)

    def interrupted(self) -> bool:
        """Stop the row when its job was cancelled or ran past its deadline."""
        request = self.request
        if request.cancelled is not None and request.cancelled():
            self.finish_reason = "cancelled"
        elif request.deadline is not None and time.monotonic() > request.deadline:
            self.finish_reason = "timeout"
        return self.finish_reason is not None

    def finish(self) -> None:
        """Settle text and finish reason once the row is done."""
        self._update_text(final=True)
        if self.finish_reason is None:
            # The engine stopped without our callback deciding: an end token it consumed itself.
            at_limit = len(self.ids) >= self.request.max_new_tokens
            self.finish_reason = "length" if at_limit else "stop"
        if self.request.on_text and self._emitted < len(self.text):
            self.request.on_text(self.text[self._emitted :])
            self._emitted = len(self.text)

    def output(self) -> GenerationOutput:
        """The finished row as the job sees it."""
        started = self.started if self.started is not None else time.perf_counter()
        return GenerationOutput(
            token_ids=self.ids,
            text=self.text,
            finish_reason=self.finish_reason or "stop",
            generate_seconds=time.perf_counter() - started,
            batch_size=self.batch_size,
        )

    def _update_text(self, final: bool = False) -> None:
        text = self.tokenizer.decode(self.ids)
        cut = _first_stop(text, self.request.stop)
        if cut is not None:
            text = text[:cut]
            self.finish_reason = "stop"
        self.text = text
        sink = self.request.on_text
        if sink is None or final:
            return
        # Hold back an incomplete UTF-8 character and anything that could begin a stop string.
        safe = len(text.rstrip("\ufffd"))
        if cut is None:
            safe = min(safe, len(text) - _stop_prefix_len(text, self.request.stop))
        if safe > self._emitted:
            sink(text[self._emitted : safe])
            self._emitted = safe


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _stop_prefix_len(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of a stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


RowDone = Callable[[Row, BaseException | None], None]


@dataclass
class EngineCall:
    """One `generate_batch` call over rows that share sampling settings and a static prompt.

    Each row is handed to `on_done` the moment it finishes (with the exception its own callback
    raised, if any), not when the call returns, so its job thread is free at once. Setting
    `pause` stops every unfinished row after its next token; `run` returns those rows, which
    lose nothing and can be resumed by a later call. `hold`, when given, is called before each
    token is taken: it may block, which stops the call between two steps with its state kept
    (the scheduler holds bulk calls this way while interactive rows decode).
    """

    rows: Sequence[Row]
    sampling: Sampling
    on_done: RowDone
    pause: bool = False
    hold: Callable[[], None] | None = None
    # Decoding steps taken so far: a call is paused only after it made progress.
    steps: int = 0

    def run(self, generator: ctranslate2.Generator, tokenizer: ChatTokenizer) -> list[Row]:
        """Decode until every row finished or paused; return the paused rows."""
        rows = self.rows
        static = list(rows[0].request.static_prompt_ids)
        if any(list(r.request.static_prompt_ids) != static for r in rows):
            raise ValueError("requests in one call must share their static prompt")
        extra: dict[str, object] = {"static_prompt": tokenizer.tokens(static)} if static else {}
        end_ids = frozenset(tokenizer.end_token_ids)
        # Per row: None while decoding, then "done" (handed to on_done) or "paused".
        states: list[str | None] = [None] * len(rows)
        now = time.perf_counter()
        for row in rows:
            if row.started is None:
                row.started, row.batch_size = now, len(rows)

        def on_step(step: ctranslate2.GenerationStepResult) -> bool:
            if self.hold is not None:
                self.hold()
            self.steps = max(self.steps, step.step + 1)
            index = step.batch_id
            if states[index] is None:
                states[index] = self._step(rows[index], step.token_id, end_ids)
            return states[index] is not None

        generator.generate_batch(
            [tokenizer.tokens(r.resume_ids) for r in rows],
            max_length=max(r.remaining for r in rows),
            include_prompt_in_result=False,
            end_token=list(end_ids),
            callback=on_step,
            **self.sampling.options(),
            **extra,
        )
        paused = []
        for row, state in zip(rows, states, strict=True):
            if state == "paused":
                paused.append(row)
            elif state is None:
                self._settle(row)
        return paused

    def _step(self, row: Row, token_id: int, end_ids: frozenset[int]) -> str | None:
        """Feed one token to `row`; what became of it (None: it goes on decoding)."""
        try:
            if row.push(token_id, end_ids):
                self._settle(row)
                return "done"
        except Exception as exc:  # the row's own sink failed: it fails alone
            self.on_done(row, exc)
            return "done"
        return "paused" if self.pause else None

    def _settle(self, row: Row) -> None:
        try:
            row.finish()
        except Exception as exc:  # a failing sink fails its own row only
            self.on_done(row, exc)
            return
        self.on_done(row, None)


def generate(
    generator: ctranslate2.Generator,
    tokenizer: ChatTokenizer,
    requests: Sequence[GenerationRequest],
    sampling: Sampling,
) -> list[GenerationOutput]:
    """Generate for `requests` in one call; outputs are in the order of `requests`.

    A row whose own callback raised re-raises here, as a whole call did before rows were
    settled one by one.
    """
    rows = [Row(request=r, tokenizer=tokenizer) for r in requests]
    failures: dict[int, BaseException] = {}

    def done(row: Row, error: BaseException | None) -> None:
        if error is not None:
            failures[id(row)] = error

    EngineCall(rows, sampling, done).run(generator, tokenizer)
    for row in rows:
        if id(row) in failures:
            raise failures[id(row)]
    return [row.output() for row in rows]
