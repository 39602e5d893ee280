"""Which engine layout a worker runs: pinned settings, then `qfleet tune`'s cached choice, then
the default; and `qfleet tune` itself on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from qfleet.workers.engine.layout import (
    EngineLayout,
    default_layout,
    layout_cache_path,
    load_tuned,
    resolve_layout,
    save_tuned,
)


def _resolve(tuned: Path | None, **pinned: int) -> EngineLayout:
    args = {"pinned_replicas": 0, "pinned_threads": 0, "pinned_batch": 0, **pinned}
    return resolve_layout(
        device="cpu", tuned_path=tuned, fallback_batch=16, interactive_replica=True, **args
    )


def test_default_overlaps_two_calls_when_there_are_cores_for_them() -> None:
    assert default_layout("cpu", 8, 16) == EngineLayout(2, 4, 16)
    assert default_layout("cpu", 4, 16) == EngineLayout(2, 2, 16)
    # Small CPUs: one call with every core (it beat two one-core calls where measured)
    assert default_layout("cpu", 2, 32) == EngineLayout(1, 2, 32)
    assert default_layout("cpu", 1, 16) == EngineLayout(1, 1, 16)


def test_a_tuned_layout_is_used_and_pinned_settings_override_it(tmp_path: Path) -> None:
    # Given a cached choice of 3 replicas x 1 thread, batch 24
    path = tmp_path / "layout.json"
    save_tuned(path, EngineLayout(3, 1, 24), [{"tok_s": 1.0}])
    # Then a worker without pins runs it, and says where it came from
    assert _resolve(path) == EngineLayout(3, 1, 24, True, "tuned")
    # And a pinned batch size wins over it
    assert _resolve(path, pinned_batch=8) == EngineLayout(3, 1, 8, True, "settings")


def test_an_unreadable_cache_falls_back_to_the_default(tmp_path: Path) -> None:
    path = tmp_path / "layout.json"
    path.write_text("{not json")
    assert load_tuned(path) is None
    assert _resolve(path).source == "default"


def test_qfleet_tune_measures_and_caches_a_layout(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qfleet.workers.commands.tune import tune
    from qfleet.workers.engine.tiny import TINY_MODEL_ID

    # Given an empty user cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    # When the tiny model is tuned with two batch sizes
    args = ["--model-dir", str(tiny_model), "--rows", "4", "--tokens", "4", "--batches", "2,4"]
    done = CliRunner().invoke(tune, [*args, "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    # Then every candidate was measured and the fastest is cached where workers look
    assert len(report["measurements"]) >= 2
    assert all(0 < m["tokens"] <= 16 for m in report["measurements"])
    cached = Path(report["cached"])
    assert cached == layout_cache_path("cpu", TINY_MODEL_ID, "int8")
    assert load_tuned(cached) == EngineLayout(
        report["chosen"]["replicas"],
        report["chosen"]["threads"],
        report["chosen"]["max_batch_size"],
        True,
        "tuned",
    )


def test_cpu_slots_count_the_calls_the_cores_run_at_once() -> None:
    from qfleet.workers.engine.layout import cpu_slots, usable_cores

    cores = usable_cores()
    # One call per group of `threads` cores on a CPU, at least one; no limit on a GPU
    assert cpu_slots("cpu", EngineLayout(2, 1, 16)) == cores
    assert cpu_slots("cpu", EngineLayout(1, cores, 16)) == 1
    assert cpu_slots("cpu", EngineLayout(1, cores * 4, 16)) == 1
    assert cpu_slots("cuda", EngineLayout(2, 1, 16)) == 0
