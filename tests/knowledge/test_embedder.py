"""The CTranslate2 embedder agrees with sentence-transformers on the same sentences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qfleet.workers.knowledge.embedder import Embedder, mean_pool_normalise

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Redis is the broker, the result backend and the answer cache.",
    "A worker process loads its model once, after fork.",
    "Knowledge entries carry a source URL, an update time, a version and tags.",
    "How do I roll back a bad update of the documentation?",
    "工作队列把任务从生产者送到工作进程，再把结果送回来。",
    "Retrieval augmented generation answers from documents kept fresh without retraining. " * 6,
    "Cats sleep most of the day.",
]


@pytest.fixture(scope="module")
def reference(embedder_dir: Path) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    from qfleet.workers.knowledge.embedder_build import default_embedder_source

    model = SentenceTransformer(str(default_embedder_source()), device="cpu")
    return np.asarray(model.encode(SENTENCES, normalize_embeddings=True))


@pytest.mark.parametrize("compute_type", ["float32", "int8"])
def test_matches_sentence_transformers(
    embedder_dir: Path, reference: np.ndarray, compute_type: str
) -> None:
    # Given the converted model loaded at a compute type
    embedder = Embedder(embedder_dir, device="cpu", compute_type=compute_type, cpu_threads=1)
    # When it embeds the sentences sentence-transformers embedded
    vectors = embedder.embed(SENTENCES)
    # Then every vector is unit length and points where sentence-transformers' does
    assert vectors.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cosines = (vectors * reference).sum(axis=1)
    assert cosines.min() >= 0.99, cosines


def test_batch_order_and_size_do_not_change_vectors(embedder: Embedder) -> None:
    one_by_one = np.vstack([embedder.embed([s]) for s in SENTENCES])
    together = embedder.embed(SENTENCES)
    # int8 quantizes per batch, so padding shifts values slightly; the direction stays put.
    assert (one_by_one * together).sum(axis=1).min() >= 0.995


def test_mean_pool_ignores_padding() -> None:
    hidden = np.array([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]], dtype=np.float32)
    pooled = mean_pool_normalise(hidden, np.array([2]))
    np.testing.assert_allclose(pooled, [[1.0, 0.0]])


def test_counts_tokens_without_special_tokens(embedder: Embedder) -> None:
    assert embedder.count_tokens("hello world") == 2
    assert embedder.embed([]).shape == (0, 384)


def test_cli_converts_a_model_folder(tmp_path: Path) -> None:
    from ops.localfleet import run_cli
    from qfleet.workers.knowledge.embedder import EMBEDDER_MANIFEST
    from qfleet.workers.knowledge.embedder_build import default_embedder_source

    # When a user converts the packaged model into a folder of their choice
    out = tmp_path / "embedder"
    done = run_cli(["model", "embedder", str(default_embedder_source()), str(out)], {})
    # Then the folder is a loadable embedder and its path is printed
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    assert (out / EMBEDDER_MANIFEST).is_file()
    assert Embedder(out, device="cpu").embed(["hello"]).shape == (1, 384)
