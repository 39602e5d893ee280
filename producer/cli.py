"""`qfleet`: submit jobs, read results, run workers and build models, from one command.

Exit codes are named in `ExitCode`, so scripts can tell a failed job from an unreachable broker.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from tasks.constants import ALL_QUEUES, QUEUE_GENERATE
from tasks.errors import (
    BrokerUnavailableError,
    InvalidJobError,
    JobFailedError,
    JobTimeoutError,
    QfleetError,
)
from tasks.schemas import JobError, JobResult

F = TypeVar("F", bound=Callable[..., Any])


class ExitCode(enum.IntEnum):
    """What `qfleet` exits with."""

    OK = 0
    JOB_FAILED = 1
    USAGE = 2  # click's own code for bad arguments
    TIMEOUT = 3
    UNAVAILABLE = 4  # broker/result backend unreachable, or a dependency missing
    NOT_FOUND = 5
    INVALID_JOB = 6


def _fail(message: str, code: ExitCode) -> NoReturn:
    click.secho(f"qfleet: {message}", fg="red", err=True)
    sys.exit(int(code))


def _client() -> Any:
    from producer.client import FleetClient

    return FleetClient()


def _print_outcome(outcome: JobResult | JobError, as_json: bool) -> None:
    if as_json:
        click.echo(outcome.model_dump_json(indent=2))
        return
    if isinstance(outcome, JobError):
        click.secho(f"job {outcome.job_id} failed ({outcome.code}): {outcome.message}", fg="red")
        return
    click.echo(outcome.text)
    t, u = outcome.timings, outcome.usage
    click.secho(
        f"[{outcome.job_id} · {outcome.model.id} on {outcome.model.device} · "
        f"{u.prompt_tokens}+{u.completion_tokens} tokens · {t.tokens_per_s:.1f} tok/s · "
        f"{t.total_ms:.0f} ms total · {outcome.finish_reason}]",
        dim=True,
        err=True,
    )


def _handle_errors(func: F) -> F:
    """Turn qfleet's errors into a message and a named exit code."""

    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InvalidJobError as exc:
            _fail(str(exc), ExitCode.INVALID_JOB)
        except BrokerUnavailableError as exc:
            _fail(f"{exc} (check QFLEET_BROKER_URL)", ExitCode.UNAVAILABLE)
        except JobTimeoutError as exc:
            _fail(str(exc), ExitCode.TIMEOUT)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="qfleet")
def main() -> None:
    """qfleet: an asynchronous job-queue fleet for small-LLM work.

    Producers submit jobs to Redis; `qfleet worker` processes pull them, run a CTranslate2
    Qwen model, and write results back. Configuration comes from QFLEET_* environment
    variables (see README).

    \b
    Quick tour:
      qfleet model tiny ./models/tiny        build a tiny test model
      QFLEET_MODEL_DIR=./models/tiny qfleet worker
      qfleet generate "Say hello" --max-tokens 32
      qfleet result JOB_ID --json
    """


