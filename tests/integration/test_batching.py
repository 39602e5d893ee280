"""Batching, streaming and priorities through real worker processes."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.localfleet import WorkerProcess, run_cli
from qfleet.producer.client import FleetClient
from qfleet.tasks.errors import JobFailedError
from qfleet.tasks.schemas import GenerateJob, JobResult
from qfleet.tasks.settings import Settings

pytestmark = pytest.mark.integration

PROMPTS = [f"Question number {i}: {'why ' * (i % 5)}?" for i in range(8)]


@pytest.fixture(scope="module")
def batching_worker(
    fleet_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A worker holding 8 jobs at once, waiting up to 200 ms for batch-mates, one call at a time.

    One replica: with several, an idle worker rightly starts arriving interactive jobs on the
    next free replica instead of making them wait for batch-mates (tests/unit/test_scheduler.py).
    """
    # No answer cache: repeated greedy prompts must be generated to show batching.
    env = {**fleet_env, "QFLEET_BATCH_MAX_WAIT_MS": "200", "QFLEET_ANSWER_CACHE_TTL_S": "0",
           "QFLEET_ENGINE_REPLICAS": "1", "QFLEET_ENGINE_INTERACTIVE_REPLICA": "false"}  # fmt: skip
    log = tmp_path_factory.mktemp("batching") / "worker.log"
    process = WorkerProcess(env, log, hostname=f"batch-{uuid.uuid4().hex[:6]}@test", concurrency=8)
    yield process.start()
    process.stop()


def _solo_texts(fleet: FleetClient) -> list[str]:
    return [fleet.wait(fleet.submit(GenerateJob(prompt=p, max_tokens=12))).text for p in PROMPTS]


def test_concurrent_jobs_share_batches_and_match_solo_answers(
    batching_worker: WorkerProcess, fleet: FleetClient
) -> None:
    # Given the answers of each prompt generated on its own
    solo = _solo_texts(fleet)
    # When the same prompts arrive together
    ids = [fleet.submit(GenerateJob(prompt=p, max_tokens=12)) for p in PROMPTS]
    results = [fleet.wait(i) for i in ids]
    # Then they were generated in shared engine calls, with the same greedy answers
    assert max(r.batch_size for r in results) >= 4, [r.batch_size for r in results]
    assert [r.text for r in results] == solo
    assert all(r.usage.completion_tokens == 12 for r in results)


def test_bad_jobs_fail_alone_while_batch_mates_succeed(
    batching_worker: WorkerProcess, fleet: FleetClient
) -> None:
    # Given good jobs submitted together with a too-long one and one with an invalid payload
    good = [fleet.submit(GenerateJob(prompt=p, max_tokens=6)) for p in PROMPTS[:5]]
    too_long = fleet.submit(GenerateJob(prompt="word " * 3000, max_tokens=2000))
    invalid = uuid.uuid4().hex
    fleet.app.send_task(
        "qfleet.generate", kwargs={"job": {"prompt": "x", "top_p": 7}}, task_id=invalid
    )
    # Then each bad job gets its own error and every good one its answer
    results = [fleet.wait(i) for i in good]
    assert all(r.usage.completion_tokens == 6 for r in results)
    assert max(r.batch_size for r in results) >= 2
    for job_id, code in ((too_long, "prompt_too_long"), (invalid, "invalid_job")):
        with pytest.raises(JobFailedError) as failed:
            fleet.wait(job_id)
        assert failed.value.error.code == code


def test_streamed_text_equals_the_final_result(
    batching_worker: WorkerProcess, fleet: FleetClient
) -> None:
    # Given a streamed job generated inside a batch with other jobs
    others = [fleet.submit(GenerateJob(prompt=p, max_tokens=40)) for p in PROMPTS[:3]]
    job_id = fleet.submit(GenerateJob(prompt="Stream me a story", max_tokens=40, stream=True))
    # When its text is read as it is produced
    pieces = list(fleet.stream(job_id, timeout=60))
    result = fleet.wait(job_id)
    # Then the pieces arrived one by one and add up to the final text
    assert len(pieces) > 3
    assert "".join(pieces) == result.text
    assert result.batch_size >= 2
    assert all(fleet.wait(i) for i in others)
    # And a job that did not ask for streaming still streams its whole text once
    plain = fleet.submit(GenerateJob(prompt="Not streamed", max_tokens=5))
    assert "".join(fleet.stream(plain)) == fleet.wait(plain).text


