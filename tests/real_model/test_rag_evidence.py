"""The demo model answers from the knowledge base with its evidence, and abstains without it.

Two questions of the RAG set (`ops/bench/data/rag/`), through a knowledge worker and a generate
worker serving the demo model, greedily.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from ops.bench.rag_scoring import load_documents, normalise
from ops.localfleet import WorkerProcess
from qfleet.producer.client import FleetClient
from qfleet.producer.knowledge import KnowledgeClient
from qfleet.tasks.knowledge import IngestJob, KnowledgeDocument
from qfleet.tasks.schemas import GenerateJob

pytestmark = [pytest.mark.real_model, pytest.mark.integration]


@pytest.fixture(scope="module")
def rag_workers(
    fleet_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from qfleet.workers.knowledge.embedder_build import ensure_embedder_model

    env = {
        **fleet_env,
        "QFLEET_KB_DIR": str(tmp_path_factory.mktemp("kb")),
        "QFLEET_EMBEDDER_DIR": str(ensure_embedder_model()),
        "QFLEET_ANSWER_CACHE_TTL_S": "0",
    }
    logs = tmp_path_factory.mktemp("rag")
    tag = uuid.uuid4().hex[:6]
    kb = WorkerProcess(
        {k: v for k, v in env.items() if k != "QFLEET_MODEL_DIR"},
        logs / "kb.log",
        hostname=f"kb-{tag}@test",
        queues="qfleet.ingest,qfleet.retrieve",
    ).start()
    gen = WorkerProcess(env, logs / "gen.log", hostname=f"gen-{tag}@test").start(180)
    yield
    gen.stop()
    kb.stop()


def test_answers_cite_their_passage_and_unanswerable_abstains(
    rag_workers: None, fleet: FleetClient
) -> None:
    # Given the RAG set's knowledge base (manuals, policies, release notes; two versions of some)
    documents = [KnowledgeDocument(tags=[raw.pop("lang")], **raw) for raw in load_documents()]
    knowledge = KnowledgeClient(fleet)
    for document in documents:
        knowledge.ingest(IngestJob(documents=[document]))

    # When a question whose answer changed in version 2 is asked
    port = fleet.wait(
        fleet.submit(
            GenerateJob(
                prompt="Which port does the Lumen X2 admin page use?",
                retrieval={"top_k": 3},
                max_tokens=60,
            )
        ),
        timeout=600,
    )
    # Then the answer states the current port in a sentence, from the manual's passage
    assert "9443" in port.text, port.text
    assert normalise(port.text).strip("[]0123456789.") != ""
    assert not port.abstained
    # (the 0.5B model adds a marker to about a quarter of its answers: any it adds must be valid)
    assert all(c.valid for c in port.citations), port.text
    assert "kb://manual/lumen-x2" in {s.source_url for s in port.sources}

    # When a question the knowledge base cannot answer is asked, in Chinese
    unknown = fleet.wait(
        fleet.submit(
            GenerateJob(prompt="员工食堂每天几点开门？", retrieval={"top_k": 3}, max_tokens=60)
        ),
        timeout=600,
    )
    # Then the job says it does not know, flagged
    assert unknown.abstained, unknown.text
    assert "不知道" in unknown.text
