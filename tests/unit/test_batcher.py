"""How the batcher gathers requests: a quiet gap ends collection early, a burst stays together."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from qfleet.tasks.schemas import ChatMessage
from qfleet.workers.engine.batcher import BatchPolicy, DynamicBatcher
from qfleet.workers.engine.generation import GenerationOutput, GenerationRequest, Sampling
from qfleet.workers.engine.model import EngineOptions, LoadedModel, load_model

# Far longer than any test may take: a request that waited for it would fail the test.
NEVER_MS = 600_000


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> Iterator[LoadedModel]:
    loaded = load_model(tiny_model, EngineOptions(cpu_threads=1))
    yield loaded
    loaded.close()


def _request(model: LoadedModel, text: str) -> GenerationRequest:
    tok = model.tokenizer
    return GenerationRequest(tok.encode(tok.render([ChatMessage(role="user", content=text)])), 4)


def _submit_together(
    batcher: DynamicBatcher, requests: list[GenerationRequest]
) -> list[Future[GenerationOutput]]:
    barrier = threading.Barrier(len(requests))
    futures: list[Future[GenerationOutput] | None] = [None] * len(requests)

    def submit(index: int) -> None:
        barrier.wait()
        futures[index] = batcher.submit(requests[index], Sampling())

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [f for f in futures if f is not None]


def test_a_lone_request_starts_after_the_quiet_gap_not_the_full_wait(model: LoadedModel) -> None:
    # Given a batcher that may wait ten minutes for company but stops after 50 ms of quiet
    batcher = DynamicBatcher(
        model, BatchPolicy(max_batch_size=8, max_wait_ms=NEVER_MS, quiet_ms=50)
    )
    try:
        # When one request arrives alone
        future = batcher.submit(_request(model, "alone"), Sampling())
        # Then it is generated long before the full wait would have run out
        output = future.result(timeout=60)
        assert output.batch_size == 1
        assert len(output.token_ids) == 4
    finally:
        batcher.close()


def test_a_burst_arriving_within_the_quiet_gap_shares_one_call(model: LoadedModel) -> None:
    # Given the same batcher
    batcher = DynamicBatcher(
        model, BatchPolicy(max_batch_size=8, max_wait_ms=NEVER_MS, quiet_ms=500)
    )
    try:
        # When eight requests arrive together (the batch's limit)
        requests = [_request(model, f"question {i}") for i in range(8)]
        futures = _submit_together(batcher, requests)
        # Then they are generated in one call, which starts as soon as the batch is full
        outputs = [f.result(timeout=60) for f in futures]
        assert [o.batch_size for o in outputs] == [8] * 8
    finally:
        batcher.close()


def test_quiet_gap_off_by_default_keeps_the_fixed_wait() -> None:
    assert BatchPolicy().quiet_ms == 0
