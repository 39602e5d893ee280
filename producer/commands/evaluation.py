"""`qfleet eval ...` (run, compare) and `qfleet gate ...` (stage, evaluate, promote, rollback)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from qfleet.producer.commands.quality import with_record_errors
from qfleet.producer.console import ExitCode, fail, fleet_client, handle_errors

if TYPE_CHECKING:
    from qfleet.producer.evaluate import Comparison, EvalReport
    from qfleet.producer.gate import Release

_target_option = click.option(
    "--target",
    type=click.Choice(["live", "canary"]),
    default="live",
    show_default=True,
    help="live: the qfleet.generate/extract queues; canary: their .canary queues.",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def print_report(report: EvalReport) -> None:
    """A summary line, the metrics, and the per-slice table."""
    from qfleet.producer.evaluate import slice_table

    ran = sum(i.primary is not None for i in report.items)
    click.echo(
        f"{report.name} ({report.target}, {', '.join(report.models) or 'no model'}): "
        f"score {report.score:.3f} over {ran} items"
    )
    for metric, value in sorted(report.metrics.items()):
        click.echo(f"  {metric:<20} {value:.3f}")
    click.echo(f"  {'slice':<10} {'value':<32} {'items':>5} {'score':>6}")
    for name, label, count, score in slice_table(report):
        click.echo(f"  {name:<10} {label[:32]:<32} {count:>5} {score:>6.3f}")
    for item in report.items:
        if item.error:
            click.secho(f"  {item.id}: {item.error}", fg="yellow", err=True)


def print_comparison(diff: Comparison) -> None:
    """Scores of both runs and the items that moved."""
    click.echo(f"{diff.a}: {diff.score_a:.3f}   {diff.b}: {diff.score_b:.3f}")
    click.echo(f"  better in {diff.b}: {len(diff.better)}  {' '.join(diff.better)}")
    click.echo(f"  worse in {diff.b}:  {len(diff.worse)}  {' '.join(diff.worse)}")
    click.echo(f"  unchanged: {diff.same}")


@click.group("eval")
def eval_() -> None:
    """Score the fleet on an evaluation set (from `qfleet dataset export`), compare two runs.

    \b
    Examples:
      qfleet eval run data/eval.jsonl --name live --out live.json
      qfleet eval run data/eval.jsonl --target canary --name qwen-1.5b --out canary.json
      qfleet eval compare live.json canary.json
    """


@eval_.command("run")
@click.argument("eval_set", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default="eval", show_default=True, help="A name for this run.")
@_target_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Save the report.")
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds per item.")
@_json_option
@handle_errors
def eval_run(
    eval_set: Path, name: str, target: str, out: Path | None, timeout: float, as_json: bool
) -> None:
    """Run EVAL_SET through the fleet and score it."""
    from qfleet.producer.datasets import read_eval_set
    from qfleet.producer.evaluate import run_eval

    items = read_eval_set(eval_set)
    with fleet_client() as fleet:
        report = run_eval(fleet, items, name=name, target=target, timeout=timeout)
    if out is not None:
        report.save(out)
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        print_report(report)


@eval_.command("compare")
@click.argument("report_a", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("report_b", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_json_option
def eval_compare(report_a: Path, report_b: Path, as_json: bool) -> None:
    """Item by item: what got better and what worse from REPORT_A to REPORT_B."""
    from qfleet.producer.evaluate import EvalReport, compare

    diff = compare(EvalReport.load(report_a), EvalReport.load(report_b))
    if as_json:
        click.echo(diff.model_dump_json(indent=2))
    else:
        print_comparison(diff)


@click.group()
def gate() -> None:
    """Stage, evaluate, then promote or roll back a model rotation or knowledge release.

    \b
    Examples:
      qfleet gate stage qwen-1.5b --kind model --description "canary workers on 1.5B"
      qfleet gate evaluate qwen-1.5b data/eval.jsonl      # live vs canary on one set
      qfleet gate promote qwen-1.5b                        # refused if worse than the margin
      qfleet gate rollback qwen-1.5b
      qfleet gate status --json
    """


def _print_release(release: Release, as_json: bool) -> None:
    if as_json:
        click.echo(release.model_dump_json(indent=2))
        return
    live = f"{release.live.score:.3f}" if release.live else "-"
    cand = f"{release.candidate.score:.3f}" if release.candidate else "-"
    click.echo(f"{release.name} ({release.kind}): {release.state}; live {live}, candidate {cand}")
    if release.history and release.history[-1].note:
        click.echo(f"  {release.history[-1].note}")


@gate.command("stage")
@click.argument("name")
@click.option("--kind", type=click.Choice(["model", "kb"]), default="model", show_default=True)
@click.option("--description", help="What changes (model folder, knowledge file, ...).")
@_json_option
@with_record_errors
def gate_stage(name: str, kind: str, description: str | None, as_json: bool) -> None:
    """Register release NAME as staged (its workers serve the canary queues)."""
    from qfleet.producer.gate import Gate

    g = Gate()
    try:
        _print_release(g.stage(name, kind, description), as_json)  # type: ignore[arg-type]
    finally:
        g.close()


@gate.command("evaluate")
@click.argument("name")
@click.argument("eval_set", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--live-report", type=click.Path(exists=True, path_type=Path))
@click.option("--candidate-report", type=click.Path(exists=True, path_type=Path))
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds per item.")
@_json_option
@with_record_errors
@handle_errors
def gate_evaluate(
    name: str, eval_set: Path | None, live_report: Path | None, candidate_report: Path | None,
    timeout: float, as_json: bool,
) -> None:  # fmt: skip
    """Score live and candidate on EVAL_SET (or attach reports from `qfleet eval run`)."""
    from qfleet.producer.datasets import read_eval_set
    from qfleet.producer.evaluate import EvalReport, run_eval
    from qfleet.producer.gate import Gate

    if eval_set is not None:
        items = read_eval_set(eval_set)
        with fleet_client() as fleet:
            live = run_eval(fleet, items, name=f"{name}:live", target="live", timeout=timeout)
            cand = run_eval(fleet, items, name=f"{name}:candidate", target="canary",
                            timeout=timeout)  # fmt: skip
    elif live_report is not None and candidate_report is not None:
        live, cand = EvalReport.load(live_report), EvalReport.load(candidate_report)
    else:
        fail("give EVAL_SET, or both --live-report and --candidate-report", ExitCode.USAGE)
    g = Gate()
    try:
        _print_release(g.attach(name, live, cand), as_json)
    finally:
        g.close()


@gate.command("promote")
@click.argument("name")
@click.option("--margin", type=float, help="Most below live allowed (default QFLEET_GATE_MARGIN).")
@_json_option
@with_record_errors
def gate_promote(name: str, margin: float | None, as_json: bool) -> None:
    """Promote NAME; refused (exit 7) when it scored below live by more than the margin."""
    from qfleet.producer.gate import Gate, GateRefusedError

    g = Gate()
    try:
        _print_release(g.promote(name, margin), as_json)
    except GateRefusedError as exc:
        click.secho(f"qfleet: {exc}", fg="red", err=True)
        sys.exit(int(ExitCode.GATE_REFUSED))
    finally:
        g.close()


@gate.command("rollback")
@click.argument("name")
@click.option("--note", help="Why.")
@_json_option
@with_record_errors
def gate_rollback(name: str, note: str | None, as_json: bool) -> None:
    """Roll NAME back: its candidate leaves live traffic (see the runbook)."""
    from qfleet.producer.gate import Gate

    g = Gate()
    try:
        _print_release(g.rollback(name, note), as_json)
    finally:
        g.close()


@gate.command("status")
@_json_option
@with_record_errors
def gate_status(as_json: bool) -> None:
    """Every release and where it stands, latest first."""
    from qfleet.producer.gate import Gate

    g = Gate()
    try:
        releases = g.releases()
    finally:
        g.close()
    if as_json:
        click.echo("[" + ",".join(r.model_dump_json() for r in releases) + "]")
    for release in [] if as_json else releases:
        _print_release(release, False)
