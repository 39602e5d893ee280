"""Files and batches through the official `openai` SDK: a real gateway, a real worker, Redis."""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest
import redis

from ops.localfleet import WorkerProcess
from ops.services import QfleetService, start_gateway

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
MAX_FILE_BYTES = 100_000


class Receiver:
    """A webhook receiver on loopback: records every POST; refuses each event's first try."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                first = all(h["webhook-id"] != headers["webhook-id"] for h, _ in receiver.posts)
                receiver.posts.append((headers, body))
                self.send_response(503 if first else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, batch_id: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in self.posts if json.loads(b)["data"]["id"] == batch_id]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="module")
def gateway(
    fleet_env: dict[str, str], receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[QfleetService]:
    """A gateway that follows batches and may call the test's receiver (and nothing else)."""
    env = {
        **fleet_env,
        "QFLEET_WEBHOOK_SECRET": SECRET,
        "QFLEET_WEBHOOK_ALLOWED_ORIGINS": json.dumps([receiver.url]),
        "QFLEET_WEBHOOK_BACKOFF_S": "0.5",
        # A few jobs in flight per batch, so that a cancel meets most requests still unsent.
        "QFLEET_BATCH_WINDOW": "4",
        "QFLEET_GATEWAY_MAX_FILE_BYTES": str(MAX_FILE_BYTES),
    }
    service = start_gateway(env, tmp_path_factory.mktemp("gateway") / "gateway.log")
    yield service
    service.stop()


@pytest.fixture(scope="module")
def client(gateway: QfleetService, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=api_key, max_retries=0)


@pytest.fixture(scope="module")
def other(gateway: QfleetService, other_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=other_key, max_retries=0)


def _line(custom_id: str, max_tokens: int = 6, text: str = "Say hi") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "qfleet",
            "messages": [{"role": "user", "content": f"{text} ({custom_id})"}],
            "max_tokens": max_tokens,
        },
    }


def _upload(client: openai.OpenAI, lines: list[dict[str, Any]] | str) -> str:
    text = lines if isinstance(lines, str) else "".join(json.dumps(x) + "\n" for x in lines)
    return client.files.create(file=("in.jsonl", text.encode()), purpose="batch").id


def _wait(client: openai.OpenAI, batch_id: str, statuses: set[str], timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, f"batch stuck in {batch.status}"
        time.sleep(0.3)


def _ids(client: openai.OpenAI, file_id: str | None) -> Counter[str]:
    if file_id is None:
        return Counter()
    text = client.files.content(file_id).text
    return Counter(json.loads(line)["custom_id"] for line in text.splitlines())


def test_a_batch_runs_to_one_line_per_request_and_a_signed_webhook(
    worker: WorkerProcess, client: openai.OpenAI, receiver: Receiver
) -> None:
    # Given a file of 12 requests, one of them over the fleet's max_tokens limit
    lines = [_line(f"req-{n:02d}") for n in range(11)] + [_line("too-long", max_tokens=4_000)]
    file_id = _upload(client, lines)
    assert client.files.retrieve(file_id).purpose == "batch"
    # When a batch of it is created with a webhook, and followed to the end
    batch = client.batches.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "round-trip"},
        extra_body={"qfleet": {"webhook_url": receiver.url + "/hook"}},
    )
    assert batch.status == "validating"
    done = _wait(client, batch.id, {"completed", "failed"})
    # Then every custom_id has exactly one line: 11 answers, 1 error
    assert done.status == "completed", done.errors
    output, errors = _ids(client, done.output_file_id), _ids(client, done.error_file_id)
    assert set(output) == {f"req-{n:02d}" for n in range(11)}
    assert set(errors) == {"too-long"}
    assert max((output + errors).values()) == 1
    assert (done.request_counts.total, done.request_counts.completed) == (12, 11)
    assert done.request_counts.failed == 1
    assert done.metadata == {"job": "round-trip"}
    first = json.loads(client.files.content(done.output_file_id).text.splitlines()[0])
    assert first["response"]["body"]["object"] == "chat.completion"
    # And the receiver got the completion event (after refusing the first try), signed right
    deadline = time.monotonic() + 30
    while len(receiver.events(batch.id)) < 2:
        assert time.monotonic() < deadline, receiver.posts
        time.sleep(0.1)
    headers, body = receiver.events(batch.id)[-1]
    client.webhooks.verify_signature(body, headers, secret=SECRET)  # raises if it does not match
    event = json.loads(body)
    assert (event["type"], event["data"]["id"]) == ("batch.completed", batch.id)
    assert batch.id in [b.id for b in client.batches.list(limit=100)]


