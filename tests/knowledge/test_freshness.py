"""Freshness end to end: real worker processes, the real embedder, the tiny generation model.

One worker owns the embedded knowledge base (it consumes qfleet.ingest and qfleet.retrieve);
another only generates. A job with retrieval is retrieved on the first, answered on the second.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ops.localfleet import WorkerProcess, run_cli
from qfleet.producer.client import FleetClient
from qfleet.producer.knowledge import KnowledgeClient
from qfleet.tasks.errors import JobFailedError
from qfleet.tasks.knowledge import IngestJob, KnowledgeDocument
from qfleet.tasks.schemas import GenerateJob, JobResult

pytestmark = pytest.mark.integration

SOURCE = "kb://handbook/office"
T0 = datetime(2025, 3, 1, tzinfo=UTC)
QUESTION = "Which port does the Freedonia office gateway listen on?"


@pytest.fixture(scope="module")
def kb_env(
    fleet_env: dict[str, str], embedder_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return {
        **fleet_env,
        "QFLEET_KB_DIR": str(tmp_path_factory.mktemp("kb")),
        "QFLEET_EMBEDDER_DIR": str(embedder_dir),
        "QFLEET_CHUNK_TOKENS": "64",
        "QFLEET_CHUNK_OVERLAP_TOKENS": "8",
    }


@pytest.fixture(scope="module")
def kb_worker(
    kb_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """The one process that owns the embedded knowledge base (no generation model)."""
    env = {k: v for k, v in kb_env.items() if k != "QFLEET_MODEL_DIR"}
    log = tmp_path_factory.mktemp("kbw") / "worker.log"
    process = WorkerProcess(
        env, log, hostname=f"kb-{uuid.uuid4().hex[:6]}@test", queues="qfleet.ingest,qfleet.retrieve"
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def gen_worker(
    kb_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A generate-only worker: it never opens the knowledge base."""
    log = tmp_path_factory.mktemp("genw") / "worker.log"
    process = WorkerProcess(kb_env, log, hostname=f"gen-{uuid.uuid4().hex[:6]}@test").start()
    yield process
    process.stop()


def office(version: str, port: int, day: int) -> KnowledgeDocument:
    return KnowledgeDocument(
        source_url=SOURCE,
        version=version,
        update_time=T0 + timedelta(days=day),
        tags=["handbook"],
        text=f"The Freedonia office gateway listens on port {port}. Visitors sign in at reception.",
    )


def ask(fleet: FleetClient) -> JobResult:
    job = GenerateJob(prompt=QUESTION, max_tokens=6, retrieval={"top_k": 2})
    return fleet.wait(fleet.submit(job), timeout=120)


def cited(result: JobResult) -> set[tuple[str, str]]:
    return {(s.source_url, s.version) for s in result.sources}


def test_freshness_ingest_supersede_cache_and_rollback(
    kb_worker: WorkerProcess, gen_worker: WorkerProcess, fleet: FleetClient
) -> None:
    knowledge = KnowledgeClient(fleet)
    # Given v1 of a source stating a fact, and an unrelated source
    knowledge.ingest(
        IngestJob(
            documents=[
                office("v1", 8080, 0),
                KnowledgeDocument(source_url="kb://canteen", text="The canteen opens at noon."),
            ]
        )
    )
    # When the question is asked, Then the answer cites v1, and asking again hits the cache
    first = ask(fleet)
    assert (SOURCE, "v1") in cited(first)
    assert first.worker == gen_worker.hostname
    assert not first.cached
    again = ask(fleet)
    assert again.cached
    assert again.text == first.text
    assert cited(again) == cited(first)

    # Given v2 with the fact changed
    report = knowledge.ingest(IngestJob(documents=[office("v2", 9090, 1)]))
    assert report.documents[0].status == "ingested"
    # Then retrieval returns only v2 of the source
    passages = knowledge.search("office gateway port", top_k=5).passages
    from_source = [p for p in passages if p.source_url == SOURCE]
    assert [p.version for p in from_source] == ["v2"]
    assert "9090" in from_source[0].text
    # And the answer is not the cached one: it cites v2 and no longer v1
    fresh = ask(fleet)
    assert not fresh.cached
    assert (SOURCE, "v2") in cited(fresh)
    assert (SOURCE, "v1") not in cited(fresh)

    # When v2 is rolled back
    rolled = knowledge.admin("rollback", source_url=SOURCE, version="v1")
    assert [(v.version, v.latest) for v in rolled.versions] == [("v1", True), ("v2", False)]
    # Then retrieval and answers use v1 again, computed afresh
    passages = knowledge.search("office gateway port", top_k=5).passages
    assert [p.version for p in passages if p.source_url == SOURCE] == ["v1"]
    back = ask(fleet)
    assert (SOURCE, "v1") in cited(back)
    assert (SOURCE, "v2") not in cited(back)
    assert not back.cached


def test_retrieval_failure_is_the_jobs_own_error(
    kb_worker: WorkerProcess, gen_worker: WorkerProcess, fleet: FleetClient
) -> None:
    # Given a job whose retrieval filter names a malformed time (skipping producer validation)
    job_id = uuid.uuid4().hex
    payload = GenerateJob(job_id=job_id, prompt="x", retrieval={"top_k": 1}).model_dump(mode="json")
    payload["retrieval"]["filters"]["updated_after"] = "not a time"
    fleet.app.send_task(
        "qfleet.rag_retrieve",
        kwargs={"job": payload},
        task_id=f"{job_id}.retrieve",
        queue="qfleet.retrieve",
    )
    # Then the caller waiting on the job id gets an invalid_job error
    with pytest.raises(JobFailedError) as failed:
        fleet.wait(job_id, timeout=60)
    assert failed.value.error.code == "invalid_job"


def test_cli_kb_commands(
    kb_worker: WorkerProcess, gen_worker: WorkerProcess, kb_env: dict[str, str], tmp_path: Path
) -> None:
    # Given a folder of markdown and text files
    (tmp_path / "deploy.md").write_text("# Deploying\nRun make deploy from the release branch.\n")
    (tmp_path / "faq.txt").write_text(
        "退款需要在七天内申请。Refunds are requested within seven days.\n"
    )
    # When a user ingests it with a tag
    done = run_cli(["kb", "ingest", str(tmp_path), "--tags", "cli", "--json"], kb_env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["chunks"] == 2
    # Then search finds the Chinese passage, restricted to the tag
    found = run_cli(
        ["kb", "search", "退款 申请", "--tags", "cli", "--top-k", "1", "--json"], kb_env
    )
    assert found.returncode == 0, found.stderr
    [passage] = json.loads(found.stdout)["passages"]
    assert passage["source_url"].endswith("faq.txt")
    source = passage["source_url"]
    # And versions, stats, ask and delete work as documented
    versions = run_cli(["kb", "versions", source], kb_env)
    assert versions.returncode == 0
    assert versions.stdout.startswith("*")
    stats = run_cli(["kb", "stats", "--json"], kb_env)
    assert json.loads(stats.stdout)["stats"]["backend"] == "qdrant-edge"
    asked = run_cli(["ask", "How long do I have to ask for a refund?", "--max-tokens", "4"], kb_env)
    assert asked.returncode == 0, asked.stderr
    assert "faq.txt" in asked.stderr
    assert run_cli(["kb", "delete", source], kb_env).returncode == 0
    missing = run_cli(["kb", "versions", source], kb_env)
    assert missing.returncode == 5
    assert "not_found" in missing.stderr
