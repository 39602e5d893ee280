"""Following one batch in-process against a real worker: expiry, and webhook signatures."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest
from pydantic import SecretStr

from ops.localfleet import WorkerProcess
from qfleet.producer.gateway.batch_store import BatchMeta, BatchStore
from qfleet.producer.gateway.batches import BatchRun
from qfleet.producer.gateway.files import FileStore
from qfleet.producer.gateway.webhooks import (
    WEBHOOK_DEAD_KEY,
    WEBHOOK_DUE_KEY,
    WebhookError,
    WebhookSender,
    check_url,
    sign,
)
from qfleet.tasks.redisconn import PRODUCER_RETRIES, fleet_redis
from qfleet.tasks.settings import Settings

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def settings(fleet_env: dict[str, str]) -> Settings:
    return Settings(
        broker_url=fleet_env["QFLEET_BROKER_URL"],
        redis_key_prefix=fleet_env["QFLEET_REDIS_KEY_PREFIX"],
        batch_window=2,
        webhook_secret=SECRET,
        webhook_allowed_origins=["https://hooks.example.com", "http://127.0.0.1:9"],
        webhook_max_attempts=2,
        webhook_backoff_s=0.01,
    )


@pytest.fixture
def stores(settings: Settings) -> Iterator[tuple[BatchStore, FileStore]]:
    redis = fleet_redis(settings, retries=PRODUCER_RETRIES)
    prefix = settings.redis_key_prefix
    yield BatchStore(redis, prefix, 3_600), FileStore(redis, prefix, 3_600)
    redis.close()


def _meta(store: FileStore, lines: int, expires_in: float, webhook: str | None = None) -> BatchMeta:
    text = "".join(
        json.dumps({
            "custom_id": f"e{n:03d}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"messages": [{"role": "user", "content": "Write"}], "max_tokens": 48},
        }) + "\n"
        for n in range(lines)
    )  # fmt: skip
    record = store.create("acme", "in.jsonl", "batch", text.encode())
    now = int(time.time())
    return BatchMeta(
        id="batch_" + secrets.token_hex(12), tenant="acme", endpoint="/v1/chat/completions",
        input_file_id=record.id, completion_window="1h", webhook_url=webhook,
        created_at=now, expires_at=int(now + expires_in),
    )  # fmt: skip


def test_an_expired_batch_keeps_its_lines_and_marks_the_rest(
    worker: WorkerProcess,
    settings: Settings,
    stores: tuple[BatchStore, FileStore],
    tmp_path: Path,
) -> None:
    batches, files = stores
    # Given a batch of 200 slow requests whose completion window ends in 3 seconds
    meta = _meta(files, 200, expires_in=3)
    batches.create(meta)
    # When it is followed past its window
    BatchRun(settings, batches, files, meta, tmp_path).follow()
    # Then it expired: finished answers stay, every other request has a batch_expired line
    found = batches.get(meta.id)
    assert found is not None
    batch = found[1]
    assert batch.status == "expired"
    assert batch.output_file_id
    assert batch.error_file_id
    output = b"".join(files.chunks(batch.output_file_id)).decode().splitlines()
    errors = b"".join(files.chunks(batch.error_file_id)).decode().splitlines()
    assert 0 < len(errors) < 200
    assert {json.loads(line)["error"]["code"] for line in errors} == {"batch_expired"}
    ids = [json.loads(line)["custom_id"] for line in output + errors]
    assert sorted(ids) == [f"e{n:03d}" for n in range(200)]
    counts = batch.request_counts
    assert (counts.total, counts.completed, counts.failed) == (200, len(output), len(errors))
    assert meta.id not in batches.active()


def test_signatures_verify_with_the_official_sdk() -> None:
    body = json.dumps({"object": "event", "type": "batch.completed", "data": {"id": "batch_1"}})
    headers = sign(SECRET, "evt_1", int(time.time()), body)
    openai.OpenAI(api_key="unused").webhooks.verify_signature(body, headers, secret=SECRET)
    tampered = body.replace("batch_1", "batch_2")
    with pytest.raises(openai.InvalidWebhookSignatureError):
        openai.OpenAI(api_key="unused").webhooks.verify_signature(tampered, headers, secret=SECRET)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",  # cloud metadata: never on the list
        "http://hooks.example.com/x",  # the allowed origin is https
        "https://hooks.example.com:8443/x",  # another port
        "https://user:pw@hooks.example.com/x",  # credentials in the URL
        "file:///etc/passwd",
    ],
)
def test_webhook_urls_off_the_allow_list_are_refused(settings: Settings, url: str) -> None:
    with pytest.raises(WebhookError):
        check_url(url, settings)


def test_allowed_webhook_urls_pass(settings: Settings) -> None:
    assert check_url("https://hooks.example.com:443/batches", settings)
    with pytest.raises(WebhookError, match="QFLEET_WEBHOOK_SECRET"):
        check_url(
            "https://hooks.example.com/x", settings.model_copy(update={"webhook_secret": None})
        )


def test_an_unacknowledged_event_is_retried_then_given_up(
    settings: Settings, stores: tuple[BatchStore, FileStore]
) -> None:
    batches, files = stores
    # Given a receiver that always answers 500, allowed in the settings
    hits: list[str] = []

    class Failing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(self.headers["webhook-id"])
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    allowed = settings.model_copy(update={"webhook_allowed_origins": [url]})
    # And a batch that fails, naming it: the event is in the outbox with the final status
    meta = _meta(files, 1, expires_in=60, webhook=url + "/hook")
    batches.create(meta)
    assert batches.transition(meta, "failed", {"validating"})
    sender = WebhookSender(batches.redis, allowed)
    try:
        # When the sender tries it twice (its limit)
        sender.deliver_due()
        time.sleep(0.05)
        sender.deliver_due()
        # Then the same event was posted twice and is now in the dead set, not due
        assert len(hits) == 2
        assert len(set(hits)) == 1
        prefix = settings.redis_key_prefix
        assert batches.redis.zscore(prefix + WEBHOOK_DEAD_KEY, hits[0]) is not None
        assert batches.redis.zscore(prefix + WEBHOOK_DUE_KEY, hits[0]) is None
    finally:
        sender.close()
        server.shutdown()
        server.server_close()


def test_a_malformed_secret_is_refused_before_any_event(settings: Settings) -> None:
    broken = settings.model_copy(update={"webhook_secret": SecretStr("not-a-whsec-secret")})
    with pytest.raises(WebhookError, match="whsec_"):
        check_url("https://hooks.example.com/x", broken)
