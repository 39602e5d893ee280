"""Fixtures of the quality-loop tests: the real PostgreSQL record store, cleaned per module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

RECORDS_URL = os.environ.get("QFLEET_TEST_RECORDS_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def records_url() -> str:
    """The real PostgreSQL. Tests that need it fail (never skip) when it does not answer."""
    import psycopg

    try:
        psycopg.connect(RECORDS_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL at {RECORDS_URL} does not answer ({exc}); records need it")
    return RECORDS_URL


@pytest.fixture(scope="module")
def clean_records(records_url: str, key_prefix: str) -> Iterator[str]:
    """This module's fleet (its key prefix) in the record store; its rows are deleted after."""
    yield key_prefix
    import psycopg

    from qfleet.tasks.records import GATE_TABLE, TABLE

    with psycopg.connect(records_url, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {TABLE} WHERE fleet = %s", (key_prefix,))
        conn.execute(f"DELETE FROM {GATE_TABLE} WHERE fleet = %s", (key_prefix,))


@pytest.fixture(scope="session")
def embedder_dir() -> Path:
    """The default embedder (as tests/knowledge uses it), converted once and cached."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from qfleet.workers.knowledge.embedder_build import ensure_embedder_model

    return ensure_embedder_model()
