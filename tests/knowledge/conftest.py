"""Knowledge-base fixtures: the real embedder (all-MiniLM-L6-v2 through CTranslate2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def embedder_dir() -> Path:
    """The default embedder, converted once and cached between runs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from qfleet.workers.knowledge.embedder_build import ensure_embedder_model

    return ensure_embedder_model()


@pytest.fixture(scope="session")
def embedder(embedder_dir: Path) -> object:
    """The embedder as a worker loads it (int8 on CPU)."""
    from qfleet.workers.knowledge.embedder import Embedder

    return Embedder(embedder_dir, device="cpu", cpu_threads=1)
