"""`qfleet`: submit jobs, read results, run workers and build models, from one command.

Exit codes are named in `producer.console.ExitCode`, so scripts can tell a failed job from an
unreachable broker. Subcommands live in `producer.commands`, one module per area.
"""

from __future__ import annotations

import click

from producer.commands import dlq, jobs, kb, model, ops, run, worker


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
main.add_command(worker.worker)
main.add_command(model.model)
main.add_command(dlq.dlq)
main.add_command(ops.status)
main.add_command(ops.exporter)
main.add_command(ops.flower)
main.add_command(kb.kb)
main.add_command(kb.ask)
main.add_command(run.run)


if __name__ == "__main__":
    main()
