"""`qfleet`: submit jobs, read results, run workers and build models, from one command.

Exit codes are named in `qfleet.producer.console.ExitCode`, so scripts can tell a failed job
from an unreachable broker. Subcommands live in `qfleet.producer.commands`, one module per area;
the worker-side ones (`worker`, `model`) in `qfleet.workers.commands`, found through entry points.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import click

from qfleet.producer.commands import (
    batch_runner,
    dlq,
    evaluation,
    gateway,
    jobs,
    kb,
    ops,
    quality,
    run,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="qfleet")
def main() -> None:
    """qfleet: an asynchronous job-queue fleet for small-LLM work.

    Producers submit jobs to Redis; `qfleet worker` processes pull them, run a CTranslate2
    Qwen model, and write results back. Configuration comes from QFLEET_* environment
    variables (see README).

    \b
    Quick tour:
      qfleet model pull demo                 fetch + convert the demo Qwen model (prints its folder)
      qfleet model convert Qwen/Qwen2.5-0.5B-Instruct ./models/qwen
      QFLEET_MODEL_DIR=./models/qwen qfleet worker
      qfleet generate "Say hello" --max-tokens 32
      qfleet result JOB_ID --json
      qfleet status --watch 2                 queues, workers, runs
    """


main.add_command(jobs.generate)
main.add_command(jobs.result)
main.add_command(dlq.dlq)
main.add_command(ops.status)
main.add_command(ops.exporter)
main.add_command(ops.flower)
main.add_command(kb.kb)
main.add_command(kb.ask)
main.add_command(run.run)
main.add_command(gateway.gateway)
main.add_command(gateway.keys)
main.add_command(batch_runner.batch_runner)
# The quality loop (docs/quality.md): records, feedback, datasets, eval, the gate.
for _command in (
    quality.feedback,
    quality.records,
    quality.dataset,
    evaluation.eval_,
    evaluation.gate,
):
    main.add_command(_command)
# The worker-side commands (`worker`, `model`) come from `qfleet.workers.commands` through the
# `qfleet.commands` entry points, so the producer side never imports the worker side.
for _entry in entry_points(group="qfleet.commands"):
    main.add_command(_entry.load(), _entry.name)


if __name__ == "__main__":
    main()
