"""Real-model tests: the module's worker serves the demo Qwen model instead of the tiny one."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def fleet_env(redis_url: str, key_prefix: str, demo_model: Path) -> dict[str, str]:
    """QFLEET_* variables for a worker serving the demo model with two CPU threads."""
    return {
        "QFLEET_BROKER_URL": redis_url,
        "QFLEET_REDIS_KEY_PREFIX": key_prefix,
        "QFLEET_MODEL_DIR": str(demo_model),
        "QFLEET_CPU_THREADS": "2",
    }
