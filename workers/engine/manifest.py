"""`qfleet-model.json`: where a converted model came from and how it was made.

Every model folder qfleet builds (converted, pulled or the tiny test model) gets one, written by
`write_manifest`; workers read it with `ModelManifest.read`, log it at start and put its
`model_id` in every result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qfleet.tasks.constants import MODEL_MANIFEST

# Qwen2.5 models accept 32k tokens; a folder without a manifest is assumed to be one of them.
DEFAULT_MAX_CONTEXT = 32_768


@dataclass(frozen=True)
class ModelManifest:
    """The parts of `qfleet-model.json` a worker uses, plus the whole file as `raw`."""

    model_id: str
    max_context: int = DEFAULT_MAX_CONTEXT
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, model_dir: Path) -> ModelManifest:
        """The manifest of `model_dir`, or one named after the folder when it has none."""
        path = model_dir / MODEL_MANIFEST
        if not path.is_file():
            return cls(model_id=model_dir.name)
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            model_id=str(raw.get("model_id") or model_dir.name),
            max_context=int(raw.get("max_context") or DEFAULT_MAX_CONTEXT),
            raw=raw,
        )


def write_manifest(
    model_dir: Path,
    *,
    model_id: str,
    source: str,
    source_sha256: str,
    quantization: str,
    max_context: int,
    chat_template: str,
    converter_versions: Mapping[str, str],
) -> Path:
    """Write `qfleet-model.json` into `model_dir` and return its path.

    Args:
        model_dir: The converted model folder.
        model_id: The id results report for this model.
        source: What it was converted from (hub id, folder, file, or a description).
        source_sha256: Hash of the source weights (`file_sha256` or `tree_sha256`).
        quantization: The CTranslate2 quantization of `model.bin`.
        max_context: Tokens the model accepts (prompt plus new tokens).
        chat_template: The chat template shipped in the folder; its hash is recorded.
        converter_versions: Versions of the libraries that did the conversion.
    """
    manifest = {
        "model_id": model_id,
        "source": source,
        "source_sha256": source_sha256,
        "quantization": quantization,
        "max_context": max_context,
        "chat_template_sha256": hashlib.sha256(chat_template.encode()).hexdigest(),
        "converter": dict(converter_versions),
    }
    path = model_dir / MODEL_MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def file_sha256(path: Path, chunk_bytes: int = 1 << 22) -> str:
    """The sha256 of one file, read in chunks (model files are gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(folder: Path) -> str:
    """One sha256 over every file of `folder` (names and contents, in sorted order).

    Hidden files and folders (`.git`, `.cache`) are left out: they are not the model.
    """
    digest = hashlib.sha256()
    files = (p for p in folder.rglob("*") if p.is_file())
    for path in sorted(p for p in files if not _is_hidden(p.relative_to(folder))):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)
