"""Following a run: send its jobs a window at a time, collect their results, write the lines.

Whoever holds the run's lease follows it; following again after any crash picks up where the
files and Redis say the run is. Cancelling a run stops sending, cancels every job in flight
(`FleetClient.cancel`: a queued job never runs, a running one stops decoding) and writes a
`cancelled` line for each item whose job did not report before `CANCEL_GRACE_S`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from qfleet.producer.client import FleetClient
from qfleet.producer.runs.chunks import build_job, plan_chunks
from qfleet.producer.runs.items import RunItem, read_items
from qfleet.producer.runs.lease import lease_owner
from qfleet.producer.runs.output import CANCELLED, RunSink, failure, records_for
from qfleet.producer.runs.progress import RunProgress, RunStore, Tracker, broker_errors
from qfleet.producer.runs.spec import RunCancelledError, RunSpec, RunStatus
from qfleet.tasks.constants import RUN_LEASE_S
from qfleet.tasks.schemas import ExtractResult, JobError, JobResult

# After a cancel, how long the follower waits for its jobs in flight to report (a worker stops
# a cancelled row within about a second) before it writes their items down as cancelled.
CANCEL_GRACE_S = 3.0

ProgressSink = Callable[[RunProgress], None]
Pending = dict[str, list[RunItem]]  # job id -> the items it covers


@dataclass
class BulkRun:
    """Submits a run's jobs (a window at a time), collects their results, writes the output."""

    fleet: FleetClient
    spec: RunSpec
    poll_s: float = 0.2
    owner: str = field(default_factory=lease_owner)

    def __post_init__(self) -> None:
        self.store = RunStore(self.fleet, self.spec.run_id)
        self.sink = RunSink(self.spec)

    def execute(self, on_progress: ProgressSink | None = None) -> RunProgress:
        """Run to the end (or until cancelled); safe to call again after any crash."""
        items = read_items(self.spec, self.fleet.settings)
        with broker_errors():
            return self._execute(items, on_progress or (lambda _: None))

    def _execute(self, items: list[RunItem], on_progress: ProgressSink) -> RunProgress:
        self.store.lease.take(self.owner, wait_s=RUN_LEASE_S + 2)
        try:
            if self._cancelled():
                raise RunCancelledError(
                    f"run {self.spec.run_id} was cancelled; its finished lines stay in "
                    f"{self.spec.output}: start a new run (--run-id) to do the rest"
                )
            self.store.save_spec(self.spec)
            self.store.set_status("running")
            return self._follow(items, on_progress)
        finally:
            self.store.lease.release(self.owner)

    def _follow(self, items: list[RunItem], on_progress: ProgressSink) -> RunProgress:
        by_id = {item.id: item for item in items}
        finished = self.sink.finished_ids() & set(by_id)
        pending = self._resume_pending(by_id, finished)
        in_flight = {item.id for chunk in pending.values() for item in chunk}
        skip = finished | in_flight
        # A fleet that takes fewer documents per job than --batch gets smaller jobs, not refusals.
        batch = min(self.spec.batch, self.fleet.settings.max_documents_per_job)
        todo = plan_chunks([i for i in items if i.id not in skip and not i.rejected], batch)
        failed = len(self.sink.failed_ids() & finished)
        tracker = Tracker(self.spec, total=len(items), done=len(finished) - failed, failed=failed)
        self._reject(items, finished, tracker)
        while (todo or pending) and not self._cancelled():
            self._submit_window(todo, pending)
            self._collect(pending, finished, tracker)
            self._report(tracker.progress("running", len(pending)), on_progress)
            self.store.lease.renew(self.owner)
            if pending:
                time.sleep(self.poll_s)
        status: RunStatus = "cancelled" if self._cancelled() else "finished"
        if status == "cancelled":
            self._settle_cancelled(pending, finished, tracker)
        progress = tracker.progress(status, len(pending))
        self._report(progress, on_progress)
        return progress

    def _cancelled(self) -> bool:
        return self.store.status() == "cancelled"

    def _report(self, progress: RunProgress, on_progress: ProgressSink) -> None:
        self.store.publish(progress)
        on_progress(progress)

    def _resume_pending(self, by_id: dict[str, RunItem], finished: set[str]) -> Pending:
        """Jobs a previous follower sent; each is sent again, which the job-id claim makes a
        no-op unless the previous follower died before sending it."""
        pending = {}
        for job_id, ids in self.store.pending().items():
            chunk = [by_id[i] for i in ids if i in by_id and not by_id[i].rejected]
            if not chunk or all(item.id in finished for item in chunk):
                self.store.drop_pending(job_id)
                continue
            self.fleet.send_checked(build_job(self.spec.run_id, chunk))
            pending[job_id] = chunk
        return pending

    def _reject(self, items: list[RunItem], finished: set[str], tracker: Tracker) -> None:
        """Write a failure line for each item over a size limit; nothing of it is sent."""
        for item in items:
            if item.rejected and item.id not in finished:
                self.sink.put(failure(self.spec, item.id, "invalid_job", item.rejected))
                finished.add(item.id)
                tracker.add("failed")

    def _submit_window(self, todo: list[list[RunItem]], pending: Pending) -> None:
        while todo and len(pending) < self.spec.window:
            chunk = todo.pop(0)
            job = build_job(self.spec.run_id, chunk)
            # Recorded before sending: a crash in between leaves a job id to wait on, and the
            # fleet's job-id claim keeps a resend of the same chunk from running twice.
            self.store.add_pending(job.job_id, [item.id for item in chunk])
            # Checked once when the file was read: sent as it is.
            self.fleet.send_checked(job)
            pending[job.job_id] = chunk

    def _collect(self, pending: Pending, finished: set[str], tracker: Tracker) -> None:
        for job_id in list(pending):
            outcome = self.fleet.result(job_id)
            if outcome is not None:
                self._write(pending.pop(job_id), outcome, finished, tracker)
                self.store.drop_pending(job_id)

    def _write(
        self,
        chunk: list[RunItem],
        outcome: JobResult | ExtractResult | JobError,
        finished: set[str],
        tracker: Tracker,
    ) -> None:
        for record in records_for(self.spec, chunk, outcome):
            if record.item_id in finished:  # a redelivered job's second result
                continue
            self.sink.put(record)
            if record.cancelled:
                tracker.add("cancelled")
                continue
            finished.add(record.item_id)
            tracker.add("failed" if record.failed else "done")

    def _settle_cancelled(self, pending: Pending, finished: set[str], tracker: Tracker) -> None:
        """Cancel the jobs in flight, collect what they report, write the rest as cancelled."""
        for job_id in pending:  # also those sent after `qfleet run cancel` read the list
            self.fleet.cancel(job_id)
        deadline = time.monotonic() + CANCEL_GRACE_S
        while pending and time.monotonic() < deadline:
            self._collect(pending, finished, tracker)
            if pending:
                time.sleep(self.poll_s)
        message = "the run was cancelled before this item finished"
        for job_id, chunk in pending.items():
            for item in chunk:
                if item.id not in finished:
                    self.sink.put(failure(self.spec, item.id, CANCELLED, message))
                    tracker.add("cancelled")
            self.store.drop_pending(job_id)
        pending.clear()


def cancel_run(fleet: FleetClient, run_id: str) -> RunProgress | None:
    """Mark the run cancelled and cancel its jobs in flight; None when the run is unknown.

    Each job in flight is cancelled with `FleetClient.cancel`: a queued one never runs and a
    running one stops decoding. The run's follower writes their items down as cancelled.
    """
    store = RunStore(fleet, run_id)
    with broker_errors():
        if store.spec() is None:
            return None
        store.set_status("cancelled")
        for job_id in store.pending():
            fleet.cancel(job_id)
        return store.progress()


def run_progress(fleet: FleetClient, run_id: str) -> RunProgress | None:
    """The run's last published progress, or None when the run is unknown."""
    with broker_errors():
        return RunStore(fleet, run_id).progress()


def stored_spec(fleet: FleetClient, run_id: str) -> RunSpec | None:
    """The spec a run was submitted with (for `qfleet run resume`)."""
    with broker_errors():
        return RunStore(fleet, run_id).spec()
