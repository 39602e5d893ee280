"""`DynamicBatcher`: jobs that reach one worker close together share one `generate_batch` call.

Job threads (the worker's threads pool) submit a request and block on its future; one engine
thread collects requests for at most `max_wait_ms` (or until `max_batch_size` are waiting, or no
new one arrived for `quiet_ms`), groups them by what CTranslate2 applies per call (sampling
settings, static prompt), splits each group by prompt length so short prompts do not wait on long
ones being forced through the decoder, and runs the groups. A failing batch is retried row by
row, so one bad request fails alone.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from qfleet.workers.engine.generation import GenerationOutput, GenerationRequest, Sampling, generate
from qfleet.workers.engine.model import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchPolicy:
    """How large a batch may grow and how long its first job may wait for company."""

    max_batch_size: int = 16
    max_wait_ms: float = 20.0
    # Stop collecting early once no new request arrived for this long (0: always wait the full
    # max_wait_ms). CTranslate2 cannot add rows to a running call, so a burst split over two
    # calls costs a whole extra decode loop; a quiet gap lets a long max_wait_ms gather a burst
    # while a lone request still starts after only quiet_ms.
    quiet_ms: float = 0.0
    # Prompts in one call are forwarded together only up to the shortest one; the rest is
    # forced through the decoder a token per step. Rows further apart than this go to separate
    # calls.
    max_length_spread: int = 64


@dataclass
class _Pending:
    request: GenerationRequest
    sampling: Sampling
    future: Future[GenerationOutput] = field(default_factory=Future)

    @property
    def group(self) -> tuple[Sampling, tuple[int, ...]]:
        return self.sampling, tuple(self.request.static_prompt_ids)


class DynamicBatcher:
    """Serialises access to one model and batches concurrent requests into shared calls."""

    def __init__(self, model: LoadedModel, policy: BatchPolicy | None = None) -> None:
        self.model = model
        self.policy = policy or BatchPolicy()
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="qfleet-batcher", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, request: GenerationRequest, sampling: Sampling) -> Future[GenerationOutput]:
        """Queue `request`; the future resolves to its output (or its own exception)."""
        if self._closed:
            raise RuntimeError("the batcher is closed")
        pending = _Pending(request, sampling)
        self._queue.put(pending)
        return pending.future

    def generate(self, request: GenerationRequest, sampling: Sampling) -> GenerationOutput:
        """Submit and wait: what a job thread calls."""
        return self.submit(request, sampling).result()

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the engine thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout)

    # --- the engine thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                return
            for chunk in plan_calls(batch, self.policy):
                self._execute(chunk)

    def _collect(self) -> list[_Pending] | None:
        """Block for a first request, then gather company until the batch is full or due."""
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self.policy.max_wait_ms / 1000
        quiet = self.policy.quiet_ms / 1000
        while len(batch) < self.policy.max_batch_size:
            remaining = deadline - time.monotonic()
            if quiet > 0:
                remaining = min(remaining, quiet)
            try:
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # seen again after this batch: stop then
                break
            batch.append(item)
        return batch

    def _execute(self, chunk: Sequence[_Pending]) -> None:
        live = [p for p in chunk if p.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            outputs = self._generate(live)
        except Exception as exc:
            if len(live) == 1:
                live[0].future.set_exception(exc)
                return
            log.warning("a batch of %d failed (%s); retrying its rows one by one", len(live), exc)
            for pending in live:
                self._execute_alone(pending)
            return
        for pending, output in zip(live, outputs, strict=True):
            pending.future.set_result(output)

    def _execute_alone(self, pending: _Pending) -> None:
        try:
            [output] = self._generate([pending])
        except Exception as exc:
            pending.future.set_exception(exc)
        else:
            pending.future.set_result(output)

    def _generate(self, chunk: Sequence[_Pending]) -> list[GenerationOutput]:
        return generate(
            self.model.generator,
            self.model.tokenizer,
            [p.request for p in chunk],
            chunk[0].sampling,
        )


def plan_calls(batch: Sequence[_Pending], policy: BatchPolicy) -> list[list[_Pending]]:
    """Split a collected batch into `generate_batch` calls.

    Requests share a call only with the same sampling settings and static prompt; within that,
    sorted by prompt length and cut where the length spread would exceed the policy.
    """
    groups: dict[tuple[Sampling, tuple[int, ...]], list[_Pending]] = defaultdict(list)
    for pending in batch:
        groups[pending.group].append(pending)
    calls: list[list[_Pending]] = []
    for members in groups.values():
        members.sort(key=lambda p: len(p.request.prompt_ids))
        current: list[_Pending] = []
        for pending in members:
            shortest = len(current[0].request.prompt_ids) if current else 0
            if current and len(pending.request.prompt_ids) - shortest > policy.max_length_spread:
                calls.append(current)
                current = []
            current.append(pending)
        calls.append(current)
    return calls
