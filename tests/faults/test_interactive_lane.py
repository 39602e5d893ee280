"""Priorities that hold getting into the worker: the interactive lane (workers/lane.py).

A worker whose every job thread holds a long bulk job still takes an interactive job at once, on
job threads bulk jobs cannot take; the lane keeps the main pool's delivery promises (run once,
acked after the result, cancel, redelivery after a kill)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import redis

from ops.localfleet import WorkerProcess
from qfleet.producer.client import FleetClient
from qfleet.tasks.constants import PRIORITY_SEPARATOR, QUEUE_GENERATE
from qfleet.tasks.schemas import GenerateJob, JobError, JobResult
from tests.faults.scenarios import (
    LONG_TOKENS,
    RECEIVED,
    client,
    completions,
    long_job,
    own_fleet,
    report,
    wait_outcome,
    wait_running,
)

pytestmark = pytest.mark.integration

LANE = "(interactive lane)"


def _busy_worker(
    env: dict[str, str], log: Path, fleet: FleetClient, bulk: int = 2
) -> tuple[WorkerProcess, list[str]]:
    """A worker with `bulk` job threads, each holding a long bulk job that is decoding."""
    worker = WorkerProcess(env, log, hostname=f"lane-{log.stem}@test", concurrency=bulk).start()
    ids = [fleet.submit(long_job(f"bulk {i}", priority="bulk")) for i in range(bulk)]
    for job_id in ids:
        wait_running(fleet, job_id)
    return worker, ids


def _leftovers(env: dict[str, str]) -> dict[str, int]:
    """What the fleet's broker still holds: unacknowledged messages and queued ones."""
    prefix = env["QFLEET_REDIS_KEY_PREFIX"]
    r = redis.Redis.from_url(env["QFLEET_BROKER_URL"])
    try:
        lists = [prefix + QUEUE_GENERATE] + [
            f"{prefix}{QUEUE_GENERATE}{PRIORITY_SEPARATOR}{level}" for level in range(1, 10)
        ]
        return {
            "unacked": int(r.hlen(prefix + "unacked")),
            "unacked_index": int(r.zcard(prefix + "unacked_index")),
            "queued": sum(int(r.llen(name)) for name in lists),
        }
    finally:
        r.close()


@pytest.mark.parametrize("slots", ["2", "0"])
def test_an_interactive_job_finishes_while_bulk_jobs_hold_every_job_thread(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path, slots: str
) -> None:
    env = own_fleet(
        fleet_env, key_prefix, QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS),
        QFLEET_WORKER_INTERACTIVE_SLOTS=slots,
    )  # fmt: skip
    with client(env) as fleet:
        # Given a worker whose two job threads both decode a long bulk job
        worker, bulk = _busy_worker(env, tmp_path / f"w{slots}.log", fleet)
        try:
            # When an interactive job is submitted
            interactive = fleet.submit(GenerateJob(prompt="quick one", max_tokens=16))
            outcome = wait_outcome(fleet, interactive, timeout=300)
            bulk_done_before = [fleet.result(b) is not None for b in bulk]
            bulk_outcomes = [wait_outcome(fleet, b, timeout=300) for b in bulk]
            time.sleep(0.5)  # the last ack lands after the result is stored
            leftovers = _leftovers(env)
        finally:
            worker.stop()
    log = worker.log()
    assert isinstance(outcome, JobResult), outcome
    assert all(isinstance(b, JobResult) for b in bulk_outcomes), bulk_outcomes
    assert completions([log]) == {interactive: 1, bulk[0]: 1, bulk[1]: 1}
    assert RECEIVED.findall(log).count(interactive) == 1
    assert leftovers == {"unacked": 0, "unacked_index": 0, "queued": 0}
    if slots == "0":
        # Then, without the lane, it waits until a bulk job ends and frees a job thread
        assert any(bulk_done_before), "the interactive job ran without a free job thread"
        assert LANE not in log
        return
    # Then it completes while both bulk jobs are still decoding, taken by the lane, once
    assert not any(bulk_done_before), "a bulk job ended before the interactive job"
    assert f"qfleet.generate[{interactive}] received {LANE}" in log
    assert "interactive lane: 2 job thread(s)" in log
    assert "interactive lane closed" in log
    report("interactive job under a full bulk pool", submitted=3, completed=3, duplicates=0,
           lost=0, recovery_s=None)  # fmt: skip


