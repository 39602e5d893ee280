"""A real gateway process (and a worker) for this module's fleet, and keys to call it with."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
