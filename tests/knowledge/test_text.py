"""Lexical terms (CJK-aware) and token-aware chunking."""

from __future__ import annotations

import itertools

import pytest

from qfleet.workers.knowledge.chunking import chunk_text
from qfleet.workers.knowledge.embedder import Embedder
from qfleet.workers.knowledge.lexical import document_vector, query_vector, term_id, terms


def test_cjk_becomes_bigrams_and_latin_lowercased_words() -> None:
    assert terms("Qdrant 知识库 is FAST") == ["qdrant", "知识", "识库", "fast"]
    assert terms("库") == ["库"]


def test_document_weights_saturate_with_term_frequency() -> None:
    once = document_vector("queue")
    thrice = document_vector("queue queue queue")
    assert once.indices == thrice.indices == [term_id("queue")]
    assert once.values[0] < thrice.values[0] < 2.2  # k1 + 1 bounds a BM25 term weight


def test_query_vector_has_unit_weights_sorted() -> None:
    vector = query_vector("知识库 知识库 redis")
    assert vector.indices == sorted(vector.indices)
    assert set(vector.values) == {1.0}


def test_chunks_fit_the_window_and_overlap(embedder: Embedder) -> None:
    text = " ".join(f"word{i}" for i in range(300)) + " 知识库的版本更新以后旧的答案不能再用了" * 5
    chunks = chunk_text(text, embedder.tokenize_offsets, max_tokens=50, overlap_tokens=10)
    assert len(chunks) > 5
    assert all(embedder.count_tokens(c.text) <= 50 for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for before, after in itertools.pairwise(chunks):
        assert after.start_char < before.start_char + len(before.text)  # they overlap
    assert chunks[-1].text.endswith("再用了")


def test_chunking_rejects_an_overlap_as_large_as_the_window(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("x", embedder.tokenize_offsets, max_tokens=8, overlap_tokens=8)
    assert chunk_text("   ", embedder.tokenize_offsets, max_tokens=8, overlap_tokens=2) == []
