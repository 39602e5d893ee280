"""The gateway's cost: chat completions through HTTP against `FleetClient` on the same worker.

    python -m ops.bench.gateway [--requests 64] [--clients 8] [--tokens 16] [--streams 64]
                                [--rounds 2] [--model-dir DIR] [--strict] [--json]

Starts one real worker (tiny model unless --model-dir names another; answer cache off) and one
real `qfleet gateway` under a key prefix of their own (deleted afterwards). Then, in one run:

1. direct: threads submit `GenerateJob`s with `FleetClient` and poll each result every 10 ms;
2. gateway: the same requests through `POST /v1/chat/completions` with the official `openai` SDK;
   each of the two once with one client (`--latency-requests` in a row: the latency the gateway
   adds) and once with `--clients` at a time (`--requests`: throughput);
3. streams: `--streams` clients at once, each streaming a completion, all checked.

Stages 1 and 2 alternate for `--rounds` rounds so a noisy neighbour hurts both alike. Prints
throughput and p50/p95 latency of each, the throughput ratio at `--clients` (goal >= 0.95) and
the p50 the gateway adds for one client (goal <= 10 ms). The client, the gateway and the worker
share this machine's CPUs, so what the gateway and the SDK spend per request is taken from the
worker here; on a fleet the gateway runs elsewhere. Exits 1 when a stage fails (errors, a
stream without a finish reason); with --strict also when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import openai
import redis

from ops.localfleet import WorkerProcess
from ops.services import QfleetService, start_gateway
from qfleet.producer.client import FleetClient
from qfleet.producer.gateway.keys import KeyStore
from qfleet.tasks.redisconn import PRODUCER_RETRIES, fleet_redis
from qfleet.tasks.schemas import GenerateJob, JobError
from qfleet.tasks.settings import Settings

THROUGHPUT_GOAL = 0.95
ADDED_P50_GOAL_MS = 10.0
POLL_S = 0.01


@dataclass(frozen=True)
class Stage:
    """What one way of asking measured."""

    name: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p95_ms: float

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Fleet:
    """The worker, gateway, settings and key of one bench run."""

    settings: Settings
    gateway: QfleetService
    key: str
    model: str


@contextmanager
def bench_fleet(model_dir: Path, clients: int, broker_url: str, log_dir: Path) -> Iterator[Fleet]:
    """A worker and a gateway under a fresh key prefix; its keys are deleted afterwards."""
    prefix = f"qfleet-gwbench-{uuid.uuid4().hex[:8]}:"
    env = {
        "QFLEET_BROKER_URL": broker_url,
        "QFLEET_REDIS_KEY_PREFIX": prefix,
        "QFLEET_MODEL_DIR": str(model_dir),
        "QFLEET_CPU_THREADS": "1",
        "QFLEET_ANSWER_CACHE_TTL_S": "0",
        "QFLEET_GATEWAY_REQUESTS_PER_MINUTE": "0",
        "QFLEET_GATEWAY_JOBS_IN_FLIGHT": "0",
    }
    settings = Settings(broker_url=broker_url, redis_key_prefix=prefix)
    worker = WorkerProcess(
        env, log_dir / "worker.log", hostname=f"gwbench-{prefix[15:23]}@bench",
        concurrency=clients,
    ).start()  # fmt: skip
    gateway = None
    try:
        gateway = start_gateway(env, log_dir / "gateway.log")
        store = fleet_redis(settings, retries=PRODUCER_RETRIES)
        key, _ = KeyStore(store, prefix).create("bench")
        store.close()
        yield Fleet(settings, gateway, key, model="")
    finally:
        if gateway is not None:
            gateway.stop()
        worker.stop()
        client = redis.Redis.from_url(broker_url)
        for name in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(name)
        client.close()


def _messages(n: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Request {n}: say something about queues."}]


def _timed(name: str, requests: int, clients: int, one: Callable[[int], None]) -> Stage:
    latencies: list[float] = []
    errors = 0

    def run(n: int) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            one(n)
        except Exception as exc:  # a failed request counts; the stage reports it
            errors += 1
            print(f"  {name} request {n} failed: {exc!r}", file=sys.stderr)
            return
        latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(run, range(requests)))
    seconds = time.perf_counter() - started
    ordered = sorted(latencies) or [0.0]
    return Stage(
        name, requests, errors, seconds, statistics.median(ordered),
        ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
    )  # fmt: skip


def direct_stage(fleet: Fleet, requests: int, clients: int, tokens: int) -> Stage:
    """Submit with `FleetClient`, poll each result every 10 ms."""
    with FleetClient(fleet.settings) as client:

        def one(n: int) -> None:
            job_id = client.submit(
                GenerateJob(messages=_messages(n), max_tokens=tokens, temperature=0.0)
            )
            deadline = time.monotonic() + 300
            while (outcome := client.result(job_id)) is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(job_id)
                time.sleep(POLL_S)
            if isinstance(outcome, JobError):
                raise RuntimeError(outcome.message)

        return _timed(f"direct x{clients}", requests, clients, one)


def gateway_stage(fleet: Fleet, requests: int, clients: int, tokens: int) -> Stage:
    """The same requests through the gateway with the official SDK."""
    with openai.OpenAI(
        base_url=fleet.gateway.url + "/v1", api_key=fleet.key, max_retries=0, timeout=300
    ) as sdk:

        def one(n: int) -> None:
            sdk.chat.completions.create(
                model=fleet.model,
                messages=_messages(n),
                max_tokens=tokens,
                temperature=0,  # type: ignore[arg-type]
            )

        return _timed(f"gateway x{clients}", requests, clients, one)


def stream_stage(fleet: Fleet, streams: int, tokens: int) -> Stage:
    """`streams` clients streaming at once; each stream must end with a reason and add up."""
    with openai.OpenAI(
        base_url=fleet.gateway.url + "/v1", api_key=fleet.key, max_retries=0, timeout=600
    ) as sdk:

        def one(n: int) -> None:
            chunks = list(
                sdk.chat.completions.create(
                    model=fleet.model, messages=_messages(n), max_tokens=tokens,  # type: ignore[arg-type]
                    temperature=0, stream=True,
                )
            )  # fmt: skip
            if not chunks or chunks[-1].choices[0].finish_reason not in ("stop", "length"):
                raise RuntimeError(f"stream {n} did not end with a finish reason")

        return _timed(f"streams x{streams}", streams, streams, one)


def run(args: argparse.Namespace) -> tuple[list[Stage], Stage]:
    """Warm up, alternate direct/gateway rounds, then the concurrent streams."""
    from qfleet.workers.engine.tiny import ensure_tiny_model

    model_dir = args.model_dir or ensure_tiny_model()
    broker = os.environ.get("QFLEET_BROKER_URL", "redis://127.0.0.1:6379/0")
    with (
        tempfile.TemporaryDirectory() as logs,
        bench_fleet(model_dir, args.clients, broker, Path(logs)) as fleet,
    ):
        with openai.OpenAI(base_url=fleet.gateway.url + "/v1", api_key=fleet.key) as sdk:
            fleet.model = sdk.models.list().data[0].id
        direct_stage(fleet, args.clients, args.clients, args.tokens)  # warm-up of both paths
        gateway_stage(fleet, args.clients, args.clients, args.tokens)
        rounds = []
        for _ in range(args.rounds):
            for clients, requests in ((1, args.latency_requests), (args.clients, args.requests)):
                for stage in (direct_stage, gateway_stage):
                    rounds.append(stage(fleet, requests, clients, args.tokens))
        streams = stream_stage(fleet, args.streams, args.tokens)
    return rounds, streams


def _merge(rounds: list[Stage], name: str) -> Stage:
    mine = [r for r in rounds if r.name == name]
    return Stage(
        name, sum(r.requests for r in mine), sum(r.errors for r in mine),
        sum(r.seconds for r in mine), statistics.median(r.p50_ms for r in mine),
        statistics.median(r.p95_ms for r in mine),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 when a stage failed (or, with --strict, missed its goal)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=64, help="Requests per round [64].")
    parser.add_argument("--clients", type=int, default=8, help="Concurrent clients [8].")
    parser.add_argument(
        "--latency-requests", type=int, default=24, help="One-client requests per round [24]."
    )
    parser.add_argument("--tokens", type=int, default=16, help="max_tokens per request [16].")
    parser.add_argument("--streams", type=int, default=64, help="Concurrent streams [64].")
    parser.add_argument("--rounds", type=int, default=2, help="Direct/gateway rounds [2].")
    parser.add_argument("--model-dir", type=Path, help="Model folder [the tiny test model].")
    parser.add_argument("--strict", action="store_true", help="Exit 1 when a goal is missed.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args(argv)
    rounds, streams = run(args)
    direct, gateway = (
        _merge(rounds, f"direct x{args.clients}"),
        _merge(rounds, f"gateway x{args.clients}"),
    )
    direct1, gateway1 = _merge(rounds, "direct x1"), _merge(rounds, "gateway x1")
    ratio = gateway.per_s / direct.per_s if direct.per_s else 0.0
    added = gateway1.p50_ms - direct1.p50_ms
    failed = sum(r.errors for r in rounds) + streams.errors > 0
    missed = ratio < THROUGHPUT_GOAL or added > ADDED_P50_GOAL_MS
    if args.json:
        figures = {"rounds": [asdict(r) for r in rounds], "streams": asdict(streams),
                   "merged": [asdict(m) for m in (direct1, gateway1, direct, gateway)],
                   "throughput_ratio": ratio, "added_p50_ms": added}  # fmt: skip
        print(json.dumps(figures, indent=2))
    else:
        print(f"{'stage':<18}{'requests':>9}{'errors':>7}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}")
        merged = (direct1, gateway1, direct, gateway)
        for stage in (*rounds, *merged, streams):
            label = f"{stage.name} (all)" if stage in merged else stage.name
            print(f"{label:<18}{stage.requests:>9}{stage.errors:>7}{stage.per_s:>9.2f}"
                  f"{stage.p50_ms:>9.1f}{stage.p95_ms:>9.1f}")  # fmt: skip
        print(f"throughput gateway/direct at {args.clients} clients: {ratio:.3f}x "
              f"(goal >= {THROUGHPUT_GOAL})")  # fmt: skip
        print(f"p50 added by the gateway, one client: {added:+.1f} ms "
              f"(goal <= {ADDED_P50_GOAL_MS:g} ms)")  # fmt: skip
        print(f"{streams.requests} concurrent streams: {streams.errors} errors")
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
