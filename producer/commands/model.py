"""`qfleet model`: build, convert and inspect CTranslate2 model folders."""

from __future__ import annotations

from pathlib import Path

import click

from producer.console import ExitCode, fail
from tasks.errors import QfleetError


@click.group()
def model() -> None:
    """Build, convert and inspect CTranslate2 model folders."""


@model.command("tiny")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False), required=False)
def model_tiny(out: Path | None) -> None:
    """Build the tiny random-weight Qwen2 test model into OUT (default: the cache) and print it."""
    try:
        from workers.engine.tiny import ensure_tiny_model
    except ImportError as exc:
        fail(f"{exc}; this needs: pip install 'qfleet[convert]'", ExitCode.UNAVAILABLE)
    try:
        click.echo(str(ensure_tiny_model(out.resolve() if out else None)))
    except QfleetError as exc:
        fail(str(exc), ExitCode.UNAVAILABLE)
