"""Embeddings, the knowledge base, RAG, extraction and jobs by id, through a real gateway.

One worker generates and extracts (tiny model); another owns the knowledge base and embeds.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import openai
import pytest

from ops.localfleet import WorkerProcess
from ops.services import QfleetService

pytestmark = pytest.mark.integration

INVOICE = {
    "type": "object",
    "properties": {
        "number": {"type": "string", "maxLength": 12},
        "total": {"type": "number", "minimum": 0, "maximum": 100000},
        "paid": {"type": "boolean"},
    },
    "required": ["number", "total", "paid"],
}


@pytest.fixture(scope="module")
def gen_worker(
    fleet_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A worker with the tiny model on the generate and extract queues."""
    log = tmp_path_factory.mktemp("genw") / "worker.log"
    process = WorkerProcess(
        fleet_env, log, hostname=f"gen-{uuid.uuid4().hex[:6]}@test",
        queues="qfleet.generate,qfleet.extract",
    ).start()  # fmt: skip
    yield process
    process.stop()


@pytest.fixture(scope="module")
def fleet_up(gen_worker: WorkerProcess, kb_worker: WorkerProcess) -> None:
    """Both workers running."""


def call(method: str, url: str, key: str | None, body: object = None) -> tuple[int, dict[str, Any]]:
    """One HTTP request with a JSON body; (status, JSON answer), errors included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if key is not None:
        request.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def sdk(gateway: QfleetService, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def served(client: openai.OpenAI, prefix: str) -> str:
    return next(m.id for m in client.models.list() if m.id.startswith(prefix))


@pytest.mark.usefixtures("fleet_up")
def test_models_list_chat_and_embedding_models(gateway: QfleetService, api_key: str) -> None:
    # Given a generate worker and a knowledge worker
    # When the SDK lists models
    with sdk(gateway, api_key) as client:
        models = {m.id: m for m in client.models.list()}
    # Then both kinds are there, each as an OpenAI model object
    kinds = {getattr(m, "kind", None) for m in models.values()}
    assert {"chat", "embedding"} <= kinds
    assert all(m.object == "model" for m in models.values())


@pytest.mark.usefixtures("fleet_up")
def test_embeddings_are_unit_vectors_in_input_order(gateway: QfleetService, api_key: str) -> None:
    with sdk(gateway, api_key) as client:
        embedder = next(m.id for m in client.models.list() if getattr(m, "kind", "") == "embedding")
        texts = ["the cat sat on the mat", "quarterly invoice totals", "the cat sat on the mat"]
        # When the SDK embeds three texts (it asks for base64 by default)
        reply = client.embeddings.create(model=embedder, input=texts)
        floats = client.embeddings.create(model=embedder, input=texts, encoding_format="float")
    # Then one unit vector per text, in order: equal texts give equal vectors
    vectors = np.array([d.embedding for d in reply.data])
    assert [d.index for d in reply.data] == [0, 1, 2]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert np.allclose(vectors[0], vectors[2], atol=1e-5)
    assert np.allclose(vectors, np.array([d.embedding for d in floats.data]), atol=1e-6)
    assert reply.usage.prompt_tokens > 0


@pytest.mark.usefixtures("fleet_up")
def test_knowledge_ingest_search_versions_rollback_and_rag(
    gateway: QfleetService, api_key: str, admin_key: str
) -> None:
    base = gateway.url + "/v1/qfleet/knowledge"
    doc = {"source_url": "kb://office", "text": "The office gateway listens on port 9090."}
    # Given a plain tenant key: changing the knowledge base is refused
    status, body = call("POST", base + "/documents", api_key, {"documents": [doc]})
    assert status == 403, body
    # When an admin ingests two versions of one source
    for version, port in (("1", 9090), ("2", 7070)):
        text = f"The office gateway listens on port {port}."
        document = {**doc, "version": version, "text": text}
        status, body = call("POST", base + "/documents", admin_key, {"documents": [document]})
        assert status == 200, body
    # Then search finds the newest version, and versions lists both
    status, body = call("POST", base + "/search", api_key, {"query": "office port", "top_k": 2})
    assert status == 200, body
    assert body["passages"][0]["version"] == "2"
    status, body = call("GET", base + "/versions?source_url=kb://office", api_key)
    assert status == 200, body
    assert {v["version"] for v in body["versions"]} == {"1", "2"}
    # When the admin rolls back to version 1
    status, body = call(
        "POST", base + "/rollback", admin_key, {"source_url": "kb://office", "version": "1"}
    )
    assert status == 200, body
    # Then a chat completion with retrieval carries version 1 as its source
    with sdk(gateway, api_key) as client:
        reply = client.chat.completions.create(
            model=served(client, "qfleet-tiny"),
            messages=[{"role": "user", "content": "Which port does the office gateway use?"}],
            max_tokens=6,
            extra_body={"qfleet": {"retrieval": {"top_k": 1}}},
        )
    sources = reply.model_dump()["qfleet"]["sources"]
    assert [(s["source_url"], s["version"]) for s in sources] == [("kb://office", "1")]


@pytest.mark.usefixtures("fleet_up")
def test_extraction_gives_one_valid_object_per_document(
    gateway: QfleetService, api_key: str
) -> None:
    import jsonschema

    documents = [
        {"id": "a", "text": "Invoice INV-1, total 120.50 EUR, paid."},
        {"id": "b", "text": "Invoice INV-2 over 99 EUR, still open."},
    ]
    # When two documents are extracted under a schema
    status, body = call(
        "POST", gateway.url + "/v1/qfleet/extractions", api_key,
        {"documents": documents, "json_schema": INVOICE, "max_tokens": 40},
    )  # fmt: skip
    # Then each has its object, valid against the schema
    assert status == 200, body
    assert [item["id"] for item in body["items"]] == ["a", "b"]
    for item in body["items"]:
        # Random weights: a whole object validates; an incomplete one is valid as far as it goes
        assert item["status"] in ("succeeded", "incomplete"), item
        required = INVOICE.get("required", []) if item["status"] == "succeeded" else []
        jsonschema.validate(item["object"], {**INVOICE, "required": required})
    # And an unsupported keyword is refused, named, before anything is enqueued
    schema = {**INVOICE, "properties": {"number": {"type": "string", "not": {"const": "INV"}}}}
    status, body = call(
        "POST", gateway.url + "/v1/qfleet/extractions", api_key,
        {"documents": documents, "json_schema": {**schema, "required": []}},
    )  # fmt: skip
    assert status == 400
    assert "'not'" in body["error"]["message"]


@pytest.mark.usefixtures("fleet_up")
def test_jobs_by_id_belong_to_their_tenant(
    gateway: QfleetService, api_key: str, other_key: str
) -> None:
    # Given a streamed chat job of tenant acme
    with sdk(gateway, api_key) as client:
        chunks = list(
            client.chat.completions.create(
                model=served(client, "qfleet-tiny"),
                messages=[{"role": "user", "content": "Hi"}],
                max_tokens=8,
                temperature=0,
                stream=True,
            )
        )
    job_id = chunks[0].id.removeprefix("chatcmpl-")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jobs = gateway.url + "/v1/qfleet/jobs/"
    # Then acme reads its status, result and stream
    status, body = call("GET", jobs + job_id, api_key)
    assert (status, body["status"]) == (200, "succeeded")
    status, body = call("GET", jobs + job_id + "/result", api_key)
    assert (status, body["text"]) == (200, text)
    request = urllib.request.Request(jobs + job_id + "/stream")
    request.add_header("authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(request, timeout=60) as response:
        lines = [line for line in response.read().decode().split("\n\n") if line]
    assert lines[-1] == "data: [DONE]"
    streamed = "".join(json.loads(x.removeprefix("data: "))["text"] for x in lines[:-1])
    assert streamed == text
    # And tenant globex gets 404 for the same id, everywhere
    for suffix in ("", "/result", "/stream"):
        status, body = call("GET", jobs + job_id + suffix, other_key)
        assert status == 404, suffix
        assert body["error"]["code"] == "job_not_found"
    status, _ = call("POST", jobs + job_id + "/cancel", other_key)
    assert status == 404