def test_a_lane_job_can_be_cancelled_and_shows_as_active(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    env = own_fleet(fleet_env, key_prefix, QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS))
    with client(env) as fleet:
        # Given a long interactive job running in the lane of a worker full of bulk jobs
        worker, bulk = _busy_worker(env, tmp_path / "w.log", fleet, bulk=1)
        try:
            victim = fleet.submit(long_job("cancel me in the lane"))
            wait_running(fleet, victim)
            active = fleet.app.control.inspect(destination=[worker.hostname], timeout=5).active()
            # When it is cancelled
            fleet.cancel(victim)
            outcome = wait_outcome(fleet, victim, timeout=60)
            bulk_running = fleet.result(bulk[0]) is None
            bulk_outcome = wait_outcome(fleet, bulk[0], timeout=300)
            time.sleep(0.5)
            leftovers = _leftovers(env)
        finally:
            worker.stop()
    log = worker.log()
    # Then `inspect active` listed it, it ends `cancelled` while the bulk job decodes on, and
    # its message was acknowledged
    assert active is not None
    assert victim in [t["id"] for t in active[worker.hostname]], active
    assert f"qfleet.generate[{victim}] received {LANE}" in log
    assert isinstance(outcome, JobError), outcome
    assert outcome.code == "cancelled"
    assert bulk_running
    assert isinstance(bulk_outcome, JobResult), bulk_outcome
    assert victim not in completions([log])
    assert leftovers == {"unacked": 0, "unacked_index": 0, "queued": 0}


def test_a_lane_job_killed_with_its_worker_is_delivered_again_and_runs_once(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    env = own_fleet(
        fleet_env, key_prefix, QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS),
        QFLEET_VISIBILITY_TIMEOUT_S="3", QFLEET_UNACKED_RESTORE_INTERVAL_S="1",
        QFLEET_JOB_HEARTBEAT_S="1",
    )  # fmt: skip
    with client(env) as fleet:
        # Given a long interactive job running in the lane of a worker full of bulk jobs
        first, bulk = _busy_worker(env, tmp_path / "first.log", fleet, bulk=1)
        try:
            job_id = fleet.submit(long_job("survive a kill in the lane"))
            wait_running(fleet, job_id)
            time.sleep(0.5)
            # When the worker is SIGKILLed (an OOM kill) and a new one starts
            os.kill(first.pid, signal.SIGKILL)
            killed_at = time.monotonic()
        finally:
            first.stop()
        second = WorkerProcess(env, tmp_path / "second.log", hostname="lane-second@test").start()
        try:
            outcome = wait_outcome(fleet, job_id, timeout=300)
            recovery_s = time.monotonic() - killed_at
            bulk_outcome = wait_outcome(fleet, bulk[0], timeout=300)
            time.sleep(0.5)
            leftovers = _leftovers(env)
        finally:
            second.stop()
    logs = [first.log(), second.log()]
    # Then its message came back after the visibility timeout and it ran to one result
    assert f"qfleet.generate[{job_id}] received {LANE}" in logs[0]
    assert RECEIVED.findall(logs[1]).count(job_id) >= 1
    assert isinstance(outcome, JobResult), outcome
    assert outcome.usage.completion_tokens == LONG_TOKENS
    assert completions(logs)[job_id] == 1
    assert isinstance(bulk_outcome, JobResult), bulk_outcome
    assert completions(logs)[bulk[0]] == 1
    assert leftovers == {"unacked": 0, "unacked_index": 0, "queued": 0}
    report("lane job, worker SIGKILLed", submitted=2, completed=2, duplicates=0, lost=0,
           recovery_s=recovery_s)  # fmt: skip


def test_a_warm_shutdown_lets_a_running_lane_job_finish_and_ack(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    env = own_fleet(fleet_env, key_prefix, QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS))
    with client(env) as fleet:
        # Given a long interactive job running in the lane of a worker full of bulk jobs
        worker, bulk = _busy_worker(env, tmp_path / "w.log", fleet, bulk=1)
        job_id = fleet.submit(long_job("finish before the worker goes"))
        wait_running(fleet, job_id)
        # When the worker gets SIGTERM (a warm shutdown) while both run
        code = worker.stop(timeout=300)
        # Then both jobs finished before it exited, and nothing is left unacknowledged
        outcome = fleet.result(job_id)
        bulk_outcome = fleet.result(bulk[0])
        leftovers = _leftovers(env)
    log = worker.log()
    assert code == 0, log[-3000:]
    assert f"qfleet.generate[{job_id}] received {LANE}" in log
    assert isinstance(outcome, JobResult), outcome
    assert outcome.usage.completion_tokens == LONG_TOKENS
    assert isinstance(bulk_outcome, JobResult), bulk_outcome
    assert completions([log]) == {job_id: 1, bulk[0]: 1}
    assert leftovers == {"unacked": 0, "unacked_index": 0, "queued": 0}
    assert log.index("interactive lane closed") > log.index(f"job {job_id} done:")


