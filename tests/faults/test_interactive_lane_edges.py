"""The interactive lane at its edges: what its channel pops, which jobs reach it, hostile messages,
drains, and a Redis restart (workers/lane.py; the delivery promises are in
test_interactive_lane.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis

from qfleet.tasks.constants import PRIORITY_SEPARATOR, QUEUE_GENERATE
from qfleet.tasks.schemas import GenerateJob, JobResult
from tests.faults.lane_support import LANE, broker_leftovers, busy_worker
from tests.faults.scenarios import (
    LONG_TOKENS,
    client,
    long_job,
    own_fleet,
    report,
    wait_outcome,
)

pytestmark = pytest.mark.integration


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


# A serializer the app refuses (as in tests/integration/test_generate_roundtrip.py).
HOSTILE_SERIALIZER = "pickle"


def test_the_lane_refuses_a_pickle_message_and_keeps_serving(
    fleet_env: dict[str, str], key_prefix: str, tmp_path: Path
) -> None:
    from kombu import Exchange, Producer  # type: ignore[attr-defined]

    from qfleet.tasks.constants import TASK_GENERATE

    env = own_fleet(fleet_env, key_prefix, QFLEET_MAX_NEW_TOKENS=str(LONG_TOKENS))
    with client(env) as fleet:
        # Given a worker whose only job thread decodes a long bulk job
        worker, bulk = busy_worker(env, tmp_path / "w.log", fleet, bulk=1)
        try:
            # When a pickle message arrives at priority 0 (the lane's list)
            hostile = "lane-pickle-" + os.urandom(4).hex()
            with fleet.app.connection_for_write() as conn:
                Producer(conn).publish(
                    ((), {"job": {"prompt": "pwned"}}, {}),
                    exchange=Exchange("qfleet", type="direct"),  # type: ignore[no-untyped-call]
                    routing_key=QUEUE_GENERATE, serializer=HOSTILE_SERIALIZER, priority=0,
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
            leftovers = broker_leftovers(env)
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
        worker, bulk = busy_worker(env, tmp_path / "w.log", fleet, bulk=1)
        control = fleet.app.control
        try:
            # When it is drained (the runbook's cancel_consumer) and an interactive job arrives
            control.cancel_consumer(QUEUE_GENERATE, destination=[worker.hostname], reply=True)
            job_id = fleet.submit(GenerateJob(prompt="wait for the drain to end", max_tokens=4))
            # Longer than the lane's poll (0.5 s), well within the bulk job: the tiny model
            # decodes LONG_TOKENS in about a second on a fast CPU, so the drain must be short.
            time.sleep(0.7)
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
