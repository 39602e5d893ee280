"""The committed extraction development set is what its generator writes, and passes its checks."""

from __future__ import annotations

from ops.bench.extract_devset import build, check, load
from ops.bench.extract_filler import document_words


def test_committed_set_passes_the_generator_checks() -> None:
    records = load()

    assert check(records) == []
    assert {r["lang"] for r in records} == {"en", "zh"}


def test_generator_reproduces_the_committed_set() -> None:
    assert build() == load()


def test_chinese_length_is_characters_over_one_point_seven() -> None:
    assert document_words("一二三 四五六七\n", "zh") == 7 / 1.7
    assert document_words("one two\nthree", "en") == 3
