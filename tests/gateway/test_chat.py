"""Chat completions through a real gateway and a real worker, driven by the official SDK."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest

from ops.localfleet import WorkerProcess
from ops.services import QfleetService

pytestmark = pytest.mark.integration

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3},
    },
    "required": ["name", "age"],
}


@pytest.fixture(scope="module")
def client(gateway: QfleetService, worker: WorkerProcess, api_key: str) -> Iterator[openai.OpenAI]:
    """The official SDK pointed at the gateway, as tenant acme."""
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=api_key, max_retries=0) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def model_id(client: openai.OpenAI) -> str:
    """The chat model the module's worker serves (from /v1/models)."""
    return next(m.id for m in client.models.list() if m.id.startswith("qfleet-tiny"))


def post(url: str, body: bytes, key: str | None) -> tuple[int, dict[str, Any]]:
    """POST raw bytes; (status, JSON body) for errors too."""
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("content-type", "application/json")
    if key is not None:
        request.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def test_chat_completion_answers_with_usage(client: openai.OpenAI, model_id: str) -> None:
    # Given the tiny model behind the gateway
    # When the SDK asks for a completion
    reply = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=12,
        temperature=0,
        seed=7,
    )
    # Then it is a chat.completion with one choice and its token counts
    assert reply.object == "chat.completion"
    assert reply.model == model_id
    assert len(reply.choices) == 1
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage is not None
    assert reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streamed_chunks_add_up_to_the_final_text(client: openai.OpenAI, model_id: str) -> None:
    # Given the same greedy request, streamed and not
    request: dict[str, Any] = {
        "model": model_id,
        "messages": [{"role": "user", "content": "Count to five"}],
        "max_tokens": 16,
        "temperature": 0,
    }
    whole = client.chat.completions.create(**request).choices[0].message.content
    # When it is streamed
    chunks = list(
        client.chat.completions.create(
            **request, stream=True, stream_options={"include_usage": True}
        )
    )
    # Then the chunks' pieces add up to the text, the last choice has a reason, usage comes last
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert text == whole
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert reasons[-1] in ("stop", "length")
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_json_schema_answers_validate(client: openai.OpenAI, model_id: str) -> None:
    # Given a schema in response_format
    for temperature in (0.0, 1.0):
        # When the model answers under it (random weights: any answer is up to the decoder)
        reply = client.chat.completions.create(
            model=model_id,
            messages=[{"role": "user", "content": "Describe a person"}],
            max_tokens=200,
            temperature=temperature,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "person", "schema": PERSON, "strict": True},
            },
        )
        # Then the answer is whole, and it parses and validates
        assert reply.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(reply.choices[0].message.content or ""), PERSON)


def test_json_object_answers_parse(client: openai.OpenAI, model_id: str) -> None:
    # Given json_object mode
    reply = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "Reply in JSON"}],
        max_tokens=30,
        response_format={"type": "json_object"},
    )
    # Then the answer is one JSON object
    assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)


def test_unsupported_requests_are_refused_naming_the_field(
    gateway: QfleetService, api_key: str, model_id: str
) -> None:
    url = gateway.url + "/v1/chat/completions"
    messages = [{"role": "user", "content": "Hi"}]
    # n other than 1
    status, body = post(
        url, json.dumps({"model": model_id, "messages": messages, "n": 2}).encode(), api_key
    )
    assert (status, body["error"]["param"]) == (400, "n")
    # an unknown model
    status, body = post(url, json.dumps({"model": "gpt-9", "messages": messages}).encode(), api_key)
    assert status == 404
    assert body["error"]["code"] == "model_not_found"
    # a schema keyword qfleet cannot guarantee
    schema = {"type": "object", "properties": {"a": {"type": "string", "not": {"const": "x"}}}}
    request = {
        "model": model_id,
        "messages": messages,
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    }
    status, body = post(url, json.dumps(request).encode(), api_key)
    assert status == 400
    assert "'not'" in body["error"]["message"]
    assert body["error"]["param"] == "response_format.json_schema.schema"
    # malformed JSON
    status, body = post(url, b'{"model": ', api_key)
    assert (status, body["error"]["code"]) == (400, "invalid_json")
    # no key
    status, body = post(url, json.dumps({"model": model_id, "messages": messages}).encode(), None)
    assert status == 401
    assert set(body["error"]) == {"message", "type", "param", "code"}
