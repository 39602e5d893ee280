"""`qfleet run`: bulk runs from a JSONL file, with progress, cancel and resume."""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel

from qfleet.producer.console import ExitCode, fail, fleet_client, handle_errors
from qfleet.producer.runs import (
    BulkRun,
    RunProgress,
    RunSpec,
    cancel_run,
    default_run_id,
    detect_format,
    run_progress,
    stored_spec,
)
from qfleet.tasks.constants import RUN_LEASE_S
from qfleet.tasks.errors import QfleetError
from qfleet.tasks.schemas import DEFAULT_EXTRACT_MAX_TOKENS


@click.group()
def run() -> None:
    """Bulk runs: a JSONL file in, one JSONL result line per item out.

    \b
    Native input lines:   {"id": "a1", "text": "..."}             (--kind extract)
                          {"id": "a1", "prompt": "...", ...}      (--kind generate)
    OpenAI batch input:   {"custom_id": ..., "method": "POST", "url": "/v1/chat/completions",
                           "body": {"messages": [...], "response_format": {...}}}
    Results are appended as they finish; a killed run resumes (same command, or
    `qfleet run resume RUN`) without redoing or duplicating finished items.
    """


def _load_schema(schema: Path | None, schema_model: str | None) -> dict[str, Any] | None:
    if schema is not None:
        data = json.loads(schema.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            fail(f"{schema} must hold a JSON Schema object", ExitCode.USAGE)
        return data
    if schema_model is None:
        return None
    module_name, _, class_name = schema_model.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        fail(f"cannot load {schema_model!r} (module:Class): {exc}", ExitCode.USAGE)
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        fail(f"{schema_model} is not a pydantic model class", ExitCode.USAGE)
    return target.model_json_schema()


@run.command("submit")
@click.argument(
    "input_path", metavar="INPUT", type=click.Path(path_type=Path, dir_okay=False, exists=True)
)
@click.option(
    "--out",
    "output",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Results JSONL (appended).",
)
@click.option(
    "--errors",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Failures JSONL [OUT with .errors.jsonl].",
)
@click.option(
    "--kind",
    type=click.Choice(["extract", "generate"]),
    default="extract",
    show_default=True,
    help="Native input only.",
)
@click.option(
    "--schema",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="JSON Schema file for extraction.",
)
@click.option(
    "--schema-model", metavar="MODULE:CLASS", help="A pydantic model whose schema to use."
)
@click.option("--instructions", help="Extra instructions for every document.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "native", "openai"]),
    default="auto",
    show_default=True,
)
@click.option("--run-id", help="Name the run [derived from INPUT and OUT, so repeating resumes].")
@click.option("--batch", type=int, default=16, show_default=True, help="Documents per extract job.")
@click.option("--window", type=int, default=64, show_default=True, help="Jobs in flight at once.")
@click.option(
    "--max-tokens",
    type=int,
    default=DEFAULT_EXTRACT_MAX_TOKENS,
    show_default=True,
    help="Per item/document.",
)
@click.option("--temperature", type=float, default=0.0, show_default=True)
@click.option(
    "--json", "as_json", is_flag=True, help="No progress bar; print the final progress as JSON."
)
@handle_errors
def submit(
    input_path: Path,
    output: Path,
    errors: Path | None,
    kind: str,
    schema: Path | None,
    schema_model: str | None,
    instructions: str | None,
    fmt: str,
    run_id: str | None,
    batch: int,
    window: int,
    max_tokens: int,
    temperature: float,
    as_json: bool,
) -> None:  # fmt: skip
    """Run every item of INPUT through the fleet, writing results to --out.

    \b
    Examples:
      qfleet run submit docs.jsonl --kind extract --schema person.json --out people.jsonl
      qfleet run submit prompts.jsonl --kind generate --out answers.jsonl
      qfleet run submit openai-batch.jsonl --out batch-output.jsonl --errors batch-errors.jsonl
    """
    spec = RunSpec(
        run_id=run_id or default_run_id(input_path, output),
        kind=kind,
        input=input_path.resolve(),
        output=output.resolve(),
        errors=(errors or output.with_suffix(".errors.jsonl")).resolve(),
        format=detect_format(input_path) if fmt == "auto" else fmt,
        json_schema=_load_schema(schema, schema_model),
        instructions=instructions,
        max_tokens=max_tokens,
        temperature=temperature,
        batch=batch,
        window=window,
    )
    _follow(spec, as_json)


@run.command("resume")
@click.argument("run_id")
@click.option(
    "--json", "as_json", is_flag=True, help="No progress bar; print the final progress as JSON."
)
@handle_errors
def resume(run_id: str, as_json: bool) -> None:
    """Continue RUN_ID after a crash, from the spec it was submitted with."""
    with fleet_client() as fleet:
        spec = stored_spec(fleet, run_id)
    if spec is None:
        fail(
            f"no run {run_id!r} (runs are kept a week after their last update)", ExitCode.NOT_FOUND
        )
    _follow(spec, as_json)


def _follow(spec: RunSpec, as_json: bool) -> None:
    if not as_json:
        click.secho(f"run {spec.run_id}: {spec.input} -> {spec.output}", err=True, dim=True)
    with fleet_client() as fleet:
        bulk = BulkRun(fleet, spec)
        try:
            final = bulk.execute() if as_json else _with_bar(bulk)
        except QfleetError as exc:
            if exc.code in ("run_busy", "run_cancelled"):
                fail(str(exc), ExitCode.JOB_FAILED)
            raise
    if as_json:
        click.echo(final.model_dump_json(indent=2))
    else:
        _print_progress(final)
    if final.failed or final.status != "finished":
        sys.exit(int(ExitCode.JOB_FAILED))


def _with_bar(bulk: BulkRun) -> RunProgress:
    shown = {"count": -1}
    bar: Any = None

    def on_progress(progress: RunProgress) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=progress.total, label="items", file=sys.stderr)
            bar.__enter__()
            shown["count"] = 0
        count = progress.done + progress.failed
        bar.label = f"{progress.done} done, {progress.failed} failed, {progress.rate_per_s:.1f}/s"
        bar.update(count - shown["count"])
        shown["count"] = count

    try:
        return bulk.execute(on_progress)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


