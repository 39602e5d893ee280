"""The engine scheduler on the tiny model: overlapping calls, the interactive lane, preemption that
loses no tokens, cancel and deadline. Rows are held inside the engine by a streaming sink that
waits on an event, so every ordering below is forced, never timed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from qfleet.tasks.schemas import ChatMessage
from qfleet.workers.engine.generation import (
    GenerationOutput,
    GenerationRequest,
    Lane,
    Sampling,
    generate,
)
from qfleet.workers.engine.model import EngineOptions, LoadedModel, load_model
from qfleet.workers.engine.scheduler import PREEMPT_MIN_STEPS, EngineScheduler, SchedulerPolicy

WAIT_S = 60


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> Iterator[LoadedModel]:
    # Three replicas: enough for every policy below (replicas + interactive replica).
    loaded = load_model(tiny_model, EngineOptions(cpu_threads=1, replicas=3))
    yield loaded
    loaded.close()


class Gate:
    """A streaming sink that holds its row inside the engine until `release()`."""

    def __init__(self, after: int = 1) -> None:
        self.after = after
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.pieces: list[str] = []

    def __call__(self, text: str) -> None:
        self.pieces.append(text)
        if len(self.pieces) < self.after:
            return
        self.entered.set()
        assert self.opened.wait(WAIT_S), "the test never released the row"

    def release(self) -> None:
        self.opened.set()


def _request(
    model: LoadedModel, text: str, tokens: int, lane: Lane = "interactive", **kw: object
) -> GenerationRequest:
    tok = model.tokenizer
    ids = tok.encode(tok.render([ChatMessage(role="user", content=text)]))
    return GenerationRequest(ids, tokens, lane=lane, **kw)  # type: ignore[arg-type]


def _scheduler(model: LoadedModel, **policy: object) -> EngineScheduler:
    return EngineScheduler(model, SchedulerPolicy(max_wait_ms=0, **policy))  # type: ignore[arg-type]


def _order(futures: dict[str, Future[GenerationOutput]]) -> list[str]:
    """Names in the order their futures complete (filled in as they do)."""
    done: list[str] = []
    lock = threading.Lock()
    for name, future in futures.items():

        def record(_: object, name: str = name) -> None:
            with lock:
                done.append(name)

        future.add_done_callback(record)
    return done


def test_a_new_call_starts_while_another_is_still_decoding(model: LoadedModel) -> None:
    # Given two replicas and a long row held inside the engine
    scheduler = _scheduler(model, replicas=2)
    gate = Gate()
    try:
        long = scheduler.submit(_request(model, "long", 64, on_text=gate), Sampling())
        assert gate.entered.wait(WAIT_S)
        # When a short row arrives meanwhile
        short = scheduler.submit(_request(model, "short", 4), Sampling())
        # Then it is answered while the first call is still decoding
        assert len(short.result(WAIT_S).token_ids) == 4
        assert not long.done()
    finally:
        gate.release()
        scheduler.close()
    assert len(long.result(WAIT_S).token_ids) == 64


def test_the_interactive_replica_serves_interactive_rows_only(model: LoadedModel) -> None:
    # Given one replica for any row, one for interactive rows, and a bulk row held in the engine
    scheduler = _scheduler(model, replicas=1, interactive_replica=True)
    gate = Gate()
    try:
        held = scheduler.submit(_request(model, "bulk", 32, "bulk", on_text=gate), Sampling())
        assert gate.entered.wait(WAIT_S)
        # When another bulk row and then an interactive row arrive
        waiting = scheduler.submit(_request(model, "more bulk", 4, "bulk"), Sampling())
        urgent = scheduler.submit(_request(model, "urgent", 4), Sampling())
        # Then the interactive row is answered at once, and the bulk row still waits its turn
        assert len(urgent.result(WAIT_S).token_ids) == 4
        assert not waiting.done()
        assert not held.done()
    finally:
        gate.release()
        scheduler.close()
    assert len(waiting.result(WAIT_S).token_ids) == 4


def test_a_preempted_bulk_row_resumes_without_losing_tokens(model: LoadedModel) -> None:
    # Given the answer a bulk row gets when nothing interrupts it
    reference = generate(
        model.generator, model.tokenizer, [_request(model, "bulk work", 64)], Sampling()
    )[0]
    # And a single replica that may pause bulk calls, running that row
    scheduler = _scheduler(model, replicas=1, preempt=True)
    # (held once it decoded more steps than a call must make before it may be paused)
    gate = Gate(after=PREEMPT_MIN_STEPS + 8)
    try:
        bulk = scheduler.submit(_request(model, "bulk work", 64, "bulk", on_text=gate), Sampling())
        assert gate.entered.wait(WAIT_S)
        # When an interactive row arrives while the only replica decodes it
        urgent = scheduler.submit(_request(model, "urgent", 4), Sampling())
        order = _order({"bulk": bulk, "urgent": urgent})
        gate.release()
        # Then the interactive row is answered first
        assert len(urgent.result(WAIT_S).token_ids) == 4
        resumed = bulk.result(WAIT_S)
    finally:
        gate.release()
        scheduler.close()
    assert order == ["urgent", "bulk"]
    # And the bulk row's answer is the uninterrupted one, every token kept
    assert resumed.token_ids == reference.token_ids
    assert resumed.text == reference.text
    assert "".join(gate.pieces) == reference.text


def test_a_cancelled_row_frees_its_replica(model: LoadedModel) -> None:
    # Given one replica decoding a long row that can be cancelled
    scheduler = _scheduler(model, replicas=1)
    gate = Gate()
    cancel = threading.Event()
    try:
        doomed = scheduler.submit(
            _request(model, "long", 500, on_text=gate, cancelled=cancel.is_set), Sampling()
        )
        assert gate.entered.wait(WAIT_S)
        # When its job is cancelled
        cancel.set()
        gate.release()
        # Then it stops with `cancelled` well short of its budget
        output = doomed.result(WAIT_S)
        assert output.finish_reason == "cancelled"
        assert len(output.token_ids) < 500
        # And the replica takes the next row
        assert (
            len(scheduler.submit(_request(model, "next", 4), Sampling()).result(WAIT_S).token_ids)
            == 4
        )
    finally:
        gate.release()
        scheduler.close()


def test_a_waiting_row_that_is_cancelled_is_answered_without_decoding(
    model: LoadedModel,
) -> None:
    # Given the only replica held by a long row, and a second row waiting behind it
    scheduler = _scheduler(model, replicas=1)
    gate = Gate()
    try:
        held = scheduler.submit(_request(model, "long", 16, on_text=gate), Sampling())
        assert gate.entered.wait(WAIT_S)
        waiting = scheduler.submit(_request(model, "queued", 8, cancelled=lambda: True), Sampling())
        # When the waiting row's job is cancelled (its check says so), then it is answered
        # `cancelled` with no tokens while the replica is still busy
        output = waiting.result(WAIT_S)
        assert (output.finish_reason, output.token_ids) == ("cancelled", [])
        assert not held.done()
    finally:
        gate.release()
        scheduler.close()


def test_rows_past_their_deadline_stop_with_timeout(model: LoadedModel) -> None:
    scheduler = _scheduler(model, replicas=1)
    due = time.monotonic() + 0.2

    def slow_sink(_: str) -> None:
        # Decoding "takes" until the deadline has passed.
        while time.monotonic() <= due:
            time.sleep(0.01)

    try:
        # Given a row whose deadline has already passed, and one whose deadline passes mid-way
        late = scheduler.submit(
            _request(model, "late", 8, deadline=time.monotonic() - 1), Sampling()
        )
        slow = scheduler.submit(
            _request(model, "slow", 400, on_text=slow_sink, deadline=due), Sampling()
        )
        # Then both stop with `timeout`; the first never decodes, the second stops early
        assert late.result(WAIT_S).finish_reason == "timeout"
        assert late.result().token_ids == []
        output = slow.result(WAIT_S)
        assert output.finish_reason == "timeout"
        assert 0 < len(output.token_ids) < 400
    finally:
        scheduler.close()


def test_rows_of_one_call_are_answered_as_each_ends(model: LoadedModel) -> None:
    # Given one replica and a call holding a short and a long row
    scheduler = EngineScheduler(model, SchedulerPolicy(max_batch_size=2, max_wait_ms=60_000))
    # (held from its 8th piece of text on: the short row has ended by then)
    gate = Gate(after=8)
    try:
        long = scheduler.submit(_request(model, "long one", 64, on_text=gate), Sampling())
        short = scheduler.submit(_request(model, "short one", 2), Sampling())
        # When the long row is held inside the engine, then the short row is already answered
        assert short.result(WAIT_S).batch_size == 2
        assert not long.done()
    finally:
        gate.release()
        scheduler.close()
    assert len(long.result(WAIT_S).token_ids) == 64


def test_a_bulk_call_is_not_paused_before_it_made_progress(model: LoadedModel) -> None:
    # Given a single replica that may pause bulk calls, running a bulk row held at its first token
    scheduler = _scheduler(model, replicas=1, preempt=True)
    gate = Gate()
    try:
        bulk = scheduler.submit(_request(model, "bulk", 8, "bulk", on_text=gate), Sampling())
        assert gate.entered.wait(WAIT_S)
        # When an interactive row arrives before the call decoded PREEMPT_MIN_STEPS steps
        urgent = scheduler.submit(_request(model, "urgent", 4), Sampling())
        order = _order({"bulk": bulk, "urgent": urgent})
        gate.release()
        assert len(urgent.result(WAIT_S).token_ids) == 4
    finally:
        gate.release()
        scheduler.close()
    # Then the bulk call runs to its end first: a steady interactive stream cannot starve it
    assert order == ["bulk", "urgent"]
    assert len(bulk.result().token_ids) == 8


def test_bulk_calls_are_held_between_tokens_while_interactive_rows_decode(
    model: LoadedModel,
) -> None:
    # Given the answer a bulk row gets when nothing interrupts it
    reference = generate(
        model.generator, model.tokenizer, [_request(model, "bulk work", 48)], Sampling()
    )[0]
    # And one bulk replica, the interactive replica, and cores for one call at a time
    scheduler = _scheduler(model, replicas=1, interactive_replica=True, cpu_slots=1)
    bulk_gate, urgent_gate = Gate(after=4), Gate(after=2)
    try:
        bulk = scheduler.submit(
            _request(model, "bulk work", 48, "bulk", on_text=bulk_gate), Sampling()
        )
        assert bulk_gate.entered.wait(WAIT_S)
        # When an interactive row is decoding (held inside the engine at its second token)
        urgent = scheduler.submit(_request(model, "urgent", 8, on_text=urgent_gate), Sampling())
        assert urgent_gate.entered.wait(WAIT_S)
        pieces = len(bulk_gate.pieces)
        bulk_gate.release()
        time.sleep(0.5)
        # Then the bulk call is held between two tokens and takes no more
        assert scheduler.snapshot()["held"] == 1
        assert len(bulk_gate.pieces) <= pieces + 1
        assert not bulk.done()
        urgent_gate.release()
        assert len(urgent.result(WAIT_S).token_ids) == 8
        resumed = bulk.result(WAIT_S)
    finally:
        bulk_gate.release()
        urgent_gate.release()
        scheduler.close()
    # And it resumed where it stood once the interactive call ended: the same answer, no token
    # lost, nothing paused or re-read
    assert resumed.token_ids == reference.token_ids
    assert resumed.text == reference.text
    assert resumed.batch_size == 1


def test_bulk_calls_the_cores_can_run_are_not_held(model: LoadedModel) -> None:
    # Given cores for two calls at once: one bulk call and the interactive one fit
    scheduler = _scheduler(model, replicas=1, interactive_replica=True, cpu_slots=2)
    bulk_gate, urgent_gate = Gate(after=2), Gate(after=2)
    try:
        bulk = scheduler.submit(_request(model, "bulk", 32, "bulk", on_text=bulk_gate), Sampling())
        assert bulk_gate.entered.wait(WAIT_S)
        # When an interactive row decodes beside it
        urgent = scheduler.submit(_request(model, "urgent", 8, on_text=urgent_gate), Sampling())
        assert urgent_gate.entered.wait(WAIT_S)
        bulk_gate.release()
        # Then the bulk call is not held, and runs to its end while the interactive row waits
        assert len(bulk.result(WAIT_S).token_ids) == 32
        assert scheduler.snapshot()["held"] == 0
        urgent_gate.release()
        assert len(urgent.result(WAIT_S).token_ids) == 8
    finally:
        bulk_gate.release()
        urgent_gate.release()
        scheduler.close()


def test_bulk_rows_gather_while_a_burst_lasts(model: LoadedModel) -> None:
    # Given a gathering window shorter than the time a burst of bulk jobs takes to arrive
    scheduler = EngineScheduler(model, SchedulerPolicy(max_batch_size=16, max_wait_ms=400))
    try:
        # When eight bulk rows arrive 150 ms apart (1.05 s in all, under five windows)
        futures = []
        for i in range(8):
            futures.append(scheduler.submit(_request(model, f"bulk {i}", 4, "bulk"), Sampling()))
            time.sleep(0.15)
        # Then they share one call: the window restarts with every row that arrives
        assert [f.result(WAIT_S).batch_size for f in futures] == [8] * 8
    finally:
        scheduler.close()
