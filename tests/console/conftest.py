"""The console in a real headless Chromium against a real gateway, Redis and workers.

The browser is Debian's `chromium` package driven by Playwright (never `playwright install`,
which downloads a browser build): `.ci/run` installs it when /usr/bin/chromium is missing.
Screenshots of each page land in docs/console/ (set CONSOLE_SCREENSHOTS_DIR to put them
elsewhere), so the README's pictures are the ones the tests last took.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops.localfleet import REPO_ROOT, WorkerProcess
from ops.services import QfleetService, start_gateway
from qfleet.producer.gateway.keys import KeyStore
from qfleet.tasks.redisconn import PRODUCER_RETRIES, fleet_redis
from qfleet.tasks.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
VIEWPORT = {"width": 1360, "height": 900}


@dataclass
class Console:
    """A gateway serving the console, and keys to sign in with."""

    url: str
    admin_key: str
    tenant_key: str
    settings: Settings


def settings_for(env: dict[str, str]) -> Settings:
    """The Settings a producer of this fleet uses."""
    return Settings(
        broker_url=env["QFLEET_BROKER_URL"], redis_key_prefix=env["QFLEET_REDIS_KEY_PREFIX"]
    )


def make_keys(settings: Settings) -> tuple[str, str]:
    """An admin key and a key of tenant `acme`."""
    redis = fleet_redis(settings, retries=PRODUCER_RETRIES)
    try:
        store = KeyStore(redis, settings.redis_key_prefix)
        admin, _ = store.create("ops", name="console tests", admin=True)
        tenant, _ = store.create("acme", name="console tests")
    finally:
        redis.close()
    return admin, tenant


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's headless Chromium under Playwright; fails (never skips) when it is missing.

    Module-scoped: Playwright's sync API keeps an event loop running in this thread while it is
    open, and later tests that run their own loop (asyncio.run) must not find it.
    """
    if not CHROMIUM.is_file():
        pytest.fail("no /usr/bin/chromium: apt-get install -y chromium chromium-driver")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where page screenshots go (docs/console/ unless CONSOLE_SCREENSHOTS_DIR says otherwise)."""
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS_DIR") or REPO_ROOT / "docs" / "console")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def embedder_dir() -> Path:
    """The default embedder (as tests/knowledge use it), converted once and cached."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from qfleet.workers.knowledge.embedder_build import ensure_embedder_model

    return ensure_embedder_model()


@pytest.fixture(scope="module")
def kb_fleet_env(
    fleet_env: dict[str, str], embedder_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """This module's fleet with a knowledge base (the real embedder, small chunks)."""
    return {
        **fleet_env,
        "QFLEET_KB_DIR": str(tmp_path_factory.mktemp("kb")),
        "QFLEET_EMBEDDER_DIR": str(embedder_dir),
        "QFLEET_CHUNK_TOKENS": "64",
        "QFLEET_CHUNK_OVERLAP_TOKENS": "8",
    }


@pytest.fixture(scope="module")
def workers(
    kb_fleet_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[WorkerProcess]]:
    """A generation worker (generate, extract) and the knowledge base's owner."""
    logs = tmp_path_factory.mktemp("workers")
    kb_env = {k: v for k, v in kb_fleet_env.items() if k != "QFLEET_MODEL_DIR"}
    started: list[WorkerProcess] = []
    try:
        started.append(WorkerProcess(
            kb_fleet_env, logs / "gen.log", hostname=f"gen-{uuid.uuid4().hex[:6]}@console",
            queues="qfleet.generate,qfleet.extract", concurrency=4,
        ).start())  # fmt: skip
        started.append(WorkerProcess(
            kb_env, logs / "kb.log", hostname=f"kb-{uuid.uuid4().hex[:6]}@console",
            queues="qfleet.ingest,qfleet.retrieve",
        ).start())  # fmt: skip
        yield started
    finally:
        for process in started:
            process.stop()


@pytest.fixture(scope="module")
def console(
    kb_fleet_env: dict[str, str],
    workers: list[WorkerProcess],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Console]:
    """`qfleet gateway` for this module's fleet, with an admin key and a tenant's key."""
    del workers  # started first: the pages show them
    gateway: QfleetService = start_gateway(
        kb_fleet_env, tmp_path_factory.mktemp("gateway") / "gateway.log"
    )
    settings = settings_for(kb_fleet_env)
    admin, tenant = make_keys(settings)
    yield Console(url=gateway.url, admin_key=admin, tenant_key=tenant, settings=settings)
    gateway.stop()


def new_page(browser: object, console_url: str) -> object:
    """A fresh tab (its own sessionStorage) at the console's sign-in page."""
    page = browser.new_page(viewport=VIEWPORT)  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.page_errors = errors
    page.goto(console_url + "/console/")
    return page


def sign_in(page: object, key: str) -> None:
    """Sign in with `key` and wait for the navigation to appear."""
    page.fill("#login-key", key)  # type: ignore[attr-defined]
    page.click("#login-form button")  # type: ignore[attr-defined]
    page.wait_for_selector("#nav", state="visible")  # type: ignore[attr-defined]
