"""Gateway pieces without a server: OpenAI bodies to jobs, the model catalog, tenant limits."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import redis

from qfleet.producer.gateway.catalog import ModelCatalog
from qfleet.producer.gateway.chat_jobs import generate_job
from qfleet.producer.gateway.chat_types import ChatCompletionRequest
from qfleet.producer.gateway.errors import ApiError
from qfleet.producer.gateway.limits import TenantLimits
from qfleet.tasks.settings import Settings

SETTINGS = Settings()


def request(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], **fields}
    return ChatCompletionRequest.model_validate(body)


def refused(**fields: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        generate_job(request(**fields), SETTINGS)
    assert caught.value.status == 400
    return caught.value


def test_an_openai_request_becomes_an_interactive_generate_job() -> None:
    job = generate_job(
        request(
            messages=[
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Hi "}, {"type": "text", "text": "there"},
                ]},
            ],
            max_tokens=9, max_completion_tokens=7, stop="\n", seed=3, stream=True,
        ),
        SETTINGS,
    )  # fmt: skip
    assert [(m.role, m.content) for m in job.chat()] == [
        ("system", "Be brief."),
        ("user", "Hi there"),
    ]
    assert (job.max_tokens, job.stop, job.stream, job.priority) == (7, ["\n"], True, "interactive")
    assert job.temperature == 1.0  # OpenAI's default, not qfleet's greedy one
    assert not job.structured


def test_response_formats_and_retrieval_reach_the_job() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    shaped = generate_job(request(response_format=fmt), SETTINGS)
    assert shaped.json_schema is not None
    assert shaped.json_schema["additionalProperties"] is False
    assert generate_job(request(response_format={"type": "json_object"}), SETTINGS).json_object
    rag = generate_job(request(qfleet={"retrieval": {"top_k": 2}}), SETTINGS)
    assert rag.retrieval is not None
    assert rag.retrieval.top_k == 2


def test_what_qfleet_cannot_honour_is_refused_by_name() -> None:
    assert refused(n=2).param == "n"
    assert refused(tools=[{"type": "function"}]).param == "tools"
    assert refused(logprobs=True).param == "logprobs"
    assert refused(presence_penalty=0.5).param == "presence_penalty"
    assert refused(max_tokens=10**6).param == "max_tokens"
    schema = {"type": "object", "properties": {"a": {"type": "string", "format": "ipv4"}}}
    error = refused(
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    )
    assert error.param == "response_format.json_schema.schema"
    assert "format" in error.message


def test_catalog_lists_what_workers_serve_and_survives_a_silent_broadcast() -> None:
    replies: list[list[dict[str, Any]]] = [
        [{"w1@h": {"serves": {"model": "tiny", "embedder": None}}},
         {"kb@h": {"serves": {"model": None, "embedder": "minilm"}}},
         {"old@h": {"model": {"id": "x"}}}],
        [],
    ]  # fmt: skip
    catalog = ModelCatalog(lambda _: replies.pop(0) if replies else [], cache_s=60)
    assert [(m.id, m.kind, m.workers) for m in catalog.models()] == [
        ("minilm", "embedding", ("kb@h",)),
        ("tiny", "chat", ("w1@h",)),
    ]
    assert catalog.find("tiny", "chat") is not None
    assert catalog.find("minilm", "chat") is None  # an embedder is no chat model
    catalog.refresh()  # nobody answers this time: the recent list stays
    assert catalog.cached("tiny", "chat") is not None


FINISHED: set[str] = set()  # job ids the limits below see as having a result


@pytest.fixture
def limits(redis_url: str) -> Iterator[TenantLimits]:
    client = redis.Redis.from_url(redis_url)
    prefix = f"qfleet-test-{uuid.uuid4().hex[:8]}:"
    FINISHED.clear()
    yield TenantLimits(
        client, key_prefix=prefix, requests_per_minute=3, jobs_in_flight=2,
        job_timeout_s=60, finished=FINISHED.__contains__,
    )  # fmt: skip
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


def test_requests_per_minute_are_counted_per_tenant(limits: TenantLimits) -> None:
    refusal: ApiError | None = None
    for _ in range(7):  # at most one minute boundary can pass: one window sees four
        try:
            limits.count_request("acme")
        except ApiError as exc:
            refusal = exc
            break
    assert refusal is not None
    assert refusal.status == 429
    assert refusal.headers is not None
    assert 1 <= int(refusal.headers["retry-after"]) <= 60
    limits.count_request("globex")  # another tenant has its own window


def test_jobs_in_flight_are_released_when_they_end_or_finish(limits: TenantLimits) -> None:
    limits.start_job("acme", "j1")
    limits.start_job("acme", "j2")
    with pytest.raises(ApiError) as caught:
        limits.start_job("acme", "j3")
    assert caught.value.status == 429
    limits.end_job("acme", "j1")
    limits.start_job("acme", "j3")
    FINISHED.add("j2")
    limits.start_job("acme", "j4")  # j2 has a result: it no longer counts


def test_result_listener_wakes_waiters_and_forgets_cancelled_ones(redis_url: str) -> None:
    from redis.asyncio import Redis as AsyncRedis

    from qfleet.producer.gateway.jobwait import ResultListener

    channel = f"qfleet-test-{uuid.uuid4().hex[:8]}:celery-task-meta-j1"

    async def scenario() -> None:
        client = AsyncRedis.from_url(redis_url)
        listener = ResultListener(client, channel + ":idle")
        # Given a waiter on a result channel
        async with listener.watch(channel) as landed:
            # When the result is published
            await client.publish(channel, "{}")
            # Then it wakes
            with anyio.fail_after(5):
                await landed.wait()
        # And a waiter cancelled mid-wait leaves no subscription behind
        with anyio.move_on_after(0.2):
            async with listener.watch(channel) as landed:
                await landed.wait()
        assert listener._waiters == {}
        await listener.aclose()
        await client.aclose()

    anyio.run(scenario)
