"""Where qfleet keeps what it builds or fetches once per machine: models, GGUF files, layouts."""

from __future__ import annotations

import os
from pathlib import Path

from qfleet.tasks.constants import CACHE_DIR_NAME


def default_cache_root() -> Path:
    """`$XDG_CACHE_HOME/qfleet` (or `~/.cache/qfleet`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / CACHE_DIR_NAME
