"""Flower and the queue exporter as child processes, beside the workers of `ops.localfleet`.

Used by the operations tests and `ops/screenshot-flower`: every listener binds 127.0.0.1 on a
port chosen free at run time, and every process is stopped by the caller (context managers).
"""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from ops.localfleet import REPO_ROOT, qfleet_env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_port_range(count: int, attempts: int = 50) -> int:
    """The first of `count` consecutive free loopback ports (prefork child i uses base + i)."""
    for _ in range(attempts):
        base = free_port()
        if base + count <= 65_535 and all(_is_free(base + i) for i in range(1, count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found")


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def http_get(
    url: str, *, user: str | None = None, password: str | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    """GET `url` (with basic auth when `user` is given); returns (status, body), errors included."""
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


class QfleetService:
    """`python -m producer.cli ARGS` (flower, exporter) running until `stop()`."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path, port: int) -> None:
        self.args = [sys.executable, "-m", "producer.cli", *args]
        self.env = qfleet_env(env)
        self.log_path = log_path
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The service's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str, timeout: float = 30.0) -> QfleetService:
        """Start the process and wait until `ready_path` answers (any HTTP status)."""
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args, cwd=REPO_ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while not self._answers(ready_path):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log()}")
            time.sleep(0.2)
        return self

    @property
    def name(self) -> str:
        """The subcommand this process runs."""
        return self.args[3]

    def _answers(self, path: str) -> bool:
        try:
            http_get(self.url + path, timeout=2)
        except OSError:
            return False
        return True

    def log(self) -> str:
        """What the process printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


def start_flower(env: Mapping[str, str], log_path: Path) -> QfleetService:
    """`qfleet flower` on a free loopback port (credentials from QFLEET_FLOWER_* in `env`)."""
    port = free_port()
    return QfleetService(["flower", f"--port={port}"], env, log_path, port).start("/healthcheck")


def start_exporter(env: Mapping[str, str], log_path: Path) -> QfleetService:
    """`qfleet exporter` on a free loopback port."""
    port = free_port()
    return QfleetService(["exporter", f"--port={port}"], env, log_path, port).start("/metrics")
