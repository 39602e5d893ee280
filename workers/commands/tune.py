"""`qfleet tune`: measure engine layouts on this machine and cache the fastest for workers.

Imports of the engine happen inside the command, so a producer-only install still lists it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from qfleet.producer.console import ExitCode, fail


@click.command()
@click.option(
    "--model-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Model to tune for [QFLEET_MODEL_DIR].",
)
@click.option("--rows", type=int, default=64, show_default=True, help="Rows per candidate.")
@click.option(
    "--tokens",
    type=int,
    default=64,
    show_default=True,
    help="Longest new-token budget; rows mix 1, 1/2, 1/4 and 1/8 of it.",
)
@click.option(
    "--batches", default="16,32", show_default=True, help="Batch sizes to try (comma-separated)."
)
@click.option("--dry-run", is_flag=True, help="Measure and print, but do not cache the choice.")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON.")
def tune(
    model_dir: Path | None, rows: int, tokens: int, batches: str, dry_run: bool, as_json: bool
) -> None:
    """Measure replicas x threads x batch size on this machine and cache the fastest layout.

    Each candidate pushes the same ROWS rows through the worker's own engine scheduler and is
    scored by aggregate tokens per second. The winner is written to the user cache, keyed by
    CPU model, core count, device, model and compute type; workers on this machine use it
    unless QFLEET_ENGINE_REPLICAS / QFLEET_CPU_THREADS / QFLEET_BATCH_MAX_SIZE pin a layout
    (or QFLEET_ENGINE_USE_TUNED=false). Takes minutes: run it on a quiet machine.

    \b
      qfleet tune --model-dir ~/.cache/qfleet/models/qwen2.5-coder-0.5b-instruct-int8-demo-v1
    """
    try:
        from qfleet.tasks.settings import Settings
        from qfleet.workers.engine.model import resolve_compute_type, resolve_device
        from qfleet.workers.engine.tune import Measurement, candidates
        from qfleet.workers.engine.tune import tune as run_tune
    except ImportError as exc:
        fail(
            f"{exc}; tuning needs the worker install (pip install 'qfleet[worker]')",
            ExitCode.UNAVAILABLE,
        )
    settings = Settings()
    model_dir = _model_dir(model_dir or settings.model_dir)
    device = resolve_device(settings.device)
    compute_type = resolve_compute_type(settings.compute_type, device)
    sizes = tuple(int(b) for b in batches.split(","))

    def show(m: Measurement) -> None:
        click.secho(f"{m.layout.label:<12} {m.tok_s:8.1f} tok/s", err=True)

    results = run_tune(
        model_dir, candidates(device, batches=sizes), rows=rows, tokens=tokens,
        device=device, compute_type=compute_type, progress=show,
    )  # fmt: skip
    best = max(results, key=lambda m: m.tok_s)
    # Candidates run without the interactive replica (bulk speed); workers serve with it.
    chosen = replace(best.layout, interactive_replica=True)
    report: dict[str, Any] = {
        "chosen": chosen.as_dict(),
        "measurements": [m.as_dict() for m in results],
    }
    if not dry_run:
        report["cached"] = _save(model_dir, device, compute_type, chosen, report["measurements"])
    _print_report(report, f"{chosen.label} ({best.tok_s:.1f} tok/s)", as_json)


def _print_report(report: dict[str, Any], chosen: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"chosen: {chosen}")
    if "cached" in report:
        click.echo(f"cached: {report['cached']}")


def _model_dir(path: Path | None) -> Path:
    if path is None:
        fail("no model: pass --model-dir or set QFLEET_MODEL_DIR", ExitCode.USAGE)
    return path


def _save(model_dir: Path, device: str, compute_type: str, chosen: Any, measurements: Any) -> str:
    """Cache `chosen` for this machine and model; returns where it was written."""
    from qfleet.workers.engine.layout import layout_cache_path, save_tuned
    from qfleet.workers.engine.manifest import ModelManifest

    path = layout_cache_path(device, ModelManifest.read(model_dir).model_id, compute_type)
    save_tuned(path, chosen, measurements)
    return str(path)
