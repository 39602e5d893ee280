"""The interactive lane's setting: read from the environment, bounded, given by `qfleet worker`,
and the lane's bootstep registered on every worker app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from qfleet.tasks.settings import Settings


def test_the_lane_has_two_slots_by_default_and_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().worker_interactive_slots == 2
    monkeypatch.setenv("QFLEET_WORKER_INTERACTIVE_SLOTS", "0")
    assert Settings().worker_interactive_slots == 0  # 0 turns the lane off


@pytest.mark.parametrize("value", [-1, 65])
def test_lane_slots_out_of_bounds_are_refused(value: int) -> None:
    with pytest.raises(ValidationError, match="worker_interactive_slots"):
        Settings(worker_interactive_slots=value)


def test_qfleet_worker_passes_its_interactive_slots_option(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import qfleet.workers.main as worker_main
    from qfleet.workers.commands.worker import worker

    seen: dict[str, Any] = {}

    class _App:
        def worker_main(self, argv: list[str]) -> None:
            seen["argv"] = argv

    def fake_app(settings: Settings) -> _App:
        seen["settings"] = settings
        return _App()

    monkeypatch.setattr(worker_main, "create_worker_app", fake_app)
    done = CliRunner().invoke(worker, ["--interactive-slots", "3", "-Q", "qfleet.retrieve"])
    assert done.exit_code == 0, done.output
    assert seen["settings"].worker_interactive_slots == 3
    refused = CliRunner().invoke(worker, ["--interactive-slots", "-1", "-Q", "qfleet.retrieve"])
    assert refused.exit_code != 0
    assert "interactive-slots" in refused.output


def test_every_worker_app_runs_the_lane_step() -> None:
    from qfleet.workers.context import context_of
    from qfleet.workers.control import lane_info
    from qfleet.workers.lane import InteractiveLaneStep
    from qfleet.workers.main import create_worker_app

    app = create_worker_app(Settings(worker_interactive_slots=0))
    assert InteractiveLaneStep in app.steps["consumer"]
    assert lane_info(context_of(app)) == {"slots": 0, "running": 0}


def test_status_shows_the_lanes_threads_beside_the_pool() -> None:
    import time

    from qfleet.producer.status import FleetStatus, WorkerStatus, render

    worker = WorkerStatus(name="qfleet@a", pool="thread", concurrency=16, interactive_slots=2,
                          active=17)  # fmt: skip
    table = render(FleetStatus(taken_at=time.time(), queues=[], workers=[worker], runs=[]))
    assert "threadx16+2i" in table
    assert "17/18" in table
