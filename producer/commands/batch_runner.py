"""`qfleet batch-runner`: follow the gateway's batches and send its webhooks (no HTTP served)."""

from __future__ import annotations

import logging
import signal
from types import FrameType

import click

from qfleet.tasks.settings import Settings


@click.command("batch-runner")
@click.option("-l", "--log-level", default="info", show_default=True)
def batch_runner(log_level: str) -> None:
    """Follow the gateway's batches and deliver their webhooks until stopped.

    \b
    Any number of batch runners and gateway processes may run on one Redis: each batch is
    followed by one of them at a time (a lease), and a batch whose follower died is resumed by
    another within seconds. Run one beside gateways started with
    QFLEET_GATEWAY_FOLLOW_BATCHES=false to keep batch work off the HTTP processes.
    """
    from qfleet.producer.gateway.runner import BatchRunner

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    runner = BatchRunner(Settings())

    def _stop(signum: int, _: FrameType | None) -> None:
        # Followed batches are left to other processes; their leases are released on the way.
        runner.stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    runner.run()
    runner.stop()