def test_cli_stream(batching_worker: WorkerProcess, fleet_env: dict[str, str]) -> None:
    done = run_cli(["generate", "Stream me a story", "--max-tokens", "40", "--stream"], fleet_env)
    assert done.returncode == 0, done.stderr
    reference = run_cli(
        ["generate", "Stream me a story", "--max-tokens", "40", "--json"], fleet_env
    )
    assert done.stdout.rstrip("\n") == JobResult.model_validate_json(reference.stdout).text


def test_interactive_job_overtakes_a_bulk_backlog(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    # Given a fleet of its own (no other worker consumes it) and 200 bulk jobs queued
    prefix = f"{key_prefix}prio-{uuid.uuid4().hex[:6]}:"
    env = {**fleet_env, "QFLEET_REDIS_KEY_PREFIX": prefix}
    settings = Settings(broker_url=env["QFLEET_BROKER_URL"], redis_key_prefix=prefix)
    with FleetClient(settings) as fleet:
        _overtake(fleet, env, tmp_path)


def _overtake(fleet: FleetClient, env: dict[str, str], tmp_path: Path) -> None:
    bulk = [
        fleet.submit(GenerateJob(prompt=f"bulk {i}", max_tokens=8, priority="bulk"))
        for i in range(200)
    ]
    # And an interactive job submitted behind them
    urgent = fleet.submit(GenerateJob(prompt="urgent", max_tokens=8, priority="interactive"))
    worker = WorkerProcess(env, tmp_path / "w.log", hostname="prio@test", concurrency=2)
    worker.start()
    try:
        # When the worker starts draining the queue
        fleet.wait(urgent, timeout=120)
        done_before = sum(fleet.result(i) is not None for i in bulk)
        # Then the interactive job finished while most of the backlog was still waiting
        assert done_before < 100, f"{done_before} bulk jobs finished before the interactive one"
        for i in bulk:
            fleet.wait(i, timeout=120)
    finally:
        worker.stop()


def test_batcher_isolates_a_row_that_breaks_the_engine_call(tiny_model: Path) -> None:
    from qfleet.workers.engine.batcher import BatchPolicy, DynamicBatcher
    from qfleet.workers.engine.generation import GenerationRequest, Sampling
    from qfleet.workers.engine.model import EngineOptions, load_model

    # Given a batcher and a request whose streaming sink raises inside the engine callback
    model = load_model(tiny_model, EngineOptions(cpu_threads=1))
    batcher = DynamicBatcher(model, BatchPolicy(max_batch_size=4, max_wait_ms=300))
    prompt = model.tokenizer.encode("hello there")

    def broken_sink(text: str) -> None:
        raise RuntimeError("sink failed")

    try:
        # When it is submitted together with healthy requests
        requests = [GenerationRequest(prompt, 5) for _ in range(3)]
        requests.insert(1, GenerationRequest(prompt, 5, on_text=broken_sink))
        barrier = threading.Barrier(len(requests))

        def submit(request: GenerationRequest) -> object:
            barrier.wait()
            return batcher.submit(request, Sampling())

        futures: list[object] = [None] * len(requests)
        threads = [
            threading.Thread(target=lambda i=i, r=r: futures.__setitem__(i, submit(r)))
            for i, r in enumerate(requests)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Then only that request fails; the others get their tokens
        outcomes = []
        for future in futures:
            try:
                outcomes.append(len(future.result(30).token_ids))  # type: ignore[attr-defined]
            except RuntimeError as exc:
                outcomes.append(str(exc))
        assert outcomes[1] == "sink failed"
        assert [outcomes[i] for i in (0, 2, 3)] == [5, 5, 5]
    finally:
        batcher.close()
        model.close()
