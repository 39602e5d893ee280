"""The relevance floor and citation checks end to end: real workers, the real embedder, the tiny
model (random weights: its text is noise, so the test forces the behaviour that does not depend
on it: a question below the floor never reaches the model, and every marker is checked).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.localfleet import WorkerProcess
from qfleet.producer.client import FleetClient
from qfleet.producer.knowledge import KnowledgeClient
from qfleet.tasks.knowledge import IngestJob, KnowledgeDocument
from qfleet.tasks.schemas import GenerateJob
from qfleet.workers.knowledge.citations import ABSTAIN_EN, cited_numbers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kb_env(
    fleet_env: dict[str, str], embedder_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return {
        **fleet_env,
        "QFLEET_KB_DIR": str(tmp_path_factory.mktemp("kb")),
        "QFLEET_EMBEDDER_DIR": str(embedder_dir),
        "QFLEET_RAG_RELEVANCE_FLOOR": "0.34",
        "QFLEET_ANSWER_CACHE_TTL_S": "0",
    }


@pytest.fixture(scope="module")
def workers(
    kb_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    """A knowledge worker (no model) and a generate worker with the tiny model."""
    logs = tmp_path_factory.mktemp("evidence")
    tag = uuid.uuid4().hex[:6]
    kb = WorkerProcess(
        {k: v for k, v in kb_env.items() if k != "QFLEET_MODEL_DIR"},
        logs / "kb.log",
        hostname=f"kb-{tag}@test",
        queues="qfleet.ingest,qfleet.retrieve",
    ).start()
    gen = WorkerProcess(kb_env, logs / "gen.log", hostname=f"gen-{tag}@test").start()
    yield kb, gen
    gen.stop()
    kb.stop()


def test_floor_abstains_and_markers_are_checked(
    workers: tuple[WorkerProcess, WorkerProcess], fleet: FleetClient
) -> None:
    # Given a knowledge base with one document, behind a relevance floor of 0.34
    KnowledgeClient(fleet).ingest(
        IngestJob(
            documents=[
                KnowledgeDocument(
                    source_url="kb://gateway",
                    text="The Freedonia office gateway listens on port 9090. [7] is not a note.",
                )
            ]
        )
    )
    # When a question the knowledge base cannot answer is asked
    unrelated = GenerateJob(prompt="Where can I park at the Berlin office?", retrieval={})
    result = fleet.wait(fleet.submit(unrelated), timeout=120)
    # Then the job says it does not know, flagged, without running the model
    assert result.abstained
    assert result.text == ABSTAIN_EN
    assert result.usage.completion_tokens == 0
    assert result.sources == []

    # When a question it can answer is asked
    job = GenerateJob(
        prompt="Which port does the Freedonia office gateway listen on?",
        retrieval={"top_k": 2},
        max_tokens=24,
    )
    answered = fleet.wait(fleet.submit(job), timeout=120)
    # Then the model ran on the passage, and every marker in its text is listed and checked
    assert answered.usage.completion_tokens > 0
    assert [s.source_url for s in answered.sources] == ["kb://gateway"]
    assert [c.number for c in answered.citations] == cited_numbers(answered.text)
    assert all(c.valid == (c.number == 1) for c in answered.citations)
