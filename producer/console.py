"""What every `qfleet` subcommand shares: exit codes, error handling, printing results."""

from __future__ import annotations

import enum
import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from qfleet.tasks.errors import BrokerUnavailableError, InvalidJobError, JobTimeoutError
from qfleet.tasks.schemas import ExtractResult, JobError, JobResult

if TYPE_CHECKING:
    from qfleet.producer.client import FleetClient

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
    GATE_REFUSED = 7  # quality loop: `qfleet gate promote` said no


def fail(message: str, code: ExitCode) -> NoReturn:
    click.secho(f"qfleet: {message}", fg="red", err=True)
    sys.exit(int(code))


def fleet_client() -> FleetClient:
    from qfleet.producer.client import FleetClient

    return FleetClient()


def print_outcome(
    outcome: JobResult | ExtractResult | JobError, as_json: bool, show_text: bool = True
) -> None:
    """Print a result (text on stdout, a stats line on stderr) or an error."""
    if as_json or isinstance(outcome, ExtractResult):
        click.echo(outcome.model_dump_json(indent=2))
        return
    if isinstance(outcome, JobError):
        click.secho(f"job {outcome.job_id} failed ({outcome.code}): {outcome.message}", fg="red")
        return
    if show_text:
        click.echo(outcome.text)
    t, u = outcome.timings, outcome.usage
    click.secho(
        f"[{outcome.job_id} · {outcome.model.id} on {outcome.model.device} · "
        f"{u.prompt_tokens}+{u.completion_tokens} tokens · {t.tokens_per_s:.1f} tok/s · "
        f"{t.total_ms:.0f} ms total · batch of {outcome.batch_size} · {outcome.finish_reason}]",
        dim=True,
        err=True,
    )


def handle_errors(func: F) -> F:
    """Turn qfleet's errors into a message and a named exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InvalidJobError as exc:
            fail(str(exc), ExitCode.INVALID_JOB)
        except BrokerUnavailableError as exc:
            fail(f"{exc} (check QFLEET_BROKER_URL)", ExitCode.UNAVAILABLE)
        except JobTimeoutError as exc:
            fail(str(exc), ExitCode.TIMEOUT)

    return wrapper  # type: ignore[return-value]
