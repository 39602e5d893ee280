"""Reading documents to ingest: a JSONL file (one document per line) or a folder of .txt/.md."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from qfleet.tasks.errors import InvalidJobError
from qfleet.tasks.knowledge import KnowledgeDocument
from qfleet.tasks.schemas import describe_validation_error

TEXT_SUFFIXES = (".txt", ".md", ".markdown")


def read_documents(path: Path, *, tags: list[str] | None = None) -> list[KnowledgeDocument]:
    """The documents in `path` (JSONL file or folder), each with `tags` added.

    A folder's files become documents whose `source_url` is the file's `file://` URL, whose
    `update_time` is its modification time, and whose `version` is the first 12 hex digits of
    its content's sha256 (so an edited file is a new version and an untouched one is unchanged).

    Raises:
        InvalidJobError: a line or file does not make a valid document (the line is named).
    """
    raw = _jsonl(path) if path.is_file() else _folder(path)
    documents = []
    for where, fields in raw:
        fields["tags"] = sorted({*fields.get("tags", []), *(tags or [])})
        try:
            documents.append(KnowledgeDocument.model_validate(fields))
        except ValidationError as exc:
            raise InvalidJobError(f"{where}: {describe_validation_error(exc)}") from exc
    return documents


def _jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                fields = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidJobError(f"{path}:{number}: not JSON ({exc.msg})") from exc
            if not isinstance(fields, dict):
                raise InvalidJobError(f"{path}:{number}: expected a JSON object")
            yield f"{path}:{number}", fields


def _folder(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if not path.is_dir():
        raise InvalidJobError(f"{path} is neither a JSONL file nor a folder")
    for file in sorted(p for p in path.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES):
        text = file.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            continue
        modified = datetime.fromtimestamp(file.stat().st_mtime, tz=UTC)
        yield (
            str(file),
            {
                "id": str(file.relative_to(path)),
                "text": text,
                "source_url": file.resolve().as_uri(),
                "version": hashlib.sha256(text.encode("utf-8")).hexdigest()[:12],
                "update_time": modified.isoformat(),
                "title": _title(text) or file.stem,
            },
        )


def _title(text: str) -> str | None:
    for line in text.splitlines()[:20]:
        if line.startswith("# "):
            return line[2:].strip()[:512] or None
    return None
