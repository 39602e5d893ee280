"""`qfleet generate` and `qfleet result`."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import click

from qfleet.producer.console import ExitCode, fleet_client, handle_errors, print_outcome
from qfleet.tasks.errors import JobFailedError
from qfleet.tasks.schemas import (
    DEFAULT_MAX_TOKENS,
    ExtractResult,
    GenerateJob,
    JobError,
    JobResult,
    validate_generate_job,
)


@click.command()
@click.argument("prompt")
@click.option("--system", help="System prompt placed before PROMPT.")
@click.option(
    "--max-tokens",
    type=int,
    default=DEFAULT_MAX_TOKENS,
    show_default=True,
    help="New-token budget.",
)
@click.option("--temperature", type=float, default=0.0, show_default=True, help="0 is greedy.")
@click.option("--top-p", type=float, default=1.0, show_default=True)
@click.option("--top-k", type=int, default=0, show_default=True, help="0 disables top-k.")
@click.option("--stop", multiple=True, help="Stop at this string (repeatable).")
@click.option("--job-id", help="Your own job id (idempotency key).")
@click.option("--stream", is_flag=True, help="Print the answer as it is generated.")
@click.option(
    "--priority",
    type=click.Choice(["interactive", "bulk"]),
    default="interactive",
    show_default=True,
    help="interactive jobs go before queued bulk jobs.",
)
@click.option("--no-wait", is_flag=True, help="Print the job id and return at once.")
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds to wait.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
def generate(
    prompt: str,
    system: str | None,
    max_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int,
    stop: tuple[str, ...],
    job_id: str | None,
    stream: bool,
    priority: str,
    no_wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Generate an answer to PROMPT and print it.

    \b
    Examples:
      qfleet generate "Solve 2x + 5 = 17" --max-tokens 128
      qfleet generate "List three colours" --stop "4." --json
      qfleet generate "Write a haiku" --stream     # tokens as they come
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
        "stream": stream,
        "priority": priority,
    }
    if job_id:
        fields["job_id"] = job_id
    _run_generate(validate_generate_job(fields), no_wait=no_wait, timeout=timeout, as_json=as_json)


def _run_generate(job: GenerateJob, *, no_wait: bool, timeout: float, as_json: bool) -> None:
    """Submit `job`, then print its id (`no_wait`), or its streamed text and its outcome."""
    show_stream = job.stream and not as_json
    with fleet_client() as fleet:
        submitted = fleet.submit(job)
        if no_wait:
            click.echo(json.dumps({"job_id": submitted}) if as_json else submitted)
            return
        if show_stream:
            with contextlib.suppress(JobFailedError):
                for piece in fleet.stream(submitted, timeout=timeout):
                    click.echo(piece, nl=False)
                click.echo()
        try:
            outcome: JobResult | ExtractResult | JobError = fleet.wait(submitted, timeout=timeout)
        except JobFailedError as exc:
            outcome = exc.error
    print_outcome(outcome, as_json, show_text=not show_stream)
    if isinstance(outcome, JobError):
        sys.exit(int(ExitCode.JOB_FAILED))


@click.command()
@click.argument("job_id")
@click.option("--wait", "wait_s", type=float, default=0, help="Wait up to this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
def result(job_id: str, wait_s: float, as_json: bool) -> None:
    """Print the result of JOB_ID (or its state while it has none)."""
    with fleet_client() as fleet:
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
    print_outcome(outcome, as_json)
    if isinstance(outcome, JobError):
        sys.exit(int(ExitCode.JOB_FAILED))
