"""The quality loop for retrieval-augmented answers: records with passages and the knowledge
version, a knowledge gap turned into a draft, and an evaluation routed to a canary model."""

from __future__ import annotations

import json
import uuid
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
    kb_env = {k: v for k, v in env.items() if k != "QFLEET_MODEL_DIR"}
    tag = uuid.uuid4().hex[:6]
    workers = [
        WorkerProcess(kb_env, tmp_path / "kb.log", hostname=f"kb-{tag}@test",
                      queues="qfleet.ingest,qfleet.retrieve").start(120),
        WorkerProcess(env, tmp_path / "live.log", hostname=f"live-{tag}@test").start(120),
        WorkerProcess(env | {"QFLEET_MODEL_DIR": str(demo_model)}, tmp_path / "canary.log",
                      hostname=f"canary-{tag}@test", queues="qfleet.generate.canary").start(120),
    ]  # fmt: skip
    settings = Settings(broker_url=env["QFLEET_BROKER_URL"], redis_key_prefix=clean_records)
    try:
        with FleetClient(settings) as fleet:
            KnowledgeClient(fleet).ingest(
                IngestJob(
                    documents=[
                        KnowledgeDocument(
                            source_url=SOURCE, version="v1",
                            text="The Freedonia office gateway listens on port 8080. "
                            "Visitors sign in at reception.",
                        ),
                        KnowledgeDocument(source_url="kb://canteen", text="Lunch is at noon."),
                    ]
                )
            )  # fmt: skip
            # When: two questions are answered with retrieval on live and judged wrong
            asked = [
                fleet.submit({"prompt": q, "max_tokens": 8, "retrieval": {"top_k": 2}})
                for q in (IN_KB, NOT_IN_KB)
            ]
            for job_id in asked:
                fleet.wait(job_id, timeout=120)
        for job_id, right in zip(asked, ("8080", "At 4 pm"), strict=True):
            done = run_cli(["feedback", job_id, "--verdict", "wrong", "--correction", right], env)
            assert done.returncode == 0, done.stderr

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
        run = run_cli(
            ["eval", "run", str(data / "eval.jsonl"), "--target", "canary", "--json"], env,
            timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)
        # Then: the demo model answered (the generate step went to the canary) and the
        # retrieval of the answerable question hit its source
        assert report["models"] == ["qwen2.5-coder-0.5b-instruct-int8-demo-v1"]
        scored = {item["id"]: item for item in report["items"]}
        assert scored[asked[0]]["scores"]["hit_at_k"] == 1.0
        assert scored[asked[0]]["scores"]["stale_citations"] == 0.0
        print(report["metrics"], [i["output"] for i in report["items"]])
    finally:
        for worker in workers:
            worker.stop()
