"""Reading documents to ingest from JSONL and from folders (producer side)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qfleet.producer.documents import read_documents
from qfleet.tasks.errors import InvalidJobError


def test_jsonl_lines_become_documents_with_extra_tags(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    lines = [
        {"id": "a", "text": "Alpha.", "source_url": "kb://a", "version": 3, "tags": ["x"]},
        {"text": "Beta.", "source_url": "kb://b", "update_time": "2025-01-01T00:00:00Z"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    alpha, beta = read_documents(path, tags=["batch"])
    assert (alpha.version, alpha.tags) == ("3", ["batch", "x"])
    assert beta.version == "1"
    assert beta.update_time is not None


def test_a_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "ok", "source_url": "kb://a"}\n{"text": ""}\n')
    with pytest.raises(InvalidJobError, match=r"docs.jsonl:2: .*source_url"):
        read_documents(path)


def test_folder_files_are_versioned_by_content(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "guide.md").write_text("# The Guide\nText.")
    (tmp_path / "notes.txt").write_text("Notes.")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "empty.md").write_text("  \n")
    notes, guide = read_documents(tmp_path)
    assert guide.title == "The Guide"
    assert guide.source_url == (tmp_path / "sub" / "guide.md").resolve().as_uri()
    assert notes.title == "notes"
    first_version = notes.version
    (tmp_path / "notes.txt").write_text("Notes, edited.")
    assert read_documents(tmp_path)[0].version != first_version