@main.command()
@click.argument("prompt")
@click.option("--system", help="System prompt placed before PROMPT.")
@click.option("--max-tokens", type=int, default=256, show_default=True, help="New-token budget.")
@click.option("--temperature", type=float, default=0.0, show_default=True, help="0 is greedy.")
@click.option("--top-p", type=float, default=1.0, show_default=True)
@click.option("--top-k", type=int, default=0, show_default=True, help="0 disables top-k.")
@click.option("--stop", multiple=True, help="Stop at this string (repeatable).")
@click.option("--job-id", help="Your own job id (idempotency key).")
@click.option("--no-wait", is_flag=True, help="Print the job id and return at once.")
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds to wait.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_handle_errors
def generate(
    prompt: str,
    system: str | None,
    max_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int,
    stop: tuple[str, ...],
    job_id: str | None,
    no_wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Generate an answer to PROMPT and print it.

    \b
    Examples:
      qfleet generate "Solve 2x + 5 = 17" --max-tokens 128
      qfleet generate "List three colours" --stop "4." --json
      qfleet generate "Summarise ..." --no-wait      # prints the job id
    """
    fields: dict[str, Any] = {
        "prompt": prompt,
        "system": system,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "stop": list(stop),
    }
    if job_id:
        fields["job_id"] = job_id
    from tasks.schemas import validate_generate_job

    job = validate_generate_job(fields)
    with _client() as fleet:
        submitted = fleet.submit(job)
        if no_wait:
            click.echo(json.dumps({"job_id": submitted}) if as_json else submitted)
            return
        try:
            outcome: JobResult | JobError = fleet.wait(submitted, timeout=timeout)
        except JobFailedError as exc:
            outcome = exc.error
    _print_outcome(outcome, as_json)
    if isinstance(outcome, JobError):
        sys.exit(int(ExitCode.JOB_FAILED))


@main.command()
@click.argument("job_id")
@click.option("--wait", "wait_s", type=float, default=0, help="Wait up to this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_handle_errors
def result(job_id: str, wait_s: float, as_json: bool) -> None:
    """Print the result of JOB_ID (or its state while it has none)."""
    with _client() as fleet:
        if wait_s > 0:
            with contextlib.suppress(JobFailedError):
                fleet.wait(job_id, timeout=wait_s)
        outcome = fleet.result(job_id)
        state = fleet.status(job_id) if outcome is None else outcome.status
    if outcome is None:
        if as_json:
            click.echo(json.dumps({"job_id": job_id, "status": state}))
        else:
            click.echo(f"job {job_id} is {state}")
        sys.exit(int(ExitCode.NOT_FOUND if state == "unknown" else ExitCode.TIMEOUT))
    _print_outcome(outcome, as_json)
    if isinstance(outcome, JobError):
        sys.exit(int(ExitCode.JOB_FAILED))


@main.command()
@click.option(
    "--model-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="CTranslate2 model folder [env QFLEET_MODEL_DIR].",
)
@click.option(
    "-c", "--concurrency", type=int, help="Jobs held at once [QFLEET_WORKER_CONCURRENCY]."
)
@click.option(
    "-Q",
    "--queues",
    default=QUEUE_GENERATE,
    show_default=True,
    help=f"Comma-separated queues to consume ({', '.join(ALL_QUEUES)}).",
)
@click.option(
    "--pool",
    type=click.Choice(["threads", "solo", "prefork"]),
    default="threads",
    show_default=True,
    help="threads/solo share one model per process; prefork loads one per child after fork.",
)
@click.option("-n", "--hostname", default="qfleet@%h", show_default=True)
@click.option("-l", "--loglevel", default="INFO", show_default=True)
def worker(
    model_dir: Path | None,
    concurrency: int | None,
    queues: str,
    pool: str,
    hostname: str,
    loglevel: str,
) -> None:
    """Run a worker process that serves jobs with the configured model."""
    if model_dir is not None:
        os.environ["QFLEET_MODEL_DIR"] = str(model_dir.resolve())
    if concurrency is not None:
        os.environ["QFLEET_WORKER_CONCURRENCY"] = str(concurrency)
    from tasks.settings import Settings

    settings = Settings()
    if settings.model_dir is None or not (settings.model_dir / "model.bin").is_file():
        _fail(
            f"no CTranslate2 model at {settings.model_dir!s}: pass --model-dir or set "
            "QFLEET_MODEL_DIR (build one with `qfleet model tiny DIR`)",
            ExitCode.NOT_FOUND,
        )
    try:
        from workers.main import app
    except ImportError as exc:
        _fail(f"{exc}; a worker needs: pip install 'qfleet[worker]'", ExitCode.UNAVAILABLE)
    app.worker_main(
        [
            "worker",
            f"--pool={pool}",
            f"--concurrency={settings.worker_concurrency}",
            f"--queues={queues}",
            f"--hostname={hostname}",
            f"--loglevel={loglevel}",
        ]
    )


@main.group()
def model() -> None:
    """Build, convert and inspect CTranslate2 model folders."""


@model.command("tiny")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False), required=False)
def model_tiny(out: Path | None) -> None:
    """Build the tiny random-weight Qwen2 test model into OUT (default: the cache) and print it."""
    try:
        from workers.engine.tiny import ensure_tiny_model
    except ImportError as exc:
        _fail(f"{exc}; this needs: pip install 'qfleet[convert]'", ExitCode.UNAVAILABLE)
    try:
        click.echo(str(ensure_tiny_model(out.resolve() if out else None)))
    except QfleetError as exc:
        _fail(str(exc), ExitCode.UNAVAILABLE)


if __name__ == "__main__":
    main()
