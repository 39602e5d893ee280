"""A real gateway process (and a worker) for this module's fleet, and keys to call it with."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.localfleet import WorkerProcess
from ops.services import QfleetService, start_gateway
from qfleet.producer.gateway.keys import KeyStore
from qfleet.tasks.redisconn import PRODUCER_RETRIES, fleet_redis
from qfleet.tasks.settings import Settings


@pytest.fixture(scope="module")
def gateway(
    fleet_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[QfleetService]:
    """`qfleet gateway` on a free loopback port, stopped after the module."""
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    service = start_gateway(fleet_env, log)
    yield service
    service.stop()


@pytest.fixture(scope="module")
def key_store(fleet_env: dict[str, str]) -> Iterator[KeyStore]:
    """The gateway's key store for this module's fleet."""
    settings = Settings(
        broker_url=fleet_env["QFLEET_BROKER_URL"],
        redis_key_prefix=fleet_env["QFLEET_REDIS_KEY_PREFIX"],
    )
    redis = fleet_redis(settings, retries=PRODUCER_RETRIES)
    yield KeyStore(redis, settings.redis_key_prefix)
    redis.close()


@pytest.fixture(scope="module")
def api_key(key_store: KeyStore) -> str:
    """A key of tenant `acme`."""
    key, _ = key_store.create("acme", name="tests")
    return key


@pytest.fixture(scope="module")
def other_key(key_store: KeyStore) -> str:
    """A key of another tenant, `globex`."""
    key, _ = key_store.create("globex", name="tests")
    return key


@pytest.fixture(scope="session")
def embedder_dir() -> Path:
    """The default embedder, converted once and cached between runs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from qfleet.workers.knowledge.embedder_build import ensure_embedder_model

    return ensure_embedder_model()


@pytest.fixture(scope="module")
def kb_worker(
    fleet_env: dict[str, str], embedder_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """The worker that owns the module's knowledge base and runs embeddings (no chat model)."""
    env = {k: v for k, v in fleet_env.items() if k != "QFLEET_MODEL_DIR"}
    env |= {
        "QFLEET_KB_DIR": str(tmp_path_factory.mktemp("kb")),
        "QFLEET_EMBEDDER_DIR": str(embedder_dir),
        "QFLEET_CHUNK_TOKENS": "64",
        "QFLEET_CHUNK_OVERLAP_TOKENS": "8",
    }
    log = tmp_path_factory.mktemp("kbw") / "worker.log"
    process = WorkerProcess(
        env, log, hostname=f"kb-{uuid.uuid4().hex[:6]}@test", queues="qfleet.ingest,qfleet.retrieve"
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def admin_key(key_store: KeyStore) -> str:
    """An admin key (may change the knowledge base)."""
    key, _ = key_store.create("acme", name="tests", admin=True)
    return key
