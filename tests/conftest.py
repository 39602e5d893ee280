"""Fixtures shared by every test: clean QFLEET_* env, the real Redis, the tiny model, workers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from ops.localfleet import WorkerProcess

if TYPE_CHECKING:
    from qfleet.workers.engine.guided import GuidedDecoder
    from qfleet.workers.engine.model import LoadedModel

REDIS_URL = os.environ.get("QFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(autouse=True)
def _clean_qfleet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's QFLEET_* settings."""
    for name in list(os.environ):
        if name.startswith("QFLEET_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis. Tests that need it fail (never skip) when it does not answer."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} does not answer ({exc}); run ops/dev/ensure-redis")
    return REDIS_URL


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The tiny Qwen2 test model, built once and cached between runs."""
    from qfleet.workers.engine.tiny import ensure_tiny_model

    return ensure_tiny_model()


@pytest.fixture(scope="session")
def demo_model() -> Path:
    """The converted demo Qwen model from the user cache; `make test` pulls it first."""
    from qfleet.tasks.constants import MODEL_MANIFEST
    from qfleet.workers.engine.demo_model import demo_model_dir

    path = demo_model_dir()
    if not (path / MODEL_MANIFEST).is_file():
        pytest.fail(
            f"the demo model is not at {path}: run `make demo-model` (qfleet model pull demo) once"
        )
    return path


@pytest.fixture(scope="module")
def key_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of this test module's own; its keys are deleted afterwards."""
    prefix = f"qfleet-test-{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture(scope="module")
def fleet_env(redis_url: str, key_prefix: str, tiny_model: Path) -> dict[str, str]:
    """QFLEET_* variables that point a worker or the CLI at this module's fleet."""
    return {
        "QFLEET_BROKER_URL": redis_url,
        "QFLEET_REDIS_KEY_PREFIX": key_prefix,
        "QFLEET_MODEL_DIR": str(tiny_model),
        "QFLEET_CPU_THREADS": "1",
    }


@pytest.fixture(scope="module")
def worker(
    fleet_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """One real worker process serving the tiny model for this test module."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    process = WorkerProcess(fleet_env, log, hostname=f"w1-{uuid.uuid4().hex[:6]}@test").start()
    yield process
    process.stop()


@pytest.fixture
def fleet(fleet_env: dict[str, str]) -> Iterator[object]:
    """A `FleetClient` for this module's fleet, closed after the test."""
    from qfleet.producer.client import FleetClient
    from qfleet.tasks.settings import Settings

    settings = Settings(
        broker_url=fleet_env["QFLEET_BROKER_URL"],
        redis_key_prefix=fleet_env["QFLEET_REDIS_KEY_PREFIX"],
    )
    client = FleetClient(settings)
    yield client
    client.close()


@pytest.fixture(scope="module")
def tiny_loaded(tiny_model: Path) -> Iterator[LoadedModel]:
    """The tiny model on one CPU thread, closed after the module."""
    from qfleet.workers.engine.model import EngineOptions, load_model

    loaded = load_model(tiny_model, EngineOptions(device="cpu", cpu_threads=1))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def tiny_decoder(tiny_loaded: LoadedModel, tiny_model: Path) -> GuidedDecoder:
    """The guided decoder of `tiny_loaded`."""
    from qfleet.workers.extraction import guided_decoder

    return guided_decoder(tiny_loaded, tiny_model)
