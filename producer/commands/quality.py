"""`qfleet feedback`, `qfleet records ...` and `qfleet dataset export` (docs/quality.md)."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import click

from qfleet.producer.console import ExitCode, fail
from qfleet.tasks.errors import InvalidJobError, NotFoundError
from qfleet.tasks.records import Verdict


@contextlib.contextmanager
def record_errors() -> Iterator[None]:
    """A missing record store, record or bad correction as a message and a named exit code."""
    try:
        yield
    except NotFoundError as exc:
        fail(str(exc), ExitCode.NOT_FOUND)
    except InvalidJobError as exc:
        fail(str(exc), ExitCode.INVALID_JOB)
    except RuntimeError as exc:  # no store configured, psycopg missing
        fail(str(exc), ExitCode.UNAVAILABLE)
    except OSError as exc:  # psycopg.OperationalError is one: the database did not answer
        fail(f"record store unreachable: {exc} (check QFLEET_RECORDS_URL)", ExitCode.UNAVAILABLE)


def with_record_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """`record_errors` as a decorator for click commands."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with record_errors():
            return func(*args, **kwargs)

    return wrapper


@click.command()
@click.argument("job_id")
@click.option(
    "--verdict", type=click.Choice(["right", "wrong"]), required=True, help="Was the output right?"
)
@click.option(
    "--correction",
    help="The right answer: text, or JSON for an extraction (an object, or objects by doc id).",
)
@click.option("--note", help="Anything a dataset builder should know.")
@click.option("--by", "by", help="Who gives the feedback.")
@click.option("--json", "as_json", is_flag=True, help="Print the updated record as JSON.")
@with_record_errors
def feedback(
    job_id: str, verdict: str, correction: str | None, note: str | None, by: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Judge the output of JOB_ID, attached to its request record.

    \b
    Examples:
      qfleet feedback 3f2a... --verdict wrong --correction "Paris"
      qfleet feedback 9c1b... --verdict wrong --correction '{"name": "Ada", "age": 36}'
      qfleet feedback 7d4e... --verdict right
    """
    from qfleet.producer.feedback import QualityClient, parse_correction

    with QualityClient() as quality:
        record = quality.feedback(
            job_id, cast(Verdict, verdict), correction=parse_correction(correction), note=note,
            by=by,
        )  # fmt: skip
    if as_json:
        click.echo(record.model_dump_json(indent=2))
    else:
        click.echo(f"feedback on {job_id} ({record.kind}): {verdict}")


@click.group()
def records() -> None:
    """Request records: what each job was asked, answered, with which model and sources.

    Kept in PostgreSQL when QFLEET_RECORDS=on|sampled (QFLEET_RECORDS_URL).

    \b
    Examples:
      qfleet records show JOB_ID
      qfleet records export --run nightly-01 > nightly.jsonl
      qfleet records export --tenant acme --since 2026-11-01 --feedback
      qfleet records purge                   # apply QFLEET_RECORDS_RETENTION_DAYS now
    """


@records.command("show")
@click.argument("job_id")
@with_record_errors
def records_show(job_id: str) -> None:
    """Print the record of JOB_ID as JSON."""
    from qfleet.producer.records import RecordStore

    with RecordStore() as store:
        record = store.get(job_id)
    if record is None:
        raise NotFoundError(f"no request record of job {job_id}")
    click.echo(record.model_dump_json(indent=2))


@records.command("export")
@click.option("--job-id", help="One job.")
@click.option("--run", "run_id", help="Jobs of this bulk run.")
@click.option("--tenant", help="Jobs of this tenant.")
@click.option("--kind", type=click.Choice(["generate", "rag", "extract"]))
@click.option("--since", type=click.DateTime(), help="Finished at or after (UTC).")
@click.option("--until", type=click.DateTime(), help="Finished before (UTC).")
@click.option("--feedback/--any", "with_feedback", default=None, help="Only judged records.")
@click.option("--limit", type=int)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout)."
)
@with_record_errors
def records_export(out: Path | None, **filters: Any) -> None:
    """Write matching records as JSONL."""
    from qfleet.producer.records import RecordQuery, RecordStore

    query = RecordQuery(**{k: _utc(v) for k, v in filters.items()})
    with RecordStore() as store:
        if out is None:
            count = store.export(sys.stdout, query)
        else:
            with out.open("w", encoding="utf-8") as sink:
                count = store.export(sink, query)
    click.echo(f"{count} records", err=True)


@records.command("stats")
@with_record_errors
def records_stats() -> None:
    """How many records this fleet keeps, how many are judged, how many judged wrong."""
    from qfleet.producer.records import RecordStore

    with RecordStore() as store:
        counts = store.counts()
    click.echo(" ".join(f"{k}={v}" for k, v in counts.items()))


@records.command("purge")
@click.option("--days", type=int, help="Older than this (default: the retention setting).")
@with_record_errors
def records_purge(days: int | None) -> None:
    """Delete records past their retention."""
    from qfleet.producer.records import RecordStore

    with RecordStore() as store:
        click.echo(f"deleted {store.purge(days)} records")


def _utc(value: Any) -> Any:
    # Dates without a zone are read as UTC: records store aware times.
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@click.group()
def dataset() -> None:
    """Datasets from judged records: evaluation sets, fine-tuning data, knowledge drafts."""


@dataset.command("export")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--run", "run_id", help="Only records of this bulk run.")
@click.option("--tenant", help="Only records of this tenant.")
@click.option("--since", type=click.DateTime(), help="Finished at or after (UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@with_record_errors
def dataset_export(
    out_dir: Path, run_id: str | None, tenant: str | None, since: datetime | None, as_json: bool
) -> None:
    """Write OUT_DIR/eval.jsonl, sft.jsonl and kb_drafts.jsonl from records with feedback.

    \b
    eval.jsonl       an evaluation set for `qfleet eval run`
    sft.jsonl        ChatML {"messages": [...]} lines ending in the right answer (LoRA SFT)
    kb_drafts.jsonl  draft documents for answers the knowledge base lacks (`qfleet kb ingest`
                     after review)
    """
    from qfleet.producer.datasets import export_datasets
    from qfleet.producer.records import RecordQuery, RecordStore

    query = RecordQuery(run_id=run_id, tenant=tenant, since=_utc(since), with_feedback=True)
    with RecordStore() as store:
        counts = export_datasets(store.find(query), out_dir)
    if as_json:
        click.echo(counts.model_dump_json())
    else:
        click.echo(
            f"{counts.records} judged records → {counts.eval_items} eval items, "
            f"{counts.sft_examples} fine-tuning examples, {counts.kb_drafts} knowledge drafts "
            f"({counts.skipped} wrong without a correction skipped) in {out_dir}"
        )
    if counts.records == 0:
        sys.exit(int(ExitCode.NOT_FOUND))
