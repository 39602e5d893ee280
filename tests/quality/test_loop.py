"""The whole quality loop with real workers: jobs → feedback → export → eval A vs B → the gate.

Model A is the tiny test model (random weights: wrong on everything), model B the demo Qwen
model (right on most of these questions). A serves the live queues, B the canary queues.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.localfleet import WorkerProcess, run_cli
from qfleet.producer.client import FleetClient
from qfleet.tasks.settings import Settings

pytestmark = pytest.mark.timeout(900)

SYSTEM = "Answer with one word only."
QUESTIONS = {
    "What is the capital of France?": "Paris",
    "What is the capital of Japan?": "Tokyo",
    "What colour is the sky on a clear day?": "Blue",
    "What is 2 + 3? Answer with a number.": "5",
}
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "city": {"type": "string", "maxLength": 40},
    },
    "required": ["name", "city"],
}
DOCUMENT = "Ada Lovelace lives in London and writes programs for the Analytical Engine."
LIVE = "qfleet.generate,qfleet.extract"
CANARY = "qfleet.generate.canary,qfleet.extract.canary"


@pytest.fixture(scope="module")
def env(fleet_env: dict[str, str], records_url: str, clean_records: str) -> dict[str, str]:
    return fleet_env | {"QFLEET_RECORDS": "on", "QFLEET_RECORDS_URL": records_url}


def start(env: dict[str, str], model: Path, queues: str, log_dir: Path, name: str) -> WorkerProcess:
    log = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
    worker_env = env | {"QFLEET_MODEL_DIR": str(model)}
    hostname = f"{name}-{uuid.uuid4().hex[:6]}@test"
    return WorkerProcess(worker_env, log, hostname=hostname, queues=queues).start(120)


@pytest.fixture(scope="module")
def client(env: dict[str, str]) -> Iterator[FleetClient]:
    settings = Settings(
        broker_url=env["QFLEET_BROKER_URL"], redis_key_prefix=env["QFLEET_REDIS_KEY_PREFIX"]
    )
    fleet = FleetClient(settings)
    yield fleet
    fleet.close()


def cli(env: dict[str, str], *args: str, code: int = 0) -> str:
    done = run_cli(list(args), env, timeout=600)
    assert done.returncode == code, f"qfleet {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout


@contextlib.contextmanager
def serving(env: dict[str, str], live: Path, canary: Path, log_dir: Path) -> Iterator[None]:
    """One worker with model `live` on the live queues, one with `canary` on the canaries."""
    workers = [start(env, live, LIVE, log_dir, "live")]
    try:
        workers.append(start(env, canary, CANARY, log_dir, "canary"))
        yield
    finally:
        for worker in workers:
            worker.stop()


def judge_live_jobs(env: dict[str, str], client: FleetClient) -> None:
    # When: users ask questions and extract a record on live, and judge the answers
    asked = {q: client.submit({"prompt": q, "system": SYSTEM, "max_tokens": 8}) for q in QUESTIONS}
    extract = client.submit(
        {"kind": "extract", "json_schema": SCHEMA, "max_tokens": 48,
         "documents": [{"id": "d1", "text": DOCUMENT}]}
    )  # fmt: skip
    for job_id in [*asked.values(), extract]:
        client.wait(job_id, timeout=300)
    for question, job_id in asked.items():
        cli(env, "feedback", job_id, "--verdict", "wrong", "--correction", QUESTIONS[question])
    bad = json.dumps({"name": "Ada Lovelace", "city": 7})
    # Then: a correction that breaks the job's schema is refused (exit 6), a valid one kept
    cli(env, "feedback", extract, "--verdict", "wrong", "--correction", bad, code=6)
    good = json.dumps({"name": "Ada Lovelace", "city": "London"})
    cli(env, "feedback", extract, "--verdict", "wrong", "--correction", good)
    # ... and each record holds its input, the prompt, the model, the queue and the feedback
    shown = json.loads(cli(env, "records", "show", extract))
    assert shown["model_id"] == "qfleet-tiny-qwen2-v2"
    assert shown["queue"] == "qfleet.extract"
    assert shown["input"]["json_schema"]["properties"] == SCHEMA["properties"]
    assert "Ada Lovelace" in shown["prompts"][0][-1]["content"]
    assert shown["feedback"]["correction"] == {"d1": json.loads(good)}


def export_and_score(env: dict[str, str], tmp_path: Path) -> tuple[Path, Path, Path]:
    # When: the judged records are exported
    data = tmp_path / "data"
    counts = json.loads(cli(env, "dataset", "export", str(data), "--json"))
    # Then: five evaluation items and five ChatML examples with the corrected answers
    assert (counts["eval_items"], counts["sft_examples"]) == (5, 5)
    sft = [json.loads(x) for x in (data / "sft.jsonl").read_text().splitlines()]
    assert {s["messages"][-1]["content"] for s in sft} >= set(QUESTIONS.values())
    # When: the set is scored on live (A) and on the canary (B), and the runs compared
    eval_set, a, b = data / "eval.jsonl", tmp_path / "a.json", tmp_path / "b.json"
    cli(env, "eval", "run", str(eval_set), "--name", "tiny", "--out", str(a))
    table = cli(env, "eval", "run", str(eval_set), "--target", "canary", "--name", "demo",
                "--out", str(b))  # fmt: skip
    diff = json.loads(cli(env, "eval", "compare", str(a), str(b), "--json"))
    print(table, diff)  # the figures in docs/quality.md (pytest -s)
    # Then: B answers more items right, and the table has language and schema slices
    assert diff["score_b"] >= diff["score_a"] + 0.5, diff
    assert diff["better"]
    assert not diff["worse"]
    assert "language" in table
    assert "schema" in table
    return eval_set, a, b


def test_feedback_export_eval_and_gate(
    env: dict[str, str], client: FleetClient, tiny_model: Path, demo_model: Path, tmp_path: Path
) -> None:
    # Given: the tiny model (A) serves live traffic, the demo model (B) the canary queues
    with serving(env, tiny_model, demo_model, tmp_path):
        judge_live_jobs(env, client)
        eval_set, a, b = export_and_score(env, tmp_path)
        # When: B is staged as a model rotation and the gate is asked to promote it
        cli(env, "gate", "stage", "demo-rotation", "--description", "demo model on canary")
        cli(env, "gate", "evaluate", "demo-rotation",
            "--live-report", str(a), "--candidate-report", str(b))  # fmt: skip
        # Then: it is promoted
        promoted = json.loads(cli(env, "gate", "promote", "demo-rotation", "--json"))
        assert promoted["state"] == "promoted"

    # Given: the rotation is rolled out (B on live) and A comes back as a candidate
    with serving(env, demo_model, tiny_model, tmp_path):
        cli(env, "gate", "stage", "tiny-rotation")
        # When: the gate evaluates live against the candidate on the same set
        cli(env, "gate", "evaluate", "tiny-rotation", str(eval_set))
        # Then: the promotion is refused (exit 7) and the refusal is kept
        cli(env, "gate", "promote", "tiny-rotation", code=7)
    states = {r["name"]: r["state"] for r in json.loads(cli(env, "gate", "status", "--json"))}
    assert states == {"demo-rotation": "promoted", "tiny-rotation": "refused"}
    rolled = json.loads(cli(env, "gate", "rollback", "tiny-rotation", "--json"))
    assert rolled["state"] == "rolled_back"
