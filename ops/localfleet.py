"""Local fleets: real worker processes started and stopped by tests, the demo and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def qfleet_env(settings_env: Mapping[str, str]) -> dict[str, str]:
    """The environment for a qfleet subprocess: ours minus QFLEET_*, plus `settings_env`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QFLEET_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings_env)
    return env


class ChildProcess:
    """A qfleet child process with its output captured to a log file, always stopped."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = args
        self.env = qfleet_env(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def _launch(self, ready: Callable[[], bool], timeout: float, name: str, poll: float) -> None:
        """Start the process and wait until `ready()`; raise with its log if it never is."""
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args, cwd=REPO_ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} not ready after {timeout}s:\n{self.log()}")
            time.sleep(poll)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """What the process printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (a warm shutdown for a worker), then SIGKILL if it does not stop in time."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return self.process.returncode


class WorkerProcess(ChildProcess):
    """A `celery -A qfleet.workers.main worker` child process with its log captured to a file."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        hostname: str,
        queues: str = "qfleet.generate",
        pool: str = "threads",
        concurrency: int = 2,
    ) -> None:
        args = [
            sys.executable, "-m", "celery", "-A", "qfleet.workers.main", "worker",
            f"--pool={pool}", f"--concurrency={concurrency}", f"--queues={queues}",
            f"--hostname={hostname}", "--loglevel=INFO", "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        super().__init__(args, env, log_path)
        self.hostname = hostname

    def start(self, ready_timeout: float = 60.0) -> WorkerProcess:
        """Start the worker and wait until it consumes."""
        self._launch(lambda: " ready." in self.log(), ready_timeout, "worker", poll=0.1)
        return self


class Supervisor:
    """Keeps one worker running: restarts it when it died, as systemd's Restart=always or a
    Kubernetes Deployment would. Call `keep_alive()` while waiting on the fleet."""

    def __init__(self, env: Mapping[str, str], log_dir: Path, *, name: str, **worker: Any) -> None:
        self.env, self.log_dir, self.name, self.options = env, log_dir, name, worker
        self.starts = 0
        self.worker = self._start()

    def _start(self) -> WorkerProcess:
        self.starts += 1
        log = self.log_dir / f"{self.name}-{self.starts}.log"
        hostname = f"{self.name}{self.starts}@test"
        return WorkerProcess(self.env, log, hostname=hostname, **self.options).start()

    def keep_alive(self) -> None:
        """Start a new worker if the current one has exited."""
        if not self.worker.alive():
            self.worker.stop()  # reaps the process and closes its log
            self.worker = self._start()

    def logs(self) -> list[str]:
        """The logs of every worker started so far."""
        return [
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob(f"{self.name}-*.log"))
        ]

    def stop(self) -> None:
        """Stop the current worker."""
        self.worker.stop()


def run_cli(
    args: list[str], env: Mapping[str, str], timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run `qfleet ARGS` as a user would, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "qfleet.producer.cli", *args],
        cwd=REPO_ROOT,
        env=qfleet_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private redis-server on loopback (AOF on), for tests that restart or lock down Redis."""

    def __init__(
        self, data_dir: Path, *, port: int | None = None, password: str | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start (or restart) the server on the same port and data folder."""
        import redis

        self.data_dir.mkdir(parents=True, exist_ok=True)
        # AOF fsynced every second: the production default, and what a crash can lose (a second).
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                "--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", "everysec",
                "--save", "", "--logfile", str(self.data_dir / "redis.log")]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args)
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                client.close()
                return self
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server, as a crash or an OOM kill would: no final fsync of the AOF."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        """Shut the server down the way an operator's restart does (AOF is fsynced)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None
