"""The gateway process: health, readiness, keys, and errors in the OpenAI shape."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import urllib.parse
import urllib.request
from typing import Any

from ops.localfleet import qfleet_env
from ops.services import QfleetService, http_get
from qfleet.producer.gateway.keys import KeyStore


def _post(url: str, body: bytes, key: str | None = None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("content-type", "application/json")
    if key is not None:
        request.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def test_health_and_readiness_need_no_key(gateway: QfleetService) -> None:
    assert http_get(gateway.url + "/healthz") == (200, b'{"status":"ok"}')
    status, body = http_get(gateway.url + "/readyz")
    assert status == 200, body


def test_unknown_path_is_an_openai_error(gateway: QfleetService, api_key: str) -> None:
    status, body = _post(gateway.url + "/v1/nothing-here", b"{}", api_key)
    assert status == 404
    assert set(body["error"]) == {"message", "type", "param", "code"}  # type: ignore[arg-type]


def _refused(gateway: QfleetService, api_key: str, headers: dict[str, str], *body: bytes) -> Any:
    """Send a POST's headers and then `body` pieces as they are; (status, JSON body)."""
    url = urllib.parse.urlsplit(gateway.url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        connection.putrequest("POST", "/v1/chat/completions")
        connection.putheader("content-type", "application/json")
        connection.putheader("authorization", f"Bearer {api_key}")
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        for piece in body:
            connection.send(piece)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_oversized_body_is_refused_before_reading(gateway: QfleetService, api_key: str) -> None:
    # Given a request that announces a 3 MB body and has not sent any of it yet
    status, body = _refused(gateway, api_key, {"content-length": str(3_000_000)})
    # Then the gateway answers 413 without waiting for (or reading) the body
    assert status == 413
    assert "QFLEET_GATEWAY_MAX_BODY_BYTES" in body["error"]["message"]


def test_oversized_chunked_body_is_refused_at_the_limit(
    gateway: QfleetService, api_key: str
) -> None:
    # Given a chunked request (no Content-Length to judge by) that goes on past the limit:
    # 31 chunks of 64 KiB, just over the 2 MB default, and the body never ends
    piece = b" " * 65_536
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 31
    status, body = _refused(gateway, api_key, {"transfer-encoding": "chunked"}, *chunks)
    # Then it is answered 413 once the limit is passed
    assert status == 413
    assert "more than" in body["error"]["message"]


def test_keys_store_only_hashes(key_store: KeyStore, fleet_env: dict[str, str]) -> None:
    # Given a key created with the CLI
    env = qfleet_env(fleet_env)
    created = subprocess.run(
        [sys.executable, "-m", "qfleet.producer.cli", "keys", "create", "--tenant", "initech"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("qf-")
    # Then it is found by the store, and its text appears nowhere in Redis
    record = key_store.find(key)
    assert record is not None
    assert record.tenant == "initech"
    for name in key_store.redis.scan_iter(match=f"{key_store.prefix}*"):
        value = key_store.redis.dump(name) or b""
        assert key.encode() not in value
    # When it is revoked by its prefix
    revoked = subprocess.run(
        [sys.executable, "-m", "qfleet.producer.cli", "keys", "revoke", record.prefix],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    # Then it no longer authenticates
    assert key_store.find(key) is None
