"""The Runs page's data: bulk runs (and the batches built on them) from their keys in Redis.

A run's spec and progress are a hash under `qfleet:run:<run_id>` (see `producer.runs`); this
module lists them, reads the last lines of a run's error file, cancels a run, and resumes one
in a thread of the gateway process (the run's lease keeps a second follower out, wherever it
runs). Output and error files are served when they are on the gateway's host.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel
from redis.exceptions import RedisError

from qfleet.producer.client import FleetClient
from qfleet.producer.gateway.auth import Caller, CallerDep, StateDep
from qfleet.producer.gateway.console.owners import run_owners, visible
from qfleet.producer.gateway.console.route import ConsoleRoute
from qfleet.producer.gateway.errors import ApiError
from qfleet.producer.gateway.state import GatewayState
from qfleet.producer.runs import (
    BulkRun,
    RunProgress,
    RunSpec,
    cancel_run,
    run_progress,
    stored_spec,
)
from qfleet.tasks.constants import RUN_KEY, RUN_LEASE_S
from qfleet.tasks.errors import QfleetError

log = logging.getLogger("qfleet.gateway.console")

RUNS_SHOWN: Final = 200
ERROR_LINES_SHOWN: Final = 50

router = APIRouter(route_class=ConsoleRoute)


class RunView(BaseModel):
    """A run as the console lists it."""

    run_id: str
    status: str
    total: int = 0
    done: int = 0
    failed: int = 0
    in_flight: int = 0
    rate_per_s: float = 0.0
    eta_s: float | None = None
    updated_at: float = 0.0
    kind: str | None = None
    format: str | None = None
    input: str | None = None
    owner: str | None = None
    output_available: bool = False
    errors_available: bool = False


class RunDetail(RunView):
    """A run with the last lines of its error file."""

    error_lines: list[str]
    output: str | None = None
    errors: str | None = None


@router.get("/runs")
def list_runs(caller: CallerDep, state: StateDep) -> list[RunView]:
    """Every run the caller may see, newest update first."""
    prefix = state.settings.redis_key_prefix
    run_ids = _run_ids(state)
    owners = run_owners(state.redis, prefix, run_ids)
    views = [
        _view(state.fleet, run_id, owners[run_id])
        for run_id in run_ids
        if visible(caller, owners[run_id])
    ]
    found = [v for v in views if v is not None]
    return sorted(found, key=lambda v: v.updated_at, reverse=True)[:RUNS_SHOWN]


@router.get("/runs/{run_id}")
def run_detail(run_id: str, caller: CallerDep, state: StateDep) -> RunDetail:
    """One run with its last error lines."""
    view, spec = _visible_run(run_id, caller, state)
    errors = spec.errors if spec else None
    return RunDetail(
        **view.model_dump(),
        error_lines=_tail(errors, ERROR_LINES_SHOWN),
        output=str(spec.output) if spec else None,
        errors=str(errors) if errors else None,
    )


@router.post("/runs/{run_id}/cancel")
def cancel(run_id: str, caller: CallerDep, state: StateDep) -> RunView:
    """Stop the run: no more jobs are sent and those in flight are revoked."""
    _visible_run(run_id, caller, state)
    cancel_run(state.fleet, run_id)
    return _visible_run(run_id, caller, state)[0]


@router.post("/runs/{run_id}/resume")
def resume(run_id: str, caller: CallerDep, state: StateDep) -> RunView:
    """Follow an interrupted run again, in a thread of this gateway process."""
    view, spec = _visible_run(run_id, caller, state)
    if spec is None:
        raise ApiError(409, f"run {run_id} has no stored spec to resume from", code="not_resumable")
    if view.status == "cancelled":
        raise ApiError(409, f"run {run_id} was cancelled; a cancelled run is not resumed",
                       code="run_cancelled")  # fmt: skip
    if view.status == "running":
        raise ApiError(409, f"run {run_id} is being followed already", code="run_busy")
    if not spec.input.is_file():
        raise ApiError(
            409, f"the input of run {run_id} is not on this gateway's host; resume it where it "
            f"was submitted: qfleet run resume {run_id}", code="not_resumable",
        )  # fmt: skip
    threading.Thread(target=_follow, args=(state, spec), name=f"run-{run_id}", daemon=True).start()
    return view.model_copy(update={"status": "resuming"})


@router.get("/runs/{run_id}/output")
def download_output(run_id: str, caller: CallerDep, state: StateDep) -> FileResponse:
    """The run's results file (JSONL)."""
    _, spec = _visible_run(run_id, caller, state)
    return _file(spec.output if spec else None, f"{run_id}.jsonl")


