"""Screenshot Flower's dashboard for a local fleet with headless Chromium (Debian's `chromium`).

python -m ops.screenshot_flower [--out docs/flower-dashboard.png]   (or ops/screenshot-flower)

Starts two tiny-model workers and Flower (with a throwaway password) under a fresh Redis key
prefix, runs a few jobs, and captures Flower's workers page. Chromium cannot be handed basic-auth
credentials on its command line, so a small loopback proxy adds the Authorization header to each
request it forwards to Flower. Everything started here is stopped, and the prefix's keys removed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.server
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis

from ops.localfleet import REPO_ROOT, WorkerProcess
from ops.services import QfleetService, free_port, start_flower
from qfleet.producer.client import FleetClient
from qfleet.tasks.schemas import GenerateJob
from qfleet.tasks.settings import Settings

REDIS_URL = os.environ.get("QFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    # Flower fills its tables from its API after the page loads: let that finish.
    "--virtual-time-budget=8000",
]


def _proxy_handler(target: str, authorization: str) -> type[http.server.BaseHTTPRequestHandler]:
    class AuthProxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            request = urllib.request.Request(target + self.path)
            request.add_header("Authorization", authorization)
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, headers, body = response.status, response.headers, response.read()
            except urllib.error.HTTPError as exc:
                status, headers, body = exc.code, exc.headers, exc.read()
            self.send_response(status)
            self.send_header("Content-Type", headers.get("Content-Type", "text/html"))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the terminal quiet

    return AuthProxy


@contextlib.contextmanager
def auth_proxy(target: str, user: str, password: str) -> Iterator[str]:
    """A loopback HTTP proxy to `target` that adds basic-auth credentials; yields its URL."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", free_port()), _proxy_handler(target, f"Basic {token}")
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def screenshot(url: str, out: Path, size: str) -> None:
    """Capture `url` into the PNG `out` with headless Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={size}",
                f"--screenshot={out.resolve()}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def _run_jobs(env: dict[str, str], count: int) -> None:
    settings = Settings(
        broker_url=env["QFLEET_BROKER_URL"], redis_key_prefix=env["QFLEET_REDIS_KEY_PREFIX"]
    )
    with FleetClient(settings) as fleet:
        ids = [fleet.submit(GenerateJob(prompt=f"Job {n}", max_tokens=8)) for n in range(count)]
        for job_id in ids:
            fleet.wait(job_id, timeout=60)


def main() -> None:
    """Start a local fleet and Flower, run jobs, and screenshot Flower's dashboard."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "flower-dashboard.png")
    parser.add_argument("--size", default="1280,560", help="Window size WIDTH,HEIGHT.")
    parser.add_argument("--jobs", type=int, default=12, help="Jobs to run before the capture.")
    args = parser.parse_args()

    from qfleet.workers.engine.tiny import ensure_tiny_model

    prefix = f"qfleet-screenshot-{uuid.uuid4().hex[:8]}:"
    password = secrets.token_urlsafe(16)
    env = {
        "QFLEET_BROKER_URL": REDIS_URL,
        "QFLEET_REDIS_KEY_PREFIX": prefix,
        "QFLEET_MODEL_DIR": str(ensure_tiny_model()),
        "QFLEET_CPU_THREADS": "1",
        "QFLEET_FLOWER_USER": "operator",
        "QFLEET_FLOWER_PASSWORD": password,
    }
    logs = Path(tempfile.mkdtemp(prefix="qfleet-screenshot-"))
    started: list[WorkerProcess | QfleetService] = []
    try:
        for name in ("worker-1", "worker-2"):
            started.append(WorkerProcess(env, logs / f"{name}.log", hostname=f"qfleet@{name}"))
            started[-1].start()
        flower = start_flower(env, logs / "flower.log")
        started.append(flower)
        _run_jobs(env, args.jobs)
        with auth_proxy(flower.url, "operator", password) as url:
            screenshot(url + "/workers", args.out, args.size)
        print(f"{args.out} ({args.out.stat().st_size // 1024} KiB); logs in {logs}")
    finally:
        for process in reversed(started):
            process.stop()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


if __name__ == "__main__":
    main()
