"""The benchmark's job lengths: the same seeded mix for every stage and every run."""

from __future__ import annotations

import pytest

from ops.bench.prompts import BUDGET_MIX, bench_budgets


def test_mixed_budgets_are_the_same_list_every_time() -> None:
    first = bench_budgets(32, 128)
    assert first == bench_budgets(32, 128)
    # Drawn from the mix only, with short and long jobs both present
    assert set(first) <= {int(128 * share) for share in BUDGET_MIX}
    assert (min(first), max(first)) == (16, 128)


def test_fixed_budgets_give_every_job_the_same_length() -> None:
    assert bench_budgets(5, 64, "fixed") == [64] * 5
    with pytest.raises(ValueError, match="mixed"):
        bench_budgets(5, 64, "random")
