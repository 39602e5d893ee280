"""Per-tenant limits (429 with retry-after); a streaming client that leaves cancels its job."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import openai
import pytest
import redis

from ops.localfleet import WorkerProcess
from ops.services import QfleetService, start_gateway

pytestmark = pytest.mark.integration

REQUESTS_PER_MINUTE = 6


@pytest.fixture(scope="module")
def strict_gateway(
    fleet_env: dict[str, str], worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[QfleetService]:
    """A gateway that lets each tenant make 6 requests a minute and have 1 job in flight."""
    env = {
        **fleet_env,
        "QFLEET_GATEWAY_REQUESTS_PER_MINUTE": str(REQUESTS_PER_MINUTE),
        "QFLEET_GATEWAY_JOBS_IN_FLIGHT": "1",
    }
    service = start_gateway(env, tmp_path_factory.mktemp("gw") / "gateway.log")
    yield service
    service.stop()


def sdk(gateway: QfleetService, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def test_requests_past_the_rate_limit_get_429_with_retry_after(
    strict_gateway: QfleetService, other_key: str, api_key: str
) -> None:
    # Given a tenant with 6 requests a minute
    refused: openai.RateLimitError | None = None
    with sdk(strict_gateway, other_key) as client:
        # When it makes more than that (twice as many: one window boundary may pass meanwhile)
        for _ in range(2 * REQUESTS_PER_MINUTE + 1):
            try:
                client.models.list()
            except openai.RateLimitError as exc:
                refused = exc
                break
    # Then it is refused with 429, an OpenAI error body and a retry-after within the minute
    assert refused is not None, "no request was refused"
    assert refused.response.status_code == 429
    assert 1 <= int(refused.response.headers["retry-after"]) <= 60
    assert refused.code == "rate_limit_exceeded"
    # And another tenant is not affected
    with sdk(strict_gateway, api_key) as client:
        assert client.models.list().data


def test_jobs_in_flight_limit_and_cancel_on_disconnect(
    strict_gateway: QfleetService, api_key: str, fleet_env: dict[str, str]
) -> None:
    with sdk(strict_gateway, api_key) as client:
        model = client.models.list().data[0].id
        # Given a long streamed completion in flight (its first chunk read, the rest not)
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Write a long story"}],
            max_tokens=2000,
            stream=True,
        )
        first = next(iter(stream))
        job_id = first.id.removeprefix("chatcmpl-")
        # When the tenant asks for a second completion
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
            )
        # Then it is refused: one job in flight is the limit
        assert refused.value.code == "too_many_jobs_in_flight"
        assert refused.value.response.headers["retry-after"] == "1"
        # When the streaming client goes away
        stream.close()
    # Then the gateway cancels its job (the cancel key is set for the workers)
    store = redis.Redis.from_url(fleet_env["QFLEET_BROKER_URL"])
    key = f"{fleet_env['QFLEET_REDIS_KEY_PREFIX']}qfleet:cancel:{job_id}"
    deadline = time.monotonic() + 20
    while not store.exists(key) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store.exists(key), "the job of a client that left was not cancelled"
    store.close()


def test_a_waiting_client_that_leaves_cancels_its_job(
    gateway: QfleetService, worker: WorkerProcess, api_key: str, fleet_env: dict[str, str]
) -> None:
    store = redis.Redis.from_url(fleet_env["QFLEET_BROKER_URL"])
    pattern = f"{fleet_env['QFLEET_REDIS_KEY_PREFIX']}qfleet:cancel:*"
    before = set(store.scan_iter(match=pattern))
    with sdk(gateway, api_key) as client:
        model = client.models.list().data[0].id
    # Given a client waiting for a long completion (not streamed)
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Go on"}],
            # Long enough to outlast the hang-up even on a quiet machine (a stop string that never
            # comes makes every token pay for a text check).
            "max_tokens": 2000,
            "stop": ["\u2603never\u2603"],
        }
    ).encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            + f"authorization: Bearer {api_key}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        # When it hangs up while its job decodes (not before the job started: a fast machine
        # could otherwise finish the job first, and a slow one not have started it)
        running = f"{fleet_env['QFLEET_REDIS_KEY_PREFIX']}qfleet:running:*"
        started = time.monotonic() + 20
        while not any(store.scan_iter(match=running)) and time.monotonic() < started:
            time.sleep(0.02)
        assert any(store.scan_iter(match=running)), "the job never ran"
    # Then the gateway cancels its job
    deadline = time.monotonic() + 20
    while not set(store.scan_iter(match=pattern)) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert set(store.scan_iter(match=pattern)) - before, "the job of a client that left runs on"
    store.close()
