"""The quickstart demo: start a worker, send real jobs through Redis, print the answers.

python -m ops.demo               # the demo Qwen model (pulled and converted once if missing)
python -m ops.demo --tiny        # the tiny random-weight test model (answers are noise)
python -m ops.demo --model-dir D # any converted model folder
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ops.localfleet import WorkerProcess
from qfleet.producer.client import FleetClient
from qfleet.tasks.schemas import GenerateJob, JobResult
from qfleet.tasks.settings import Settings

# (title, job): a chat answer, a step-by-step answer and a JSON answer, all greedy.
DEMO_JOBS = [
    (
        "chat",
        GenerateJob(
            prompt="In two sentences: why do web services put slow work on a job queue?",
            max_tokens=96,
        ),
    ),
    (
        "math, step by step",
        GenerateJob(
            system="You are a careful math tutor. Be concise.",
            prompt="Solve 2x + 5 = 17 step by step.",
            max_tokens=320,
        ),
    ),
    (
        "JSON",
        GenerateJob(
            system="You reply with raw JSON only: no prose, no code fences.",
            prompt='Where is the Eiffel Tower? Answer as {"city": ..., "country": ...}.',
            max_tokens=48,
        ),
    ),
]


def _model_dir(args: argparse.Namespace) -> Path:
    if args.model_dir:
        return Path(args.model_dir)
    if args.tiny:
        from qfleet.workers.engine.tiny import ensure_tiny_model

        print("building/using the tiny test model (random weights: its answers are noise)")
        return ensure_tiny_model()
    from qfleet.workers.engine.demo_model import ensure_demo_model

    print("using the demo model Qwen2.5-Coder-0.5B-Instruct (fetched and converted on first use)")
    return ensure_demo_model(progress=print)


def _show(title: str, job: GenerateJob, result: JobResult) -> None:
    print(f"\n>>> [{title}] {job.prompt}")
    print(result.text.strip())
    if title == "JSON":
        print(f"    (parses as JSON: {_is_json(result.text)})")
    t = result.timings
    print(
        f"    [{result.usage.completion_tokens} tokens, {t.tokens_per_s:.1f} tok/s, "
        f"{t.total_ms:.0f} ms end to end, worker {result.worker}, model {result.model.id}]"
    )


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tiny", action="store_true", help="use the tiny test model")
    parser.add_argument("--model-dir", help="a converted CTranslate2 model folder")
    args = parser.parse_args(argv)
    model_dir = _model_dir(args)
    broker = os.environ.get("QFLEET_BROKER_URL", "redis://127.0.0.1:6379/0")
    prefix = f"qfleet-demo-{uuid.uuid4().hex[:8]}:"
    env = {"QFLEET_BROKER_URL": broker, "QFLEET_REDIS_KEY_PREFIX": prefix,
           "QFLEET_MODEL_DIR": str(model_dir)}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "worker.log"
        print(f"starting a worker process for {model_dir} ...")
        started = time.perf_counter()
        worker = WorkerProcess(env, log, hostname="demo@%h").start(ready_timeout=300)
        print(f"worker ready in {time.perf_counter() - started:.1f}s (pid {worker.pid})")
        try:
            with FleetClient(Settings(broker_url=broker, redis_key_prefix=prefix)) as fleet:
                # One at a time, so each answer shows as soon as it is ready, with its own speed.
                for title, job in DEMO_JOBS:
                    _show(title, job, fleet.wait(fleet.submit(job), timeout=600))
        finally:
            worker.stop()
            print("\nworker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
