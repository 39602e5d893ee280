"""Flower and the queue exporter as child processes, beside the workers of `ops.localfleet`.

Used by the operations tests and `ops/screenshot-flower`: every listener binds 127.0.0.1 on a
port chosen free at run time, and every process is stopped by the caller (context managers).
"""

from __future__ import annotations

import base64
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from ops.localfleet import ChildProcess, free_port


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


class QfleetService(ChildProcess):
    """`python -m qfleet.producer.cli ARGS` (flower, exporter) running until `stop()`."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path, port: int) -> None:
        super().__init__([sys.executable, "-m", "qfleet.producer.cli", *args], env, log_path)
        self.port = port

    @property
    def url(self) -> str:
        """The service's base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        """The subcommand this process runs."""
        return self.args[3]

    def start(self, ready_path: str, timeout: float = 30.0) -> QfleetService:
        """Start the process and wait until `ready_path` answers (any HTTP status)."""
        self._launch(lambda: self._answers(ready_path), timeout, self.name, poll=0.2)
        return self

    def _answers(self, path: str) -> bool:
        try:
            http_get(self.url + path, timeout=2)
        except OSError:
            return False
        return True

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it lingers."""
        return super().stop(timeout)


def start_flower(env: Mapping[str, str], log_path: Path) -> QfleetService:
    """`qfleet flower` on a free loopback port (credentials from QFLEET_FLOWER_* in `env`)."""
    port = free_port()
    return QfleetService(["flower", f"--port={port}"], env, log_path, port).start("/healthcheck")


def start_exporter(env: Mapping[str, str], log_path: Path) -> QfleetService:
    """`qfleet exporter` on a free loopback port."""
    port = free_port()
    return QfleetService(["exporter", f"--port={port}"], env, log_path, port).start("/metrics")


def start_gateway(env: Mapping[str, str], log_path: Path) -> QfleetService:
    """`qfleet gateway` on a free loopback port."""
    port = free_port()
    return QfleetService(["gateway", f"--port={port}"], env, log_path, port).start("/healthz")


class BatchRunnerProcess(ChildProcess):
    """`qfleet batch-runner` (follows the gateway's batches) running until `stop()`."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        super().__init__(
            [sys.executable, "-m", "qfleet.producer.cli", "batch-runner"], env, log_path
        )

    def start(self, timeout: float = 30.0) -> BatchRunnerProcess:
        """Start the runner and wait until its loop runs."""
        self._launch(lambda: "batch runner started" in self.log(), timeout, "batch-runner", 0.1)
        return self


def start_batch_runner(env: Mapping[str, str], log_path: Path) -> BatchRunnerProcess:
    """`qfleet batch-runner` for the fleet `env` describes."""
    return BatchRunnerProcess(env, log_path).start()
