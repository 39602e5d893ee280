"""What the console says when things are wrong: no worker, a refused job, Redis down and back.

The gateway runs on a private redis-server (as tests/faults/ do) so that stopping Redis hurts
no other test; no worker is started, so every queue has nobody consuming it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from ops.localfleet import RedisServer
from ops.services import start_gateway
from qfleet.producer.gateway.console.owners import GW_RUN_KEY
from qfleet.producer.gateway.tenancy import OWNER_KEY
from qfleet.tasks.constants import RUN_KEY
from qfleet.tasks.deadletters import DeadLetter, DeadLetterStore
from qfleet.tasks.redisconn import PRODUCER_RETRIES, fleet_redis
from tests.console.conftest import Console, make_keys, new_page, settings_for, sign_in

pytestmark = pytest.mark.integration

WAIT_MS = 30_000


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def console(
    redis_server: RedisServer, fleet_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    """A gateway on the private Redis (and no worker)."""
    env = {**fleet_env, "QFLEET_BROKER_URL": redis_server.url, "QFLEET_REDIS_KEY_PREFIX": ""}
    gateway = start_gateway(env, tmp_path_factory.mktemp("gateway") / "gateway.log")
    settings = settings_for(env)
    admin, tenant = make_keys(settings)
    yield Console(url=gateway.url, admin_key=admin, tenant_key=tenant, settings=settings)
    gateway.stop()


@pytest.fixture(scope="module")
def page(browser: Browser, console: Console) -> Iterator[Page]:
    """The console signed in with the admin key."""
    tab = new_page(browser, console.url)
    sign_in(tab, console.admin_key)
    yield tab
    tab.close()


def call(console: Console, path: str, key: str | None, method: str = "GET") -> tuple[int, Any]:
    """One console API call: status and JSON body (the CSP header is checked on every one)."""
    request = urllib.request.Request(console.url + "/console/api" + path, method=method)
    if key is not None:
        request.add_header("authorization", f"Bearer {key}")
    if method == "POST":
        request.add_header("content-type", "application/json")
        request.data = json.dumps({"source_url": "kb://x", "version": "1"}).encode()
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, headers, body = exc.code, exc.headers, exc.read()
    assert "script-src 'self'" in headers["content-security-policy"]
    return int(status), json.loads(body)


def test_each_tenant_sees_its_own_runs_and_letters(console: Console) -> None:
    # Given a run and a dead letter of tenant acme, and a run and a letter nobody owns (CLI)
    redis = fleet_redis(console.settings, retries=PRODUCER_RETRIES)
    for run_id in ("acme-run", "cli-run"):
        spec = {"run_id": run_id, "input": "/in.jsonl", "output": "/out.jsonl",
                "errors": "/err.jsonl"}  # fmt: skip
        # The fields a run's follower publishes (producer.runs).
        redis.hset(RUN_KEY.format(run_id=run_id), mapping={
            "spec": json.dumps(spec), "status": "finished", "total": "3", "done": "3",
            "failed": "0", "updated_at": str(time.time()),
        })  # fmt: skip
    redis.set(GW_RUN_KEY.format(run_id="acme-run"), "acme")
    store = DeadLetterStore(redis)
    for job_id in ("acme-letter", "cli-letter"):
        letter = DeadLetter(
            job_id=job_id, task="qfleet.generate", queue="qfleet.generate", payload={},
            error_code="boom", error_message="x", attempts=1,
        )  # fmt: skip
        store.add(letter)
    redis.set(OWNER_KEY.format(job_id="acme-letter"), "acme")
    redis.close()
    # When each key lists them, Then the tenant sees its own only and the admin sees all
    ids = lambda rows, field: sorted(row[field] for row in rows)  # noqa: E731
    assert ids(call(console, "/runs", console.tenant_key)[1], "run_id") == ["acme-run"]
    assert ids(call(console, "/runs", console.admin_key)[1], "run_id") == ["acme-run", "cli-run"]
    letters = call(console, "/deadletters", console.tenant_key)[1]
    assert ids(letters, "job_id") == ["acme-letter"]
    assert len(call(console, "/deadletters", console.admin_key)[1]) == 2
    # And another tenant's (or nobody's) things answer 404, changes to shared state need admin
    assert call(console, "/runs/cli-run", console.tenant_key)[0] == 404
    assert call(console, "/deadletters/cli-letter", console.tenant_key)[0] == 404
    assert call(console, "/deadletters/purge", console.tenant_key, "POST")[0] == 403
    assert call(console, "/kb/rollback", console.tenant_key, "POST")[0] == 403
    status, body = call(console, "/fleet", None)
    assert status == 401
    assert body["error"]["code"] == "missing_api_key"


def test_no_worker_for_a_queue_is_named(page: Page) -> None:
    # Given a fleet with no worker at all
    fleet = page.locator("#page-fleet")
    # Then the Fleet page says so, and names each queue nobody consumes
    expect(fleet).to_contain_text("no worker answered", timeout=WAIT_MS)
    expect(fleet).to_contain_text("no worker consumes qfleet.generate")
    # When a chat is sent anyway, Then the page says where it waits, not a spinner
    page.evaluate("location.hash = '#playground'")
    page.get_by_label("prompt", exact=True).fill("Is anyone there?")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".status-line")).to_contain_text(
        "no worker consumes qfleet.generate", timeout=WAIT_MS
    )
    # And Stop cancels the waiting job
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".status-line")).to_contain_text("cancelled")


def test_a_refused_job_shows_why(page: Page) -> None:
    # Given a JSON schema the schema-guided decoder does not support
    page.evaluate("location.hash = '#playground'")
    schema = {"type": "object", "patternProperties": {"^a": {"type": "string"}}}
    page.get_by_label("JSON schema").fill(json.dumps(schema))
    # When a chat is sent with it
    page.get_by_label("prompt", exact=True).fill("Give me an object")
    page.get_by_role("button", name="Send").click()
    # Then the page shows the refusal naming the keyword, and nothing is left waiting
    status = page.locator(".status-line")
    expect(status).to_contain_text("Refused", timeout=WAIT_MS)
    expect(status).to_contain_text("patternProperties")
    expect(page.locator(".msg.assistant").last).to_have_attribute("data-state", "failed")


def test_redis_outage_is_shown_and_the_page_recovers(
    page: Page, redis_server: RedisServer, screenshots: Path
) -> None:
    # Given the Fleet page, live
    page.evaluate("location.hash = '#fleet'")
    expect(page.locator("#page-fleet")).to_contain_text("qfleet.generate", timeout=WAIT_MS)
    # When Redis stops
    redis_server.stop()
    # Then the page names the outage and where Redis is, not a spinner
    outage = page.locator("#outage")
    expect(outage).to_be_visible(timeout=WAIT_MS)
    expect(outage).to_contain_text(f"Redis at {redis_server.url} does not answer")
    expect(page.locator("#page-fleet")).to_contain_text("Cannot read the fleet")
    page.screenshot(path=screenshots / "outage.png", full_page=True)
    # When Redis is back, Then the banner goes and the fleet is read again
    redis_server.start()
    expect(outage).to_be_hidden(timeout=WAIT_MS)
    # (the fleet read can fail on a stale pooled broker connection for a refresh or two more)
    expect(page.locator("#page-fleet")).not_to_contain_text(
        "Cannot read the fleet", timeout=WAIT_MS
    )
    expect(page.locator("#page-fleet")).to_contain_text("no worker answered")
