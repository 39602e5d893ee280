"""A retrieval-augmented job keeps its priority across its two steps: the retrieve step sends the
generate step at the job's own priority, so an interactive RAG job reaches a generate worker's
interactive lane and a bulk one never takes a lane thread."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from ops.localfleet import WorkerProcess
from qfleet.tasks.constants import PRIORITY_BULK, PRIORITY_SEPARATOR, QUEUE_GENERATE
from qfleet.tasks.schemas import GenerateJob
from tests.faults.scenarios import client, own_fleet

pytestmark = pytest.mark.integration


def test_the_generate_step_of_a_rag_job_keeps_the_jobs_priority(
    fleet_env: dict[str, str], key_prefix: str, embedder_dir: Path, tmp_path: Path
) -> None:
    env = own_fleet(fleet_env, key_prefix, QFLEET_KB_DIR=str(tmp_path / "kb"),
                    QFLEET_EMBEDDER_DIR=str(embedder_dir))  # fmt: skip
    prefix = env["QFLEET_REDIS_KEY_PREFIX"]
    kb_env = {k: v for k, v in env.items() if k != "QFLEET_MODEL_DIR"}
    # Given the knowledge base's owner and no generate worker
    worker = WorkerProcess(
        kb_env, tmp_path / "kb.log", hostname=f"kb-{uuid.uuid4().hex[:6]}@test",
        queues="qfleet.ingest,qfleet.retrieve",
    ).start()  # fmt: skip
    lists = {
        "interactive": prefix + QUEUE_GENERATE,
        "bulk": f"{prefix}{QUEUE_GENERATE}{PRIORITY_SEPARATOR}{PRIORITY_BULK}",
    }
    try:
        with client(env) as fleet:
            # When an interactive and a bulk job with retrieval are submitted
            for priority in ("interactive", "bulk"):
                fleet.submit(GenerateJob(prompt="Where is the office?", max_tokens=4,
                                         retrieval={"top_k": 1}, priority=priority))  # fmt: skip
            # Then each generate step waits in the list of its job's priority
            deadline = time.monotonic() + 60
            while True:
                depth = {name: int(fleet.redis.llen(key)) for name, key in lists.items()}
                if depth == {"interactive": 1, "bulk": 1}:
                    break
                assert time.monotonic() < deadline, (depth, worker.log()[-3000:])
                time.sleep(0.2)
    finally:
        worker.stop()