def test_the_lanes_channel_pops_only_the_interactive_list(fleet_env: dict[str, str]) -> None:
    from kombu import Queue  # type: ignore[attr-defined]

    from qfleet.tasks.app import create_app
    from qfleet.tasks.constants import PRIORITY_BULK, PRIORITY_INTERACTIVE
    from qfleet.tasks.settings import Settings

    prefix = f"{fleet_env['QFLEET_REDIS_KEY_PREFIX']}pops-{os.getpid()}:"
    app = create_app(Settings(broker_url=fleet_env["QFLEET_BROKER_URL"], redis_key_prefix=prefix))
    queue = Queue(QUEUE_GENERATE, routing_key=QUEUE_GENERATE)  # type: ignore[no-untyped-call]
    with app.connection_for_write() as conn:
        producer = conn.Producer()
        for priority in (PRIORITY_BULK, PRIORITY_INTERACTIVE, PRIORITY_BULK):
            producer.publish({"p": priority}, routing_key=QUEUE_GENERATE, priority=priority,
                             declare=[queue])  # fmt: skip
    # Given two bulk messages around one interactive message
    got: list[int] = []
    lane = app.connection_for_read(transport_options={"priority_steps": [PRIORITY_INTERACTIVE]})
    with lane, lane.Consumer([queue], callbacks=[lambda body, msg: got.append(body["p"])]):
        # When a channel with the lane's single priority step consumes the queue
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                lane.drain_events(timeout=0.5)
            except TimeoutError:
                break
    # Then it takes only the interactive message
    assert got == [PRIORITY_INTERACTIVE]
    r = redis.Redis.from_url(fleet_env["QFLEET_BROKER_URL"])
    try:
        bulk_list = f"{prefix}{QUEUE_GENERATE}{PRIORITY_SEPARATOR}{PRIORITY_BULK}"
        assert r.llen(bulk_list) == 2
        # And its unacked message went back at close into the interactive list it came from
        assert r.llen(prefix + QUEUE_GENERATE) == 1
        for key in r.scan_iter(match=f"{prefix}*"):
            r.delete(key)
    finally:
        r.close()
    app.close()


def test_knowledge_jobs_go_to_the_list_of_their_priority(
    fleet_env: dict[str, str], key_prefix: str
) -> None:
    from qfleet.producer.knowledge import KnowledgeClient
    from qfleet.tasks.constants import PRIORITY_BULK, QUEUE_INGEST, QUEUE_RETRIEVE
    from qfleet.tasks.knowledge import IngestJob, KnowledgeAdminJob, KnowledgeDocument, RetrieveJob

    env = own_fleet(fleet_env, key_prefix)
    prefix = env["QFLEET_REDIS_KEY_PREFIX"]
    with client(env) as fleet:
        # Given no worker, when an ingest, an admin command and a search are submitted
        kb = KnowledgeClient(fleet)
        doc = KnowledgeDocument(
            text="Roll back with qfleet kb rollback.", source_url="https://x.test/a"
        )
        kb.submit(IngestJob(documents=[doc]))
        kb.submit(KnowledgeAdminJob(action="stats"))
        kb.submit(RetrieveJob(query="how do I roll back?"))
        lengths = {
            name: int(fleet.redis.llen(prefix + name))
            for name in (
                QUEUE_INGEST,
                f"{QUEUE_INGEST}{PRIORITY_SEPARATOR}{PRIORITY_BULK}",
                QUEUE_RETRIEVE,
            )
        }
    # Then the ingest waits at bulk priority (no lane thread takes it), the others at priority 0
    assert lengths == {
        QUEUE_INGEST: 1,
        f"{QUEUE_INGEST}{PRIORITY_SEPARATOR}{PRIORITY_BULK}": 1,
        QUEUE_RETRIEVE: 1,
    }