@router.get("/runs/{run_id}/errors")
def download_errors(run_id: str, caller: CallerDep, state: StateDep) -> FileResponse:
    """The run's error file (JSONL)."""
    _, spec = _visible_run(run_id, caller, state)
    return _file(spec.errors if spec else None, f"{run_id}.errors.jsonl")


# --- reading runs ----------------------------------------------------------------------------


def _run_ids(state: GatewayState) -> list[str]:
    prefix = state.settings.redis_key_prefix
    start = prefix + RUN_KEY.format(run_id="")
    try:
        names = state.redis.scan_iter(match=start + "*", count=1000)
        # Run ids have no colon, so `...:pending` and `...:lease` are not runs.
        return sorted({n.decode()[len(start) :] for n in names} - {""})
    except RedisError as exc:
        raise ApiError(503, f"Redis does not answer ({type(exc).__name__})",
                       code="redis_unavailable") from exc  # fmt: skip


def _view(fleet: FleetClient, run_id: str, owner: str | None) -> RunView | None:
    if ":" in run_id:
        return None
    progress = run_progress(fleet, run_id)
    spec = stored_spec(fleet, run_id)
    if progress is None and spec is None:
        return None
    fields: dict[str, Any] = progress.model_dump() if progress else {"status": "starting"}
    fields["status"] = _status(progress)
    fields.pop("output", None)
    fields.pop("errors", None)
    if spec is not None:
        fields.update(
            kind=spec.kind, format=spec.format, input=str(spec.input),
            output_available=spec.output.is_file(), errors_available=spec.errors.is_file(),
        )  # fmt: skip
    return RunView(**{**fields, "run_id": run_id, "owner": owner})


def _status(progress: RunProgress | None) -> str:
    if progress is None:
        return "starting"
    # A running run whose follower stopped renewing its lease has nobody following it.
    if progress.status == "running" and time.time() - progress.updated_at > 2 * RUN_LEASE_S:
        return "interrupted"
    return progress.status


def _visible_run(
    run_id: str, caller: Caller, state: GatewayState
) -> tuple[RunView, RunSpec | None]:
    owner = run_owners(state.redis, state.settings.redis_key_prefix, [run_id])[run_id]
    view = _view(state.fleet, run_id, owner) if visible(caller, owner) else None
    if view is None:
        raise ApiError(404, f"no run {run_id!r}", code="run_not_found")
    return view, stored_spec(state.fleet, run_id)


def _tail(path: Path | None, lines: int) -> list[str]:
    if path is None or not path.is_file():
        return []
    with path.open(encoding="utf-8", errors="replace") as handle:
        return [line.rstrip("\n") for line in deque(handle, maxlen=lines)]


def _file(path: Path | None, filename: str) -> FileResponse:
    if path is None or not path.is_file():
        raise ApiError(404, "the file is not on this gateway's host (yet)", code="file_not_found")
    return FileResponse(path, media_type="application/x-ndjson", filename=filename)


def _follow(state: GatewayState, spec: RunSpec) -> None:
    """Run `spec` to its end with a client of its own (FleetClient is not shared across threads)."""
    with FleetClient(state.settings) as fleet:
        try:
            final = BulkRun(fleet, spec).execute()
            log.info("run %s resumed by the console ended %s", spec.run_id, final.status)
        except (QfleetError, RedisError, OSError) as exc:
            log.warning("run %s resumed by the console stopped: %s", spec.run_id, exc)
