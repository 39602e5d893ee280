"""The quality loop for retrieval-augmented answers: records with passages and the knowledge
version, a knowledge gap turned into a draft, and an evaluation routed to a canary model."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.localfleet import WorkerProcess, run_cli
from qfleet.producer.client import FleetClient
from qfleet.producer.knowledge import KnowledgeClient
from qfleet.tasks.knowledge import IngestJob, KnowledgeDocument
from qfleet.tasks.settings import Settings

pytestmark = pytest.mark.timeout(600)

SOURCE = "kb://handbook/office"
IN_KB = "Which port does the Freedonia office gateway listen on? Reply with the number only."
NOT_IN_KB = "When does the Freedonia office close on Fridays?"


@contextlib.contextmanager
def rag_fleet(env: dict[str, str], demo_model: Path, log_dir: Path) -> Iterator[None]:
    """A knowledge-base owner, the tiny model on live, the demo model on the canary."""
    kb_env = {k: v for k, v in env.items() if k != "QFLEET_MODEL_DIR"}
    tag = uuid.uuid4().hex[:6]
    specs = [
        (kb_env, "kb", "qfleet.ingest,qfleet.retrieve"),
        (env, "live", "qfleet.generate"),
        (env | {"QFLEET_MODEL_DIR": str(demo_model)}, "canary", "qfleet.generate.canary"),
    ]
    workers: list[WorkerProcess] = []
    try:
        for worker_env, name, queues in specs:
            log = log_dir / f"{name}.log"
            worker = WorkerProcess(worker_env, log, hostname=f"{name}-{tag}@test", queues=queues)
            workers.append(worker.start(120))
        yield
    finally:
        for worker in workers:
            worker.stop()


def ask_and_judge(env: dict[str, str]) -> list[str]:
    """Ingest a fact, ask one question it answers and one it does not, judge both wrong."""
    settings = Settings(
        broker_url=env["QFLEET_BROKER_URL"], redis_key_prefix=env["QFLEET_REDIS_KEY_PREFIX"]
    )
    office = "The Freedonia office gateway listens on port 8080. Visitors sign in at reception."
    with FleetClient(settings) as fleet:
        KnowledgeClient(fleet).ingest(
            IngestJob(
                documents=[
                    KnowledgeDocument(source_url=SOURCE, version="v1", text=office),
                    KnowledgeDocument(source_url="kb://canteen", text="Lunch is at noon."),
                ]
            )
        )
        asked = [
            fleet.submit({"prompt": q, "max_tokens": 8, "retrieval": {"top_k": 2}})
            for q in (IN_KB, NOT_IN_KB)
        ]
        for job_id in asked:
            fleet.wait(job_id, timeout=120)
    for job_id, right in zip(asked, ("8080", "At 4 pm"), strict=True):
        done = run_cli(["feedback", job_id, "--verdict", "wrong", "--correction", right], env)
        assert done.returncode == 0, done.stderr
    return asked


def test_rag_records_gaps_and_canary_eval(
    fleet_env: dict[str, str], records_url: str, clean_records: str, embedder_dir: Path,
    demo_model: Path, tmp_path: Path,
) -> None:  # fmt: skip
    # Given: a knowledge-base owner, the tiny model on live, the demo model on the canary
    env = fleet_env | {
        "QFLEET_RECORDS": "on",
        "QFLEET_RECORDS_URL": records_url,
        "QFLEET_KB_DIR": str(tmp_path / "kb"),
        "QFLEET_EMBEDDER_DIR": str(embedder_dir),
    }
    with rag_fleet(env, demo_model, tmp_path):
        # When: two questions are answered with retrieval on live and judged wrong
        asked = ask_and_judge(env)
        # Then: the record holds the passages, their versions, the KB version and the prompt
        shown = json.loads(run_cli(["records", "show", asked[0]], env).stdout)
        assert shown["kind"] == "rag"
        assert isinstance(shown["kb_version"], int)
        assert {(p["source_url"], p["version"]) for p in shown["passages"]} >= {(SOURCE, "v1")}
        assert "8080" in shown["prompts"][0][0]["content"]  # the passages in the system turn

        # When: the judged records are exported
        data = tmp_path / "data"
        counts = json.loads(run_cli(["dataset", "export", str(data), "--json"], env).stdout)
        # Then: the answer found in a passage is an eval item with its source; the other a gap
        assert (counts["eval_items"], counts["kb_drafts"]) == (2, 1)
        lines = (data / "eval.jsonl").read_text().splitlines()
        items = {item["origin"]: item for item in map(json.loads, lines)}
        assert items[asked[0]]["expected"]["sources"] == [{"source_url": SOURCE, "version": "v1"}]
        assert items[asked[1]]["expected"]["sources"] == []
        draft = json.loads((data / "kb_drafts.jsonl").read_text())
        assert "At 4 pm" in draft["text"]
        assert draft["version"] == "draft"

        # When: the set is evaluated on the canary
        args = ["eval", "run", str(data / "eval.jsonl"), "--target", "canary", "--json"]
        run = run_cli(args, env, timeout=300)
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)
    # Then: the demo model answered (the generate step went to the canary) and the retrieval
    # of the answerable question hit its source
    assert report["models"] == ["qwen2.5-coder-0.5b-instruct-int8-demo-v1"]
    scored = {item["id"]: item for item in report["items"]}
    assert scored[asked[0]]["scores"]["hit_at_k"] == 1.0
    assert scored[asked[0]]["scores"]["stale_citations"] == 0.0
    print(report["metrics"], [i["output"] for i in report["items"]])
