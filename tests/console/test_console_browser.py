"""The console driven in headless Chromium: sign in, runs, dead letters, knowledge, playground.

One fleet for the module: a generation worker (tiny model), the knowledge base's owner (real
embedder) and a `qfleet gateway`; each test drives the page as a person would and checks what
the page shows against what the fleet did.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from ops.localfleet import REPO_ROOT, WorkerProcess, qfleet_env
from qfleet.producer.client import FleetClient
from qfleet.producer.knowledge import KnowledgeClient
from qfleet.tasks.constants import ATTEMPTS_KEY, QUEUE_GENERATE, RUN_LEASE_S
from qfleet.tasks.deadletters import DeadLetter
from qfleet.tasks.knowledge import IngestJob, KnowledgeDocument
from qfleet.tasks.schemas import GenerateJob, JobResult
from tests.console.conftest import Console, new_page, sign_in

pytestmark = pytest.mark.integration

WAIT_MS = 60_000
SOURCE = "kb://handbook/office"
QUESTION = "Which port does the Freedonia office gateway listen on?"
# Would run script or add an element if any of it were parsed as HTML.
MARKUP = '<img src=x onerror="window.__pwned=1"><b id="injected">bold</b>'


@pytest.fixture
def fleet(console: Console) -> Iterator[FleetClient]:
    with FleetClient(console.settings) as client:
        yield client


@pytest.fixture
def page(browser: Browser, console: Console) -> Iterator[Page]:
    tab = new_page(browser, console.url)
    sign_in(tab, console.admin_key)
    yield tab
    assert tab.page_errors == []  # type: ignore[attr-defined]
    tab.close()


def go(page: Page, name: str) -> None:
    page.evaluate(f"location.hash = '#{name}'")
    expect(page.locator(f"#page-{name}")).to_be_visible()


def confirm(page: Page) -> None:
    expect(page.locator("#confirm")).to_be_visible()
    page.click("#confirm-ok")


def start_run(
    env: dict[str, str], folder: Path, run_id: str, items: int, window: int, oversized: int = 0
) -> tuple[subprocess.Popen[bytes], Path]:
    """`qfleet run submit` of `items` generate prompts (and `oversized` ones it must refuse)."""
    prompts = folder / f"{run_id}.jsonl"
    lines = [json.dumps({"id": f"i{i}", "prompt": f"Item {i}: say hello"}) for i in range(items)]
    lines += [json.dumps({"id": f"big{i}", "prompt": "x" * 40_000}) for i in range(oversized)]
    prompts.write_text("\n".join(lines) + "\n")
    out = folder / f"{run_id}.out.jsonl"
    args = [sys.executable, "-m", "qfleet.producer.cli", "run", "submit", str(prompts),
            "--kind", "generate", "--out", str(out), "--run-id", run_id,
            "--window", str(window), "--max-tokens", "12", "--json"]  # fmt: skip
    with (folder / f"{run_id}.log").open("w") as log:
        process = subprocess.Popen(
            args, cwd=REPO_ROOT, env=qfleet_env(env), stdout=log, stderr=subprocess.STDOUT
        )
    return process, out


def run_row(page: Page, run_id: str) -> Locator:
    return page.locator("tr", has=page.locator(f"[data-run='{run_id}']"))


def test_sign_in_with_a_key(
    browser: Browser, console: Console, workers: list[WorkerProcess], screenshots: Path
) -> None:
    # Given the sign-in page
    page = new_page(browser, console.url)
    expect(page.locator("#login")).to_be_visible()
    page.screenshot(path=screenshots / "login.png")
    # When a key that does not exist is given, Then the page says so and stays on sign-in
    page.fill("#login-key", "qf-not-a-key")
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_contain_text("not valid")
    expect(page.locator("#nav")).to_be_hidden()
    # When a tenant's key is given, Then the page names the tenant and shows the fleet's workers
    sign_in(page, console.tenant_key)
    expect(page.locator("#who-text")).to_have_text("tenant acme")
    for worker in workers:
        expect(page.locator("#page-fleet")).to_contain_text(worker.hostname, timeout=WAIT_MS)
    # And the key lives in this tab's sessionStorage only
    assert page.evaluate("sessionStorage.getItem('qfleet.console.key')") == console.tenant_key
    assert page.evaluate("localStorage.length") == 0
    page.close()


def test_watch_a_bulk_run_progress_and_finish(
    page: Page, kb_fleet_env: dict[str, str], tmp_path: Path, screenshots: Path
) -> None:
    # Given a bulk run of 60 prompts, and 2 too large to send, started from the CLI
    process, out = start_run(
        kb_fleet_env, tmp_path, "console-progress", items=60, window=2, oversized=2
    )
    go(page, "runs")
    row = run_row(page, "console-progress")
    expect(row).to_be_visible(timeout=WAIT_MS)
    row.get_by_role("button", name="Details").click()
    # When the page is watched, Then its progress bar moves through partial values to the end
    seen: set[int] = set()
    deadline = time.monotonic() + 240
    while "finished" not in row.inner_text():
        assert time.monotonic() < deadline, f"the run did not finish; progress seen: {seen}"
        value = int(row.locator("[role=progressbar]").get_attribute("aria-valuenow") or 0)
        if 0 < value < 100 and not any(0 < v < 100 for v in seen):
            page.screenshot(path=screenshots / "runs.png", full_page=True)
        seen.add(value)
        time.sleep(0.5)
    assert any(0 < value < 100 for value in seen), seen
    assert process.wait(60) == 1, (tmp_path / "console-progress.log").read_text()  # failures
    expect(row.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "100")
    expect(row).to_contain_text("62 / 62")
    # And the detail view shows the two refusals, and downloads the output: one line per item
    detail = page.locator("#page-runs .detail")
    expect(detail).to_contain_text("Last 2 error lines")
    expect(detail.locator(".error-line")).to_have_count(2)
    expect(detail.locator(".error-line").first).to_contain_text("QFLEET_MAX_PROMPT_CHARS")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download output").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines == out.read_text().splitlines()
    # (a native run's output holds every item, failures included)
    ids = sorted(json.loads(line)["id"] for line in lines)
    assert ids == sorted([f"i{i}" for i in range(60)] + ["big0", "big1"])


def test_cancel_a_run(page: Page, kb_fleet_env: dict[str, str], tmp_path: Path) -> None:
    # Given a long run in progress
    process, out = start_run(kb_fleet_env, tmp_path, "console-cancel", items=400, window=1)
    go(page, "runs")
    row = run_row(page, "console-cancel")
    expect(row).to_contain_text("running", timeout=WAIT_MS)
    # When its Cancel button is pressed and confirmed
    row.get_by_role("button", name="Cancel").click()
    confirm(page)
    # Then the page shows it cancelled, and the producer following it stops
    expect(page.locator("#page-runs .callout.good")).to_contain_text("cancelled")
    expect(row).to_contain_text("cancelled", timeout=WAIT_MS)
    assert process.wait(60) != 0  # a cancelled run exits with JOB_FAILED
    assert len(out.read_text().splitlines()) < 400


def test_resume_an_interrupted_run(
    page: Page, kb_fleet_env: dict[str, str], tmp_path: Path
) -> None:
    # Given a run whose producer was killed mid-run (nobody renews its lease any more)
    process, out = start_run(kb_fleet_env, tmp_path, "console-resume", items=40, window=1)
    go(page, "runs")
    row = run_row(page, "console-resume")
    expect(row).to_contain_text("running", timeout=WAIT_MS)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    # When the page shows it interrupted and Resume is pressed
    expect(row).to_contain_text("interrupted", timeout=4 * RUN_LEASE_S * 1000)
    row.get_by_role("button", name="Resume").click()
    expect(page.locator("#page-runs .callout.good")).to_contain_text("followed again")
    # Then the gateway follows it to the end: one line per item, none twice
    expect(row).to_contain_text("finished", timeout=WAIT_MS * 3)
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(f"i{i}" for i in range(40))


def test_redrive_a_dead_letter(
    page: Page, console: Console, fleet: FleetClient, screenshots: Path
) -> None:
    # Given a job its workers gave up on: its attempts counter says it crashed them before,
    # so the worker dead-letters it as a poison job instead of running it again
    job = GenerateJob(prompt="Redrive me", max_tokens=4)
    attempts = console.settings.redis_key_prefix + ATTEMPTS_KEY.format(job_id=job.job_id)
    fleet.redis.set(attempts, 99)
    fleet.submit(job)
    deadline = time.monotonic() + 60
    while fleet.dead_letters.get(job.job_id) is None:
        assert time.monotonic() < deadline, "the job was not dead-lettered"
        time.sleep(0.2)
    # When the Dead letters page lists it and it is inspected
    go(page, "deadletters")
    row = page.locator("tr", has=page.locator(f"[data-job='{job.job_id}']"))
    expect(row).to_be_visible()
    row.get_by_role("button", name="Inspect").click()
    detail = page.locator("#page-deadletters .detail")
    expect(detail).to_contain_text("Redrive me")  # the payload
    expect(detail).to_contain_text("started")  # the error: started N times without finishing
    page.screenshot(path=screenshots / "deadletters.png", full_page=True)
    # And it is redriven, after a confirmation
    row.get_by_role("button", name="Redrive").click()
    confirm(page)
    # Then the letter leaves the list and the job runs to a result under its own id
    expect(page.locator("#page-deadletters .callout.good")).to_contain_text("sent again")
    expect(row).to_have_count(0)
    result = fleet.wait(job.job_id, timeout=60)
    assert isinstance(result, JobResult)
    assert result.usage.completion_tokens == 4


def ingest_file(page: Page, version: str, port: int) -> None:
    text = f"The Freedonia office gateway listens on port {port}. Visitors sign in at reception."
    form = page.locator("#page-knowledge form").nth(1)
    form.locator("input[name=file]").set_input_files(
        {"name": "office.txt", "mimeType": "text/plain", "buffer": text.encode()}
    )
    form.locator("input[name=source_url]").fill(SOURCE)
    form.locator("input[name=version]").fill(version)
    form.get_by_role("button", name="Ingest").click()
    expect(page.locator("#page-knowledge")).to_contain_text(
        f"{SOURCE} version {version}: ingested", timeout=WAIT_MS
    )


def ask_with_retrieval(page: Page) -> tuple[str, str]:
    """Ask QUESTION with retrieval on; returns the answer and the sources line."""
    go(page, "playground")
    page.get_by_label("Answer from the knowledge base (retrieval)").check()
    page.get_by_label("Max tokens").fill("24")
    page.get_by_label("prompt", exact=True).fill(QUESTION)
    page.get_by_role("button", name="Send").click()
    bubble = page.locator(".msg.assistant").last
    expect(bubble).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    return bubble.locator(".text").inner_text(), bubble.locator(".sources").inner_text()


def test_roll_back_a_knowledge_source_and_the_answer_changes(page: Page, screenshots: Path) -> None:
    # Given two versions of a source ingested from files through the page
    go(page, "knowledge")
    ingest_file(page, "v1", 8080)
    ingest_file(page, "v2", 9090)
    source_row = page.locator("tr", has=page.locator(f"[data-source='{SOURCE}']"))
    expect(source_row).to_contain_text("v2", timeout=WAIT_MS)
    # When the question is asked with retrieval, Then the answer cites v2
    first_answer, first_sources = ask_with_retrieval(page)
    assert SOURCE in first_sources
    assert "version v2" in first_sources
    page.screenshot(path=screenshots / "playground.png", full_page=True)
    # When the source is rolled back to v1 on the Knowledge page
    go(page, "knowledge")
    source_row.get_by_role("button", name="Roll back").click()
    confirm(page)
    expect(page.locator("#page-knowledge .callout.good")).to_contain_text("serves version v1")
    # Then search shows v1's passage, with its score and version
    page.get_by_label("query", exact=True).fill("office gateway port")
    page.get_by_role("button", name="Search").click()
    first_hit = page.locator(".passage").first
    expect(first_hit).to_contain_text("version v1", timeout=WAIT_MS)
    expect(first_hit).to_contain_text("8080")
    expect(first_hit).to_contain_text("score")
    page.screenshot(path=screenshots / "knowledge.png", full_page=True)
    # And the same question is now answered from v1 (not from a cached v2 answer)
    second_answer, second_sources = ask_with_retrieval(page)
    assert "version v1" in second_sources
    assert "version v2" not in second_sources
    print(f"answer with v2: {first_answer!r}; after rollback to v1: {second_answer!r}")


def test_stream_a_chat_answer(page: Page, fleet: FleetClient, screenshots: Path) -> None:
    # Given the Playground with a token budget
    go(page, "playground")
    page.get_by_label("Max tokens").fill("48")
    # When a prompt is sent
    page.get_by_label("prompt", exact=True).fill("Tell me about the sea.")
    page.get_by_role("button", name="Send").click()
    bubble = page.locator(".msg.assistant").last
    expect(bubble).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    # Then the answer arrived in pieces that add up to the job's stored result
    pieces = int(bubble.get_attribute("data-pieces") or 0)
    job_id = bubble.get_attribute("data-job") or ""
    result = fleet.result(job_id)
    assert isinstance(result, JobResult)
    assert pieces > 1, "the answer came in one piece: it was not streamed"
    assert bubble.locator(".text").inner_text() == result.text.strip()
    expect(bubble.locator(".meta")).to_contain_text(f"{result.usage.completion_tokens} tokens")


def test_schema_answers_and_extraction(page: Page) -> None:
    # Given the Playground with a JSON schema for the chat
    go(page, "playground")
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
              "required": ["city"]}  # fmt: skip
    page.get_by_label("JSON schema").fill(json.dumps(schema))
    # When a question is sent, Then the answer is one object of that schema
    page.get_by_label("prompt", exact=True).fill("Where is the Eiffel tower?")
    page.get_by_role("button", name="Send").click()
    bubble = page.locator(".msg.assistant").last
    expect(bubble).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    answer = json.loads(bubble.locator(".text").inner_text())
    assert isinstance(answer["city"], str)
    # When a pasted document is extracted against the default schema
    page.get_by_label("document").fill("Ada Lovelace was born in 1815 in London.")
    page.get_by_role("button", name="Extract").click()
    # Then the object is shown with its status
    result = page.locator("#page-playground pre.payload")
    expect(result).to_be_visible(timeout=WAIT_MS)
    extracted = json.loads(result.inner_text())
    # Random weights: whole, or truthfully incomplete (a field code had to close is left out)
    status = result.locator("xpath=..").locator(".badge").first
    assert status.inner_text() in ("succeeded", "incomplete")
    assert isinstance(extracted, dict)
    assert set(extracted) <= {"name", "year"}
    types = {"name": str, "year": int}
    assert all(isinstance(value, types[key]) for key, value in extracted.items())


def test_fleet_page_shows_workers_queues_and_charts(
    page: Page, fleet: FleetClient, screenshots: Path
) -> None:
    # Given a fleet serving jobs
    go(page, "fleet")
    # (its workers stop taking generate jobs for a while, so a backlog waits whatever the CPU's
    # speed; the interactive lane may still take the interactive ones)
    queues = fleet.app.control.inspect(timeout=10).active_queues() or {}
    paused = [name for name, qs in queues.items() if QUEUE_GENERATE in {q["name"] for q in qs}]
    assert paused, f"no worker consumes {QUEUE_GENERATE}: {queues}"
    fleet.app.control.cancel_consumer(QUEUE_GENERATE, destination=paused, reply=True, timeout=10)
    try:
        ids = [
            fleet.submit(GenerateJob(prompt=f"chart {i}", max_tokens=160, priority=priority))
            for i in range(24)
            for priority in ("interactive", "bulk")
        ]
        # Then the backlog shows per queue and priority
        generate_row = page.locator("#page-fleet tr", has=page.locator("text=qfleet.generate")).last
        expect(generate_row).to_contain_text(re.compile(r"p\d: \d+"), timeout=WAIT_MS)
    finally:
        fleet.app.control.add_consumer(QUEUE_GENERATE, destination=paused, reply=True, timeout=10)
    # (a few more samples, so the screenshot's charts have a shape)
    lines = page.locator("#page-fleet polyline")
    for _ in range(20):
        if lines.count() and len((lines.first.get_attribute("points") or "").split()) >= 8:
            break
        time.sleep(1)
    page.screenshot(path=screenshots / "fleet.png", full_page=True)
    for job_id in ids:
        fleet.wait(job_id, timeout=300)
    fleet_page = page.locator("#page-fleet")
    # Then it shows each worker's model and queues, each queue's consumers, and three charts
    expect(fleet_page).to_contain_text("qfleet.generate")
    expect(fleet_page.locator("table").first).to_contain_text("tiny")
    expect(fleet_page.locator(".chart")).to_have_count(3)
    expect(fleet_page.locator("polyline")).to_have_count(3, timeout=WAIT_MS)


def test_markup_is_shown_as_text_never_interpreted(
    page: Page, console: Console, fleet: FleetClient
) -> None:
    # Given markup in a document and a source URL of the knowledge base, and in an error message
    document = KnowledgeDocument(
        source_url=f"kb://{MARKUP}", text=f"Injected markup test document: {MARKUP}"
    )
    KnowledgeClient(fleet).ingest(IngestJob(documents=[document]))
    letter = DeadLetter(
        job_id="markup-letter", task="qfleet.generate", queue=QUEUE_GENERATE,
        payload={"prompt": MARKUP}, error_code="boom", error_message=f"failed: {MARKUP}",
        attempts=1,
    )  # fmt: skip
    fleet.dead_letters.add(letter)
    # When each page shows them, and a prompt holds markup too
    go(page, "knowledge")
    expect(page.locator("#page-knowledge")).to_contain_text(f"kb://{MARKUP}", timeout=WAIT_MS)
    page.get_by_label("query", exact=True).fill("Injected markup test document")
    page.get_by_role("button", name="Search").click()
    expect(page.locator(".passage").first).to_contain_text(MARKUP, timeout=WAIT_MS)
    go(page, "deadletters")
    expect(page.locator("#page-deadletters")).to_contain_text(f"failed: {MARKUP}")
    page.locator("tr", has=page.locator("[data-job='markup-letter']")).get_by_role(
        "button", name="Inspect"
    ).click()
    expect(page.locator("#page-deadletters pre")).to_contain_text("window.__pwned")
    go(page, "playground")
    page.get_by_label("prompt", exact=True).fill(MARKUP)
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".msg.user .text").last).to_have_text(MARKUP)
    expect(page.locator(".msg.assistant").last).to_have_attribute("data-state", "done")
    # Then nothing of it became an element or ran
    assert page.locator("#injected").count() == 0
    assert page.locator("img[src='x']").count() == 0
    assert page.evaluate("window.__pwned") is None
    # And every console response forbids scripts from anywhere but the gateway itself
    response = page.request.get(console.url + "/console/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy


def test_purge_every_dead_letter_after_a_confirmation(page: Page, fleet: FleetClient) -> None:
    # Given a dead letter
    letter = DeadLetter(
        job_id="purge-me", task="qfleet.generate", queue=QUEUE_GENERATE, payload={},
        error_code="boom", error_message="gone soon", attempts=1,
    )  # fmt: skip
    fleet.dead_letters.add(letter)
    go(page, "deadletters")
    expect(page.locator("[data-job='purge-me']")).to_be_visible()
    # When Purge all is pressed and the confirmation refused, Then nothing is deleted
    page.get_by_role("button", name="Purge all…").click()
    expect(page.locator("#confirm")).to_contain_text("Purge every dead letter")
    page.click("#confirm-cancel")
    assert fleet.dead_letters.get("purge-me") is not None
    # When it is pressed again and confirmed, Then the store is empty and the page says so
    page.get_by_role("button", name="Purge all…").click()
    confirm(page)
    expect(page.locator("#page-deadletters")).to_contain_text("No dead letters")
    assert fleet.dead_letters.count() == 0
