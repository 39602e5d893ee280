"""Bulk runs: a JSONL file of items in, one JSONL line per item out, resumable.

A run splits its items into jobs (a generate job per item; extract jobs of up to `batch`
documents sharing one schema). Each concern has its module:

- `spec`: `RunSpec` (what a run is, stored in Redis) and the run errors;
- `items`: reading the input file (native or OpenAI batch lines), each item checked once;
- `chunks`: items into jobs, and the job ids derived from run and item ids;
- `output`: the output and errors files (the source of truth for what is done);
- `lease`: one producer follows a run at a time;
- `progress`: the run's spec, progress, jobs in flight and status in Redis;
- `follow`: `BulkRun` (the follow loop), `cancel_run`, `run_progress`, `stored_spec`.

The OpenAI batch file format itself is `qfleet.producer.openai_batch`.
"""

from qfleet.producer.runs.chunks import build_job, job_id_for, plan_chunks
from qfleet.producer.runs.follow import (
    CANCEL_GRACE_S,
    BulkRun,
    ProgressSink,
    cancel_run,
    run_progress,
    stored_spec,
)
from qfleet.producer.runs.items import RUN_PRIORITY, RunItem, detect_format, read_items
from qfleet.producer.runs.lease import RunLease
from qfleet.producer.runs.output import RunRecord, RunSink, records_for
from qfleet.producer.runs.progress import RunProgress, RunStore
from qfleet.producer.runs.spec import (
    RunBusyError,
    RunCancelledError,
    RunFormat,
    RunKind,
    RunSpec,
    RunStatus,
    default_run_id,
)

__all__ = [
    "CANCEL_GRACE_S",
    "RUN_PRIORITY",
    "BulkRun",
    "ProgressSink",
    "RunBusyError",
    "RunCancelledError",
    "RunFormat",
    "RunItem",
    "RunKind",
    "RunLease",
    "RunProgress",
    "RunRecord",
    "RunSink",
    "RunSpec",
    "RunStatus",
    "RunStore",
    "build_job",
    "cancel_run",
    "default_run_id",
    "detect_format",
    "job_id_for",
    "plan_chunks",
    "read_items",
    "records_for",
    "run_progress",
    "stored_spec",
]
