"""A bulk run survives its producer or a worker being killed: one line per input id, always."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from ops.localfleet import REPO_ROOT, WorkerProcess, qfleet_env, run_cli

pytestmark = pytest.mark.integration

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 40},
        "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
    },
    "required": ["title", "year", "tags"],
}
ITEMS = 40


@pytest.fixture(scope="module")
def kill_env(fleet_env: dict[str, str]) -> dict[str, str]:
    """Short limits, so a killed worker's unacked jobs are redelivered within seconds."""
    return {
        **fleet_env,
        "QFLEET_TASK_SOFT_TIME_LIMIT_S": "4",
        "QFLEET_TASK_TIME_LIMIT_S": "5",
        "QFLEET_VISIBILITY_TIMEOUT_S": "6",
        "QFLEET_UNACKED_RESTORE_INTERVAL_S": "1",
    }


def _worker(env: dict[str, str], log_dir: Path, name: str) -> WorkerProcess:
    return WorkerProcess(
        env,
        log_dir / f"{name}.log",
        hostname=f"{name}-{uuid.uuid4().hex[:6]}@test",
        queues="qfleet.extract",
        concurrency=1,
    ).start()


@pytest.fixture
def run_files(tmp_path: Path) -> tuple[list[str], Path]:
    """A 40-document extract run's CLI arguments and its output path."""
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "".join(json.dumps({"id": f"d{i}", "text": f"Doc {i}"}) + "\n" for i in range(ITEMS))
    )
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    out = tmp_path / "out.jsonl"
    args = ["run", "submit", str(docs), "--schema", str(schema), "--out", str(out),
            "--batch", "2", "--window", "2", "--max-tokens", "60", "--json",
            "--run-id", f"kill-{uuid.uuid4().hex[:8]}"]  # fmt: skip
    return args, out


def _start_producer(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "qfleet.producer.cli", *args],
        cwd=REPO_ROOT,
        env=qfleet_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for_lines(path: Path, count: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = len(path.read_text().splitlines()) if path.exists() else 0
        if lines >= count:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {count} lines in {timeout}s")


_TASK_LINE = re.compile(r"Task qfleet\.extract\[([^\]]+)\] (received|succeeded)")


def _started(worker: WorkerProcess) -> set[str]:
    return {m[0] for m in _TASK_LINE.findall(worker.log()) if m[1] == "received"}


def _finished(worker: WorkerProcess) -> set[str]:
    return {m[0] for m in _TASK_LINE.findall(worker.log()) if m[1] == "succeeded"}


def _wait_until_busy(worker: WorkerProcess, timeout: float = 30) -> None:
    """Until the worker holds a job it has not finished (so killing it orphans that job)."""
    deadline = time.monotonic() + timeout
    while not _started(worker) - _finished(worker):
        if time.monotonic() > deadline:
            raise AssertionError("the worker never held an unfinished job")
        time.sleep(0.005)


def _ids(path: Path) -> Counter[str]:
    return Counter(json.loads(line)["id"] for line in path.read_text().splitlines())


def test_a_killed_producer_resumes_to_one_line_per_id(
    kill_env: dict[str, str], run_files: tuple[list[str], Path], tmp_path: Path
) -> None:
    args, out = run_files
    worker = _worker(kill_env, tmp_path, "steady")
    try:
        # Given a run under way
        producer = _start_producer(args, kill_env)
        written = _wait_for_lines(out, 6)
        # When its producer is killed mid-way
        producer.send_signal(signal.SIGKILL)
        producer.wait(10)
        assert written < ITEMS
        # And the same command is run again
        resumed = run_cli(args, kill_env, timeout=180)
    finally:
        worker.stop()
    # Then the run finished with exactly one line per input id
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["done"] == ITEMS
    assert _ids(out) == Counter({f"d{i}": 1 for i in range(ITEMS)})


def test_a_killed_worker_resumes_to_one_line_per_id(
    kill_env: dict[str, str], run_files: tuple[list[str], Path], tmp_path: Path
) -> None:
    args, out = run_files
    doomed = _worker(kill_env, tmp_path, "doomed")
    # Given a run under way on one worker
    producer = _start_producer(args, kill_env)
    rescuer = None
    try:
        _wait_for_lines(out, 4)
        _wait_until_busy(doomed)
        # When that worker is killed with SIGKILL (no warm shutdown, its jobs unacknowledged)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.process.wait(10)  # type: ignore[union-attr]
        # And another worker joins
        rescuer = _worker(kill_env, tmp_path, "rescuer")
        returncode = producer.wait(180)
    finally:
        if producer.poll() is None:
            producer.kill()
        if rescuer is not None:
            rescuer.stop()
        doomed.stop()
    # Then the run finished with exactly one line per input id
    assert returncode == 0
    assert _ids(out) == Counter({f"d{i}": 1 for i in range(ITEMS)})
    # And the jobs the killed worker held were run again by the other one
    orphans = _started(doomed) - _finished(doomed)
    assert rescuer is not None
    assert orphans
    assert orphans <= _finished(rescuer)


def test_a_cancelled_run_stops_and_keeps_its_lines(
    kill_env: dict[str, str], run_files: tuple[list[str], Path], tmp_path: Path
) -> None:
    args, out = run_files
    run_id = args[args.index("--run-id") + 1]
    worker = _worker(kill_env, tmp_path, "steady")
    try:
        # Given a run under way
        producer = _start_producer(args, kill_env)
        _wait_for_lines(out, 4)
        # When it is cancelled
        cancelled = run_cli(["run", "cancel", run_id], kill_env)
        returncode = producer.wait(60)
        status = json.loads(run_cli(["run", "status", run_id, "--json"], kill_env).stdout)
        again = run_cli(args, kill_env)
    finally:
        worker.stop()
    # Then its producer stopped before the end, with the lines written so far kept once each
    assert cancelled.returncode == 0, cancelled.stderr
    assert returncode == 1
    assert status["status"] == "cancelled"
    ids = _ids(out)
    assert 4 <= len(ids) < ITEMS
    assert set(ids.values()) == {1}
    # And resubmitting it says it was cancelled rather than running it again
    assert again.returncode == 1
    assert "cancelled" in again.stderr
