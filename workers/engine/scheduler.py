"""`EngineScheduler`: several engine calls in flight on one loaded model, with an interactive lane.

CTranslate2 cannot add rows to a running `generate_batch`, and a call lasts until its longest row
ends. So one call at a time leaves the machine idle while a batch drains, and a job that arrives
meanwhile waits for all of it. The scheduler runs one engine thread per model replica (the
generator is loaded with `inter_threads` = replicas; replicas share the weights), each taking the
next call as soon as its previous one ends:

- rows wait in one pending list; an engine thread takes the oldest row of the best lane and the
  rows that can share its call (same sampling and static prompt, prompt lengths within
  `max_length_spread`, similar `max_new_tokens` first), after a short gathering window;
- each row is answered the moment it ends (its job thread is free at once), and a cancelled row
  or one past its deadline ends at its next token, or before it starts;
- an extra replica (`interactive_replica`) takes interactive rows only, so one is never queued
  behind bulk calls; when no thread can take an interactive row, a running bulk call is paused
  (`preempt`): its rows stop after their next token and go back to the front of the list, and
  resume later from prompt + generated tokens, losing nothing;
- while interactive rows decode, bulk calls beyond what the cores can run beside them are held
  between two tokens (`cpu_slots`): their state stays in the engine, nothing is re-read, and the
  interactive call gets the cores instead of sharing them with every bulk call.

A call that fails as a whole is retried row by row, so one bad request fails alone.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import count

from qfleet.workers.engine.generation import (
    EngineCall,
    GenerationOutput,
    GenerationRequest,
    Row,
    Sampling,
)
from qfleet.workers.engine.model import LoadedModel

log = logging.getLogger(__name__)

# How often an idle engine thread looks at waiting rows for a cancel or a passed deadline.
SWEEP_S = 0.1
# A bulk call is paused for an interactive row only after this many steps since it (re)started:
# resuming re-reads its prompts, so a steady interactive stream must not pause it over and over.
PREEMPT_MIN_STEPS = 32
LANE_RANK = {"interactive": 0, "bulk": 1}
# Bulk rows keep gathering while rows keep arriving, up to this many gathering windows.
BULK_WAIT_WINDOWS = 5


@dataclass(frozen=True)
class SchedulerPolicy:
    """How calls are formed and how many run at once."""

    max_batch_size: int = 16
    max_wait_ms: float = 20.0
    # Stop gathering early once no new request arrived for this long (0: always wait the full
    # max_wait_ms): a burst still shares a call, a lone request starts after only quiet_ms.
    quiet_ms: float = 0.0
    # Prompts in one call are forwarded together only up to the shortest one; the rest is
    # forced through the decoder a token per step. Rows further apart go to separate calls.
    max_length_spread: int = 64
    # Engine threads that take any row; the model needs this many replicas (plus one below).
    replicas: int = 1
    # One more engine thread (and replica) that takes interactive rows only.
    interactive_replica: bool = False
    # Pause a running bulk call when an interactive row finds no engine thread to take it.
    preempt: bool = False
    # Calls that can decode at once without oversubscribing the cores (cores // threads per
    # replica; 0: no limit, as on a GPU). While interactive calls run, bulk calls beyond
    # `cpu_slots - interactive calls` are held between tokens.
    cpu_slots: int = 0

    @property
    def engine_threads(self) -> int:
        """Replicas the model must be loaded with."""
        return self.replicas + int(self.interactive_replica)


@dataclass(eq=False)
class _Ticket:
    row: Row
    sampling: Sampling
    arrival: float
    seq: int
    future: Future[GenerationOutput] = field(default_factory=Future)
    running: bool = False

    @property
    def lane(self) -> int:
        return LANE_RANK[self.row.request.lane]

    @property
    def group(self) -> tuple[Sampling, tuple[int, ...]]:
        return self.sampling, tuple(self.row.request.static_prompt_ids)

    @property
    def length(self) -> int:
        return len(self.row.resume_ids)


@dataclass(eq=False)
class _Running:
    call: EngineCall
    lane: int
    tokens: int
    held: bool = False


class EngineScheduler:
    """Runs requests on one model with overlapping calls; `submit` from any thread."""

    def __init__(self, model: LoadedModel, policy: SchedulerPolicy | None = None) -> None:
        self.model = model
        self.policy = policy or SchedulerPolicy()
        self._cond = threading.Condition()
        self._pending: list[_Ticket] = []
        self._running: list[_Running] = []
        self._idle = {"any": 0, "interactive": 0}
        self._last_arrival = 0.0
        self._seq = count()
        self._closed = False
        roles = ["any"] * self.policy.replicas
        if self.policy.interactive_replica:
            roles.append("interactive")
        self._threads = [
            threading.Thread(
                target=self._serve, args=(role,), name=f"qfleet-engine-{i}", daemon=True
            )
            for i, role in enumerate(roles)
        ]
        # Waiting rows are checked for a cancel or a passed deadline even while every engine
        # thread is busy decoding.
        self._threads.append(
            threading.Thread(target=self._sweep, name="qfleet-engine-sweep", daemon=True)
        )
        for thread in self._threads:
            thread.start()

    # --- the job side -----------------------------------------------------------------------

    def submit(self, request: GenerationRequest, sampling: Sampling) -> Future[GenerationOutput]:
        """Queue `request`; the future resolves to its output (or its own exception)."""
        now = time.monotonic()
        ticket = _Ticket(Row(request, self.model.tokenizer), sampling, now, next(self._seq))
        with self._cond:
            if self._closed:
                raise RuntimeError("the engine scheduler is closed")
            self._pending.append(ticket)
            self._last_arrival = now
            if ticket.lane == 0:
                self._preempt_for_interactive()
            self._cond.notify_all()
        return ticket.future

    def generate(self, request: GenerationRequest, sampling: Sampling) -> GenerationOutput:
        """Submit and wait: what a job thread calls."""
        return self.submit(request, sampling).result()

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the engine threads."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def snapshot(self) -> dict[str, int]:
        """Rows waiting and decoding, calls in flight: for status and tests."""
        with self._cond:
            return {
                "pending": len(self._pending),
                "calls": len(self._running),
                "rows": sum(len(r.call.rows) for r in self._running),
                "held": sum(r.held for r in self._running),
            }

    def _preempt_for_interactive(self) -> None:
        """Pause one bulk call unless an engine thread is free to take an interactive row."""
        if not self.policy.preempt or self._idle["any"] or self._idle["interactive"]:
            return
        bulk = [
            r
            for r in self._running
            if r.lane == 1 and not r.call.pause and r.call.steps >= PREEMPT_MIN_STEPS
        ]
        if bulk:
            # The call with the fewest tokens to feed again costs the least to resume.
            min(bulk, key=lambda r: r.tokens).call.pause = True

    # --- the engine threads -------------------------------------------------------------------

    def _serve(self, role: str) -> None:
        while (tickets := self._next_call(role)) is not None:
            self._run(tickets)

    def _next_call(self, role: str) -> list[_Ticket] | None:
        """Block until a call is due for an engine thread of `role`; None once closed."""
        with self._cond:
            self._idle[role] += 1
            try:
                while True:
                    eligible = [t for t in self._pending if role == "any" or t.lane == 0]
                    if not eligible:
                        if self._closed:
                            return None
                        self._cond.wait(SWEEP_S)
                        continue
                    head = min(eligible, key=lambda t: (t.lane, t.arrival, t.seq))
                    mates = self._mates(head, eligible)
                    wait = self._gathering_left(head, len(mates))
                    if wait <= 0:
                        return self._take(mates)
                    self._cond.wait(min(wait, SWEEP_S))
            finally:
                self._idle[role] -= 1

    def _mates(self, head: _Ticket, eligible: list[_Ticket]) -> list[_Ticket]:
        """The rows that share `head`'s call, head first, similar budgets preferred."""
        spread = self.policy.max_length_spread
        same = [
            t
            for t in eligible
            if t.lane == head.lane
            and t.group == head.group
            and abs(t.length - head.length) <= spread
        ]
        budget = head.row.remaining

        def fit(t: _Ticket) -> tuple[float, float, int]:
            # Rows of one call end together when their budgets match: less idle tail.
            return (abs(math.log2(t.row.remaining / budget)) // 1, t.arrival, t.seq)

        same.sort(key=fit)
        same.remove(head)
        return [head, *same[: self.policy.max_batch_size - 1]]

    def _gathering_left(self, head: _Ticket, mates: int) -> float:
        """Seconds `head` should still wait for company (<= 0: start now)."""
        if self._closed or mates >= self.policy.max_batch_size or head.running:
            return 0.0  # a full call, a closing scheduler or a paused row: no reason to wait
        now = time.monotonic()
        wait = self.policy.max_wait_ms / 1000
        if head.lane == 1:
            # A bulk call that starts half empty holds its replica for a whole decode loop with
            # a few rows (bulk jobs submitted one by one on a busy machine arrive further apart
            # than any fixed gap). So bulk rows gather while the burst goes on: until max_wait_ms
            # passed without a new row, at most BULK_WAIT_WINDOWS times max_wait_ms.
            latest = max(head.arrival, self._last_arrival) + wait
            return min(latest, head.arrival + BULK_WAIT_WINDOWS * wait) - now
        left = head.arrival + wait - now
        # The quiet gap is for latency, so interactive rows only.
        if self.policy.quiet_ms > 0:
            left = min(left, self._last_arrival + self.policy.quiet_ms / 1000 - now)
        return left

    def _take(self, tickets: list[_Ticket]) -> list[_Ticket]:
        chosen = set(tickets)
        self._pending = [t for t in self._pending if t not in chosen]
        return tickets

    def _sweep(self) -> None:
        with self._cond:
            while not (self._closed and not self._pending):
                self._drop_finished_pending()
                # A cancel check may be a Redis read: a few per second per row is plenty.
                self._cond.wait(SWEEP_S)

    def _drop_finished_pending(self) -> None:
        """Answer waiting rows that were cancelled or ran out of time, without decoding them."""
        keep = []
        for ticket in self._pending:
            if ticket.future.cancelled():
                continue
            if ticket.row.interrupted():
                self._start(ticket)
                ticket.row.finish()
                ticket.future.set_result(ticket.row.output())
                continue
            keep.append(ticket)
        self._pending = keep

    @staticmethod
    def _start(ticket: _Ticket) -> bool:
        """Mark `ticket` running; False when its caller cancelled the future meanwhile."""
        if ticket.running:
            return True
        ticket.running = True
        return ticket.future.set_running_or_notify_cancel()

    def _run(self, tickets: list[_Ticket]) -> None:
        live = [t for t in tickets if self._start(t)]
        if not live:
            return
        by_row = {id(t.row): t for t in live}

        def done(row: Row, error: BaseException | None) -> None:
            ticket = by_row[id(row)]
            if ticket.future.done():
                return
            if error is None:
                ticket.future.set_result(row.output())
            else:
                ticket.future.set_exception(error)

        call = EngineCall([t.row for t in live], live[0].sampling, done)
        running = _Running(call, live[0].lane, sum(t.length for t in live))
        if running.lane == 1 and self.policy.cpu_slots:
            call.hold = lambda: self._hold(running)
        with self._cond:
            self._running.append(running)
            self._rebalance()
        try:
            paused = call.run(self.model.generator, self.model.tokenizer)
        except Exception as exc:
            paused = []
            self._after_failure(live, exc)
        finally:
            with self._cond:
                self._running.remove(running)
                self._rebalance()
        self._requeue([by_row[id(row)] for row in paused])

    def _rebalance(self) -> None:
        """Hold the bulk calls the cores cannot run beside the interactive ones (under the lock)."""
        slots = self.policy.cpu_slots
        if not slots:
            return
        interactive = sum(r.lane == 0 for r in self._running)
        bulk = [r for r in self._running if r.lane == 1]
        allowed = len(bulk) if not interactive else max(slots - interactive, 0)
        for index, running in enumerate(bulk):
            running.held = index >= allowed
        self._cond.notify_all()

    def _hold(self, running: _Running) -> None:
        """Called by a bulk call before each token: wait here while it is held."""
        if not running.held:  # the common case, without the lock
            return
        with self._cond:
            while running.held and not self._closed:
                self._cond.wait(SWEEP_S)

    def _requeue(self, tickets: list[_Ticket]) -> None:
        if not tickets:
            return
        with self._cond:
            # They keep their arrival time: first in line of their lane when they resume.
            self._pending.extend(tickets)
            self._cond.notify_all()

    def _after_failure(self, live: list[_Ticket], exc: Exception) -> None:
        unanswered = [t for t in live if not t.future.done()]
        if len(unanswered) == 1 and len(live) == 1:
            unanswered[0].future.set_exception(exc)
            return
        log.warning("a call of %d rows failed (%s); retrying its rows one by one", len(live), exc)
        for ticket in unanswered:
            self._run_alone(ticket)

    def _run_alone(self, ticket: _Ticket) -> None:
        def done(row: Row, error: BaseException | None) -> None:
            if error is None:
                ticket.future.set_result(row.output())
            else:
                ticket.future.set_exception(error)

        try:
            EngineCall([ticket.row], ticket.sampling, done).run(
                self.model.generator, self.model.tokenizer
            )
        except Exception as exc:
            if not ticket.future.done():
                ticket.future.set_exception(exc)
