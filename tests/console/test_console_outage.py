"""What the console says when things are wrong: no worker, a refused job, Redis down and back.

The gateway runs on a private redis-server (as tests/faults/ do) so that stopping Redis hurts
no other test; no worker is started, so every queue has nobody consuming it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from ops.localfleet import RedisServer
from ops.services import start_gateway
from tests.console.conftest import make_keys, new_page, settings_for, sign_in

pytestmark = pytest.mark.integration

WAIT_MS = 30_000


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def page(
    browser: Browser,
    redis_server: RedisServer,
    fleet_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Page]:
    """A signed-in page of a gateway on the private Redis (and no worker)."""
    env = {**fleet_env, "QFLEET_BROKER_URL": redis_server.url, "QFLEET_REDIS_KEY_PREFIX": ""}
    gateway = start_gateway(env, tmp_path_factory.mktemp("gateway") / "gateway.log")
    admin, _ = make_keys(settings_for(env))
    tab = new_page(browser, gateway.url)
    sign_in(tab, admin)
    yield tab
    tab.close()
    gateway.stop()


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
    schema = {"type": "object", "properties": {"n": {"type": "string", "pattern": "^a+$"}}}
    page.get_by_label("JSON schema").fill(json.dumps(schema))
    # When a chat is sent with it
    page.get_by_label("prompt", exact=True).fill("Give me an object")
    page.get_by_role("button", name="Send").click()
    # Then the page shows the refusal naming the keyword, and nothing is left waiting
    status = page.locator(".status-line")
    expect(status).to_contain_text("Refused", timeout=WAIT_MS)
    expect(status).to_contain_text("pattern")
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
    expect(page.locator("#page-fleet")).not_to_contain_text("Cannot read the fleet")
    expect(page.locator("#page-fleet")).to_contain_text("no worker answered")
