"""The quickstart demo: start a worker, send real jobs through Redis, print the answers.

python -m ops.demo --tiny        # the tiny random-weight test model (answers are noise)
python -m ops.demo --model-dir D # any converted model folder
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ops.localfleet import WorkerProcess
from producer.client import FleetClient
from tasks.schemas import GenerateJob, JobResult
from tasks.settings import Settings

DEMO_JOBS = [
    GenerateJob(prompt="Give me one sentence about job queues.", max_tokens=48),
    GenerateJob(
        system="You are a careful math tutor.",
        prompt="Solve 2x + 5 = 17 step by step.",
        max_tokens=160,
    ),
    GenerateJob(
        prompt='Return only a JSON object {"city": ..., "country": ...} for Paris.', max_tokens=48
    ),
]


def _model_dir(args: argparse.Namespace) -> Path:
    if args.model_dir:
        return Path(args.model_dir)
    from workers.engine.tiny import ensure_tiny_model

    print("building/using the tiny test model (random weights: its answers are noise)")
    return ensure_tiny_model()


def _show(job: GenerateJob, result: JobResult) -> None:
    print(f"\n>>> {job.prompt}")
    print(result.text.strip())
    t = result.timings
    print(
        f"    [{result.usage.completion_tokens} tokens, {t.tokens_per_s:.1f} tok/s, "
        f"{t.total_ms:.0f} ms end to end, worker {result.worker}, model {result.model.id}]"
    )


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
                ids = [fleet.submit(job) for job in DEMO_JOBS]
                for job, job_id in zip(DEMO_JOBS, ids, strict=True):
                    _show(job, fleet.wait(job_id, timeout=600))
        finally:
            worker.stop()
            print("\nworker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