def test_an_interactive_retry_waits_its_countdown_in_the_lane_and_dead_letters_once(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    from tests.support.faulty_tasks import ALWAYS_FAILS

    env = own_fleet(
        fleet_env, key_prefix, QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS), QFLEET_MAX_ATTEMPTS="3",
        QFLEET_RETRY_BACKOFF_S="0.4", QFLEET_RETRY_BACKOFF_MAX_S="1",
        QFLEET_TASK_MODULES=json.dumps(["tests.support.faulty_tasks"]),
    )  # fmt: skip
    with client(env) as fleet:
        # Given a worker whose only job thread decodes a long bulk job
        worker, bulk = _busy_worker(env, tmp_path / "w.log", fleet, bulk=1)
        try:
            # When an interactive (priority 0) job that always fails arrives
            job_id = "lane-retry-" + os.urandom(4).hex()
            fleet.app.send_task(ALWAYS_FAILS, kwargs={"job": {"n": 1}}, task_id=job_id,
                                queue=QUEUE_GENERATE, priority=0)  # fmt: skip
            deadline = time.monotonic() + 60
            while (letter := fleet.dead_letters.get(job_id)) is None:
                assert time.monotonic() < deadline, "never dead-lettered"
                time.sleep(0.05)
            bulk_running = fleet.result(bulk[0]) is None
            bulk_outcome = wait_outcome(fleet, bulk[0], timeout=300)
            time.sleep(0.5)
            leftovers = _leftovers(env)
        finally:
            worker.stop()
    log = worker.log()
    # Then every attempt, the retries after their countdown too, ran in the lane while the bulk
    # job decoded, and the job was dead-lettered once after its attempt budget
    lane_received = f"qfleet.test.always_fails[{job_id}] received {LANE}"
    assert log.count(lane_received) == 3, log[-3000:]
    assert letter.attempts == 3
    assert bulk_running
    assert isinstance(bulk_outcome, JobResult), bulk_outcome
    assert leftovers == {"unacked": 0, "unacked_index": 0, "queued": 0}


def test_the_lane_refuses_a_pickle_message_and_keeps_serving(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    from kombu import Exchange, Producer  # type: ignore[attr-defined]

    from qfleet.tasks.constants import TASK_GENERATE

    env = own_fleet(fleet_env, key_prefix, QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS))
    with client(env) as fleet:
        # Given a worker whose only job thread decodes a long bulk job
        worker, bulk = _busy_worker(env, tmp_path / "w.log", fleet, bulk=1)
        try:
            # When a pickle message arrives at priority 0 (the lane's list)
            hostile = "lane-pickle-" + os.urandom(4).hex()
            with fleet.app.connection_for_write() as conn:
                Producer(conn).publish(
                    ((), {"job": {"prompt": "pwned"}}, {}),
                    exchange=Exchange("qfleet", type="direct"),  # type: ignore[no-untyped-call]
                    routing_key=QUEUE_GENERATE, serializer="pickle", priority=0,
                    headers={"task": TASK_GENERATE, "id": hostile, "lang": "py",
                             "argsrepr": "", "kwargsrepr": ""},
                )  # fmt: skip
            deadline = time.monotonic() + 30
            while "untrusted content" not in worker.log():
                assert time.monotonic() < deadline, "the pickle message was never refused"
                time.sleep(0.1)
            # Then the lane refused it, and still takes the next interactive job at once
            after = fleet.submit(GenerateJob(prompt="after", max_tokens=4))
            outcome = wait_outcome(fleet, after, timeout=60)
            bulk_running = fleet.result(bulk[0]) is None
            wait_outcome(fleet, bulk[0], timeout=300)
            time.sleep(0.5)
            leftovers = _leftovers(env)
            hostile_outcome = fleet.result(hostile)
        finally:
            worker.stop()
    log = worker.log()
    assert "Refusing to deserialize untrusted content of type pickle" in log
    assert hostile_outcome is None
    assert isinstance(outcome, JobResult), outcome
    assert f"qfleet.generate[{after}] received {LANE}" in log
    assert bulk_running
    assert leftovers == {"unacked": 0, "unacked_index": 0, "queued": 0}


def test_the_lane_follows_a_drain_and_an_add_consumer(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    env = own_fleet(fleet_env, key_prefix, QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS))
    with client(env) as fleet:
        # Given a worker whose only job thread decodes a long bulk job
        worker, bulk = _busy_worker(env, tmp_path / "w.log", fleet, bulk=1)
        control = fleet.app.control
        try:
            # When it is drained (the runbook's cancel_consumer) and an interactive job arrives
            control.cancel_consumer(QUEUE_GENERATE, destination=[worker.hostname], reply=True)
            job_id = fleet.submit(GenerateJob(prompt="wait for the drain to end", max_tokens=4))
            time.sleep(2)
            queued_while_drained = fleet.status(job_id) == "queued"
            # And the queue is given back to it
            control.add_consumer(QUEUE_GENERATE, destination=[worker.hostname], reply=True)
            outcome = wait_outcome(fleet, job_id, timeout=60)
            bulk_running = fleet.result(bulk[0]) is None
            wait_outcome(fleet, bulk[0], timeout=300)
        finally:
            worker.stop()
    log = worker.log()
    # Then the lane took nothing while drained, and took the job at once once it consumed again
    assert queued_while_drained
    assert f"no longer consuming {QUEUE_GENERATE}" in log
    assert isinstance(outcome, JobResult), outcome
    assert f"qfleet.generate[{job_id}] received {LANE}" in log
    assert bulk_running


