"""`qfleet dlq`: look at, redrive and purge dead-lettered jobs."""

from __future__ import annotations

import datetime as dt
import json
import sys

import click

from qfleet.producer.console import ExitCode, fail, fleet_client, handle_errors


@click.group()
def dlq() -> None:
    """Dead letters: jobs that failed for good or exhausted their attempts.

    \b
    qfleet dlq list                  newest first
    qfleet dlq show JOB_ID           payload, error, attempts
    qfleet dlq redrive JOB_ID|--all  send again with a fresh attempt budget
    qfleet dlq purge --yes           delete them all
    """


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


@dlq.command("list")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def list_(limit: int, as_json: bool) -> None:
    """List dead letters, newest first."""
    with fleet_client() as fleet:
        letters = fleet.dead_letters.list(limit)
    if as_json:
        click.echo(json.dumps([letter.model_dump(mode="json") for letter in letters], indent=2))
        return
    if not letters:
        click.echo("no dead letters")
        return
    click.echo(f"{'JOB ID':<34} {'DIED (UTC)':<20} {'TRIES':>5}  ERROR")
    for letter in letters:
        click.echo(
            f"{letter.job_id:<34} {_when(letter.dead_at):<20} {letter.attempts:>5}  "
            f"{letter.error_code}: {letter.error_message[:60]}"
        )


@dlq.command()
@click.argument("job_id")
@handle_errors
def show(job_id: str) -> None:
    """Show one dead letter in full (JSON)."""
    with fleet_client() as fleet:
        letter = fleet.dead_letters.get(job_id)
    if letter is None:
        fail(f"no dead letter for {job_id}", ExitCode.NOT_FOUND)
    click.echo(letter.model_dump_json(indent=2))


@dlq.command()
@click.argument("job_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Redrive every dead letter.")
@handle_errors
def redrive(job_ids: tuple[str, ...], everything: bool) -> None:
    """Send dead-lettered jobs again under their own job ids."""
    with fleet_client() as fleet:
        ids = (
            [letter.job_id for letter in fleet.dead_letters.list(10_000)] if everything else job_ids
        )
        missing = []
        for job_id in ids:
            try:
                fleet.redrive(job_id)
                click.echo(f"redriven {job_id}")
            except KeyError:
                missing.append(job_id)
    if missing:
        fail(f"no dead letter for {', '.join(missing)}", ExitCode.NOT_FOUND)
    if not ids:
        click.echo("nothing to redrive")
        sys.exit(int(ExitCode.OK))


@dlq.command()
@click.option("--yes", is_flag=True, help="Confirm: the letters are deleted for good.")
@handle_errors
def purge(yes: bool) -> None:
    """Delete every dead letter."""
    if not yes:
        fail("purge deletes every dead letter; pass --yes to confirm", ExitCode.USAGE)
    with fleet_client() as fleet:
        click.echo(f"purged {fleet.dead_letters.purge()} dead letter(s)")
