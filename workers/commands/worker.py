"""`qfleet worker`: run a worker process with an engine-safe pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from qfleet.producer.console import ExitCode, fail
from qfleet.tasks.constants import ALL_QUEUES, QUEUE_GENERATE


@click.command()
@click.option(
    "--model-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="CTranslate2 model folder [env QFLEET_MODEL_DIR].",
)
@click.option(
    "-c", "--concurrency", type=int, help="Jobs held at once [QFLEET_WORKER_CONCURRENCY]."
)
@click.option(
    "--interactive-slots",
    type=click.IntRange(min=0),
    help="Job threads only interactive jobs can take; 0 = off [QFLEET_WORKER_INTERACTIVE_SLOTS].",
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
    interactive_slots: int | None,
    queues: str,
    pool: str,
    hostname: str,
    loglevel: str,
) -> None:
    """Run a worker process that serves jobs with the configured model."""
    from qfleet.tasks.settings import Settings

    # Options override the environment the pydantic-settings way (keyword arguments win), and
    # reach the worker through the context built from these settings, not through os.environ.
    overrides: dict[str, Any] = {}
    if model_dir is not None:
        overrides["model_dir"] = model_dir.resolve()
    if concurrency is not None:
        overrides["worker_concurrency"] = concurrency
    if interactive_slots is not None:
        overrides["worker_interactive_slots"] = interactive_slots
    settings = Settings(**overrides)
    # A worker serving only the knowledge queues (ingest, retrieve) needs no generation model.
    needs_model = QUEUE_GENERATE in queues.split(",")
    if needs_model and (
        settings.model_dir is None or not (settings.model_dir / "model.bin").is_file()
    ):
        fail(
            f"no CTranslate2 model at {settings.model_dir!s}: pass --model-dir or set "
            "QFLEET_MODEL_DIR (make one with `qfleet model convert` or `qfleet model pull demo`)",
            ExitCode.NOT_FOUND,
        )
    try:
        from qfleet.workers.main import create_worker_app
    except ImportError as exc:
        fail(f"{exc}; a worker needs: pip install 'qfleet[worker]'", ExitCode.UNAVAILABLE)
    app = create_worker_app(settings)
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
