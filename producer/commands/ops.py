"""`qfleet status`, `qfleet exporter` and `qfleet flower`: watching a running fleet."""

from __future__ import annotations

import contextlib
import os
import time

import click

from qfleet.producer.console import ExitCode, fail, handle_errors

DEFAULT_EXPORTER_PORT = 9808
DEFAULT_FLOWER_PORT = 5555


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option(
    "--watch",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Refresh every SECONDS until Ctrl-C.",
)
@click.option(
    "--timeout", type=float, default=1.0, show_default=True, help="Seconds to wait for workers."
)
@handle_errors
def status(as_json: bool, watch: float | None, timeout: float) -> None:
    """Show queues, workers and runs of the fleet.

    \b
    Queues: depth, age of the oldest waiting job, jobs finished per minute.
    Workers: host, model, device, pool, batch settings, jobs done, tokens/s, busy slots.
    Runs: bulk runs in progress.

    \b
    Examples:
      qfleet status
      qfleet status --json | jq '.queues[] | {name, depth}'
      qfleet status --watch 2
    """
    import redis

    from qfleet.producer.status import collect_status, render
    from qfleet.tasks.app import create_app
    from qfleet.tasks.settings import Settings

    settings = Settings()
    app = create_app(settings)
    try:
        while True:
            try:
                snapshot = collect_status(app, settings, timeout=timeout)
            except (redis.RedisError, OSError) as exc:
                message = f"could not reach Redis: {exc} (check QFLEET_BROKER_URL)"
                fail(message, ExitCode.UNAVAILABLE)
            text = snapshot.model_dump_json(indent=2) if as_json else render(snapshot)
            if watch is None:
                click.echo(text)
                return
            click.clear()
            click.echo(text)
            time.sleep(watch)
    except KeyboardInterrupt:
        pass
    finally:
        app.close()


@click.command()
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=DEFAULT_EXPORTER_PORT, show_default=True)
def exporter(address: str, port: int) -> None:
    """Serve queue depth and oldest-message age for Prometheus at /metrics.

    Reads Redis on every scrape (QFLEET_BROKER_URL, QFLEET_REDIS_KEY_PREFIX). Worker metrics come
    from each worker's own exporter (QFLEET_METRICS_PORT).
    """
    try:
        from qfleet.producer.exporter import serve
    except ImportError as exc:
        fail(f"{exc}; the exporter needs: pip install 'qfleet[ops]'", ExitCode.UNAVAILABLE)
    from qfleet.tasks.settings import Settings

    with contextlib.suppress(KeyboardInterrupt):
        serve(Settings(), address, port)


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=DEFAULT_FLOWER_PORT, show_default=True)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Run WITHOUT authentication: anyone who reaches the port can revoke jobs and shut "
    "workers down. Only for a throwaway local fleet.",
)
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower(address: str, port: int, no_auth: bool, flower_args: tuple[str, ...]) -> None:
    """Run Flower (the Celery web dashboard) for this fleet, with basic auth.

    The user and password come from QFLEET_FLOWER_USER / QFLEET_FLOWER_PASSWORD and reach Flower
    through its environment, never its command line. Extra arguments go to Flower as they are
    (e.g. --url_prefix=flower). Flower's /metrics and /healthcheck stay open: keep the port
    private (docs/operations.md).
    """
    try:
        import flower as _flower  # noqa: F401
    except ImportError as exc:
        fail(f"{exc}; Flower needs: pip install 'qfleet[ops]'", ExitCode.UNAVAILABLE)
    from qfleet.producer.flower import FlowerConfigError, flower_command, flower_environment
    from qfleet.tasks.settings import Settings

    try:
        env = flower_environment(Settings(), no_auth=no_auth)
    except FlowerConfigError as exc:
        fail(str(exc), ExitCode.USAGE)
    if no_auth:
        click.secho("qfleet: Flower runs WITHOUT authentication (--no-auth)", fg="yellow", err=True)
    argv = flower_command(address, port, flower_args)
    os.execve(argv[0], argv, env)