def test_a_cold_shutdown_puts_a_running_lane_job_back_and_it_runs_once(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    env = own_fleet(fleet_env, key_prefix, QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS),
                    QFLEET_JOB_HEARTBEAT_S="1")  # fmt: skip
    with client(env) as fleet:
        # Given a long interactive job running in the lane of a worker full of bulk jobs
        first, bulk = _busy_worker(env, tmp_path / "first.log", fleet, bulk=1)
        job_id = fleet.submit(long_job("put me back"))
        wait_running(fleet, job_id)
        # When the worker gets SIGQUIT (a cold shutdown) and exits
        os.kill(first.pid, signal.SIGQUIT)
        first.stop(timeout=60)
        after_exit = _leftovers(env)
        # Then the lane's message went back to its queue at once (not after the visibility
        # timeout), and the job has one result (its thread, which nothing can kill, finished it
        # before the process exited; the new worker finds that result instead of running it)
        second = WorkerProcess(env, tmp_path / "second.log", hostname="lane-cold@test").start()
        try:
            outcome = wait_outcome(fleet, job_id, timeout=300)
            wait_outcome(fleet, bulk[0], timeout=300)
            time.sleep(0.5)
            leftovers = _leftovers(env)
        finally:
            second.stop()
    logs = [first.log(), second.log()]
    cold = logs[0].find("interactive lane: cold stop")
    assert 0 <= cold < logs[0].index("Restoring 1 unacknowledged message(s)", cold)
    assert after_exit["queued"] >= 1, after_exit
    assert isinstance(outcome, JobResult), outcome
    assert completions(logs)[job_id] == 1
    assert leftovers == {"unacked": 0, "unacked_index": 0, "queued": 0}


def test_the_lane_reconnects_after_a_redis_restart(
    fleet_env: dict[str, str], tmp_path: Path
) -> None:
    from ops.localfleet import RedisServer, Supervisor

    # Given a worker on its own Redis, supervised (kombu can crash the main consumer while it
    # reconnects, kombu#582/#970; docs/reliability.md)
    redis_server = RedisServer(tmp_path / "redis").start()
    env = {**fleet_env, "QFLEET_BROKER_URL": redis_server.url, "QFLEET_REDIS_KEY_PREFIX": "",
           "QFLEET_MAX_NEW_TOKENS": str(LONG_TOKENS)}  # fmt: skip
    supervisor = Supervisor(env, tmp_path, name="lane-redis", concurrency=1)
    try:
        with client(env) as fleet:
            # When Redis restarts, and afterwards a long bulk job takes the only job thread
            redis_server.stop()
            time.sleep(1)
            redis_server.start()
            deadline = time.monotonic() + 60
            bulk = fleet.submit(long_job("bulk after the restart", priority="bulk"))
            while fleet.status(bulk) != "running":
                assert time.monotonic() < deadline, "the bulk job never started"
                supervisor.keep_alive()
                time.sleep(0.05)
            # Then an interactive job is still taken by the lane at once
            job_id = fleet.submit(GenerateJob(prompt="after the restart", max_tokens=4))
            outcome = wait_outcome(fleet, job_id, timeout=60)
            bulk_running = fleet.result(bulk) is None
            wait_outcome(fleet, bulk, timeout=300)
    finally:
        supervisor.stop()
        redis_server.stop()
    logs = supervisor.logs()
    assert isinstance(outcome, JobResult), outcome
    assert bulk_running
    [served] = [log for log in logs if f"qfleet.generate[{job_id}] received" in log]
    assert f"qfleet.generate[{job_id}] received {LANE}" in served
    if supervisor.starts == 1:  # the same worker: its lane reconnected on its own connection
        assert served.index("interactive lane: broker connection error") < served.index(job_id)
    report("lane after a Redis restart", submitted=2, completed=2, duplicates=0, lost=0,
           recovery_s=None)  # fmt: skip
    print(f"worker starts: {supervisor.starts}")