@run.command("status")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the progress as JSON.")
@handle_errors
def status(run_id: str, as_json: bool) -> None:
    """Print RUN_ID's progress: done/failed/total, rate, ETA."""
    with fleet_client() as fleet:
        progress = run_progress(fleet, run_id)
    if progress is None:
        fail(f"no run {run_id!r}", ExitCode.NOT_FOUND)
    if progress.status == "running" and time.time() - progress.updated_at > 2 * RUN_LEASE_S:
        progress = progress.model_copy(update={"status": "interrupted"})
    if as_json:
        click.echo(progress.model_dump_json(indent=2))
        return
    _print_progress(progress)
    if progress.status == "interrupted":
        click.echo(f"no producer is following it: qfleet run resume {run_id}")


@run.command("cancel")
@click.argument("run_id")
@handle_errors
def cancel(run_id: str) -> None:
    """Stop RUN_ID: no more jobs are sent and those in flight are cancelled.

    A queued job never runs; a running one stops decoding. The run's producer writes each item
    it had in flight to the errors file as `cancelled` (a new run over the same files does them).
    """
    with fleet_client() as fleet:
        progress = cancel_run(fleet, run_id)
    if progress is None:
        fail(f"no run {run_id!r}", ExitCode.NOT_FOUND)
    click.echo(
        f"run {run_id} cancelled ({progress.done} done, {progress.failed} failed kept; "
        f"{progress.in_flight} in flight cancelled)"
    )


def _print_progress(progress: RunProgress) -> None:
    eta = "-" if progress.eta_s is None else f"{progress.eta_s:.0f}s"
    cancelled = f", {progress.cancelled} cancelled" if progress.cancelled else ""
    click.echo(
        f"run {progress.run_id} {progress.status}: {progress.done} done, {progress.failed} "
        f"failed{cancelled}, {progress.total} total; {progress.rate_per_s:.2f} items/s, "
        f"ETA {eta}\n"
        f"  results: {progress.output}\n  errors:  {progress.errors}"
    )