def test_a_bad_line_fails_the_batch_naming_it_and_sends_nothing(
    worker: WorkerProcess, client: openai.OpenAI, fleet_env: dict[str, str]
) -> None:
    # Given a file whose third line is not JSON
    good = [json.dumps(_line(f"ok-{n}")) for n in range(4)]
    file_id = _upload(client, "\n".join([*good[:2], '{"custom_id": "broken",', *good[2:]]) + "\n")
    # When a batch of it is created
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    failed = _wait(client, batch.id, {"failed", "completed", "in_progress"})
    # Then it failed, naming line 3, and no job of it was ever sent
    assert failed.status == "failed"
    assert failed.errors is not None
    assert failed.errors.data
    assert failed.errors.data[0].line == 3
    assert failed.output_file_id is None
    store = redis.Redis.from_url(fleet_env["QFLEET_BROKER_URL"])
    prefix = fleet_env["QFLEET_REDIS_KEY_PREFIX"]
    assert not list(store.scan_iter(match=f"{prefix}qfleet:job:{batch.id}*"))
    assert not list(store.scan_iter(match=f"{prefix}qfleet:run:{batch.id}*"))


def test_cancel_keeps_the_lines_already_written(
    worker: WorkerProcess, client: openai.OpenAI
) -> None:
    # Given a running batch of 60 slower requests with some lines written
    lines = [_line(f"c-{n:02d}", max_tokens=48, text="Tell a long story") for n in range(60)]
    batch = client.batches.create(
        input_file_id=_upload(client, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    deadline = time.monotonic() + 120
    while client.batches.retrieve(batch.id).request_counts.completed < 3:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "no line was written"
        time.sleep(0.2)
    # When it is cancelled
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = _wait(client, batch.id, {"cancelled"}, timeout=60)
    # Then the finished lines stay, once each, and the rest were not answered
    output = _ids(client, done.output_file_id)
    assert len(output) >= 3
    assert max(output.values()) == 1
    assert done.request_counts.completed == len(output)
    assert len(output) < 60


def test_other_tenants_get_404_and_webhooks_must_be_allowed(
    client: openai.OpenAI, other: openai.OpenAI
) -> None:
    # Given a file and a batch of tenant acme
    file_id = _upload(client, [_line("x")])
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    # Then tenant globex can neither see, read, use nor cancel them
    for call in (
        lambda: other.files.retrieve(file_id),
        lambda: other.files.content(file_id),
        lambda: other.files.delete(file_id),
        lambda: other.batches.retrieve(batch.id),
        lambda: other.batches.cancel(batch.id),
        lambda: other.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        ),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert file_id not in [f.id for f in other.files.list()]
    assert batch.id not in [b.id for b in other.batches.list()]
    # And a webhook to an address off the allow-list is refused, naming the field
    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(
            input_file_id=file_id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"qfleet_webhook_url": "http://169.254.169.254/latest"},
        )
    assert refused.value.body["param"] == "metadata.qfleet_webhook_url"  # type: ignore[index]


def test_files_check_purpose_and_can_be_deleted(client: openai.OpenAI) -> None:
    # Given a file uploaded for another purpose, and one for batches
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("x.jsonl", b"{}\n"), purpose="fine-tune")
    file_id = _upload(client, [_line("d")])
    assert file_id in [f.id for f in client.files.list(purpose="batch")]
    # When it is deleted
    assert client.files.delete(file_id).deleted
    # Then it is gone
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(file_id)
    with pytest.raises(openai.BadRequestError):
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
        )


def test_uploads_over_the_limit_or_without_a_length_are_refused(
    gateway: QfleetService, client: openai.OpenAI, api_key: str
) -> None:
    # Given a file one byte over the gateway's limit
    with pytest.raises(openai.APIStatusError) as refused:
        client.files.create(file=("big.jsonl", b"x" * (MAX_FILE_BYTES + 1)), purpose="batch")
    # Then it is refused with 413, naming the setting
    assert refused.value.status_code == 413
    assert "QFLEET_GATEWAY_MAX_FILE_BYTES" in refused.value.message
    # And an upload without a declared length (chunked) is refused before it is read
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    body = b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--b--\r\n'
    headers = {
        "authorization": f"Bearer {api_key}",
        "content-type": "multipart/form-data; boundary=b",
    }
    connection.request("POST", "/v1/files", body=iter([body]), headers=headers,
                       encode_chunked=True)  # fmt: skip
    response = connection.getresponse()
    assert response.status == 411, response.read()
    connection.close()


def test_two_gateways_on_one_redis_serve_the_same_files_and_batches(
    worker: WorkerProcess,
    client: openai.OpenAI,
    fleet_env: dict[str, str],
    api_key: str,
    tmp_path: Path,
) -> None:
    # Given a second gateway process on the same Redis that does not follow batches
    env = {**fleet_env, "QFLEET_GATEWAY_FOLLOW_BATCHES": "false"}
    second = start_gateway(env, tmp_path / "second.log")
    try:
        other_door = openai.OpenAI(base_url=second.url + "/v1", api_key=api_key, max_retries=0)
        # When a file is uploaded through the second and its batch created through the first
        file_id = _upload(other_door, [_line(f"two-{n}") for n in range(3)])
        batch = client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        # Then the second sees it run to the end and serves its output
        done = _wait(other_door, batch.id, {"completed", "failed"})
        assert done.status == "completed"
        assert set(_ids(other_door, done.output_file_id)) == {"two-0", "two-1", "two-2"}
    finally:
        second.stop()
