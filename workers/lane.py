"""The interactive lane: job threads that only interactive jobs can take.

A worker holds one message per job thread (`acks_late`, prefetch = concurrency). Under a bulk
backlog every thread holds a bulk job, so an interactive job would wait in Redis — first in line,
thanks to kombu's priority lists — until a bulk job ends. The lane removes that wait.

Kombu's Redis transport keeps a queue as one list per priority step: priority 0 (interactive) in
the plain list, the others in `<queue>\\x06\\x16<level>`. The lane opens a broker connection of
its own whose channel has `priority_steps=[0]`, so its BRPOP covers only the priority-0 lists of
the worker's queues, with a prefetch of its own (`QFLEET_WORKER_INTERACTIVE_SLOTS`). It consumes
in a thread and runs each message through Celery's own machinery — a `celery.worker.request.
Request` executed on a threads `TaskPool` of its own — so nothing changes for the job: the job
policy, result storing, `acks_late` acking after the result, task events, revokes, `inspect
active` and the running-lock heartbeat all work as on the main pool. The main consumer still
consumes every level, interactive jobs too, whenever it has a free thread.

Delivery is the main pool's: a message is acknowledged after its job ran; a worker killed
mid-job leaves it unacknowledged in kombu's `unacked` hash and it comes back after the
visibility timeout, restored by another consumer into the list of its own priority. The lane's
channel never restores other workers' messages itself (its single priority step would put a
bulk message into the interactive list). A warm shutdown stops taking messages, lets the running
lane jobs finish and acknowledge, then closes the connection, which puts any message it still
holds (a retry waiting for its countdown) back at once; a cold shutdown closes at once.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
import time
from concurrent import futures
from typing import Any

from celery import bootsteps, signals
from celery.app import trace as app_trace
from celery.bootsteps import RUN
from celery.concurrency.thread import TaskPool
from celery.exceptions import InvalidTaskError, TaskRevokedError
from celery.utils.imports import symbol_by_name
from celery.utils.time import timezone
from celery.worker import state as worker_state
from kombu.asynchronous.timer import to_timestamp
from kombu.exceptions import ContentDisallowed, DecodeError
from kombu.serialization import loads as kombu_loads
from kombu.serialization import prepare_accept_content

from qfleet.tasks.constants import PRIORITY_INTERACTIVE

log = logging.getLogger("qfleet.worker")

# How long one drain of the lane's connection waits for a message before it looks at its stop
# flag and its waiting retries again.
POLL_S = 0.5


class InteractiveLane:
    """The lane of one worker: its connection, consumer thread and job threads."""

    def __init__(self, consumer: Any, slots: int) -> None:
        self.c = consumer
        self.app = consumer.app
        self.slots = slots
        self.queues = list(consumer.task_consumer.queues)
        self.pool = TaskPool(limit=slots, app=self.app)
        self.accept = prepare_accept_content(self.app.conf.accept_content)
        self.errors: tuple[type[BaseException], ...] = ()
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: Any = None
        self._channel: Any = None
        self._consumer: Any = None
        self._waiting: list[tuple[float, int, Any]] = []  # retries held until their ETA
        self._seq = itertools.count()
        self._running: set[futures.Future[Any]] = set()  # lane jobs handed to the pool
        self._running_lock = threading.Lock()

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and start consuming in a thread of its own."""
        self.pool.start()
        self._connection = self.app.connection_for_read(
            transport_options={"priority_steps": [PRIORITY_INTERACTIVE]}
        )
        self.errors = tuple(self._connection.connection_errors) + tuple(
            self._connection.channel_errors
        )
        self._thread = threading.Thread(target=self._run, name="qfleet-interactive-lane")
        self._thread.daemon = True
        self._thread.start()
        log.info(
            "interactive lane: %d job thread(s) for priority-%d jobs of %s",
            self.slots,
            PRIORITY_INTERACTIVE,
            ", ".join(q.name for q in self.queues),
        )

    def stop(self) -> None:
        """Warm stop: take no more jobs, let the running ones finish, close the connection.

        A cold shutdown requested while it waits (a second SIGTERM, SIGQUIT) turns it into
        `terminate`.
        """
        self._stop.set()
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=POLL_S)
            if worker_state.should_terminate:
                self.terminate()
                return

    def terminate(self) -> None:
        """Cold stop: close the connection now (what the lane holds goes back to its queue)."""
        self._abandon.set()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def running(self) -> int:
        """Lane jobs running now (for `qfleet_info`; -1 when they could not be counted)."""
        for _ in range(3):  # job threads change the set while a control command reads it
            try:
                return sum(
                    1 for r in list(worker_state.active_requests) if getattr(r, "qfleet_lane", 0)
                )
            except RuntimeError:
                continue
        return -1

    # --- the consumer thread ----------------------------------------------------------------

    def _run(self) -> None:
        consumer = None
        try:
            self._channel = self._connection.default_channel
            # Restoring others' expired messages is the main consumers' work: with one priority
            # step this channel would put a bulk message back into the interactive list.
            self._channel.qos.restore_visible = lambda *_, **__: None
            consumer = self.app.amqp.TaskConsumer(
                self._channel, queues=self.queues, on_decode_error=self.c.on_decode_error
            )
            consumer.on_message = self._on_message
            consumer.qos(prefetch_count=self.slots)
            consumer.consume()
            self._consumer = consumer
            self._drain()
        except Exception:
            log.exception("interactive lane stopped; interactive jobs use the main pool only")
        finally:
            self._close(consumer)

    def _drain(self) -> None:
        while not self._stop.is_set():
            self._follow_main()
            self._start_due()
            try:
                self._connection.drain_events(timeout=self._timeout())
            except TimeoutError:  # socket.timeout: nothing arrived
                continue
            except self.errors as exc:
                log.warning("interactive lane: broker connection error (%s); retrying", exc)
                self._stop.wait(1.0)

    def _close(self, consumer: Any) -> None:
        if consumer is not None:
            try:
                consumer.cancel()
            except Exception:  # the connection may be gone already
                log.debug("interactive lane: cancel failed", exc_info=True)
        while (running := self._jobs()) and not self._abandon.is_set():
            # The running lane jobs finish and acknowledge their messages on this connection.
            futures.wait(running, timeout=POLL_S)
        if self._abandon.is_set():
            log.warning("interactive lane: cold stop; the jobs it holds go back to their queue")
        else:
            self.pool.stop()
        if self._connection is not None:
            # Puts back what this connection still holds unacknowledged (retries waiting for
            # their countdown; on a cold stop, running jobs too).
            self._connection.close()
        log.info("interactive lane closed")

    def _main_queues(self) -> dict[str, Any] | None:
        """The queues the main consumer consumes now (None while it has no task consumer)."""
        main = getattr(self.c, "task_consumer", None)
        if main is None:
            return None
        try:
            return {q.name: q for q in main.queues}
        except RuntimeError:  # changed by the main thread while read here: look next round
            return None

    def _follow_main(self) -> None:
        """Consume what the main consumer consumes: `cancel_consumer` drains the lane too."""
        wanted = self._main_queues()
        if wanted is None or self._consumer is None:
            return
        mine = {q.name for q in self._consumer.queues}
        for name in mine - wanted.keys():
            self._consumer.cancel_by_queue(name)
            log.info("interactive lane: no longer consuming %s (as the main consumer)", name)
        added = [wanted[name] for name in wanted.keys() - mine]
        for queue in added:
            self._consumer.add_queue(queue)
            log.info("interactive lane: consuming %s (as the main consumer)", queue.name)
        if added:
            self._consumer.consume()

    # --- one message ------------------------------------------------------------------------

    def _on_message(self, message: Any) -> None:
        c = self.c
        wanted = self._main_queues()
        routing_key = (message.delivery_info or {}).get("routing_key")
        if wanted is not None and routing_key not in {q.routing_key for q in wanted.values()}:
            # The main consumer stopped consuming this queue (a drain) since this BRPOP began:
            # put the message back for the workers that still consume it.
            message.reject_log_error(log, self.errors, requeue=True)
            self._follow_main()
            return None
        try:
            name = message.headers["task"]
        except (TypeError, KeyError):
            return c.on_unknown_message(None, message)
        try:
            task = self.app.tasks[name]
        except KeyError as exc:
            return c.on_unknown_task(None, message, exc)
        try:
            req = self._request(task, message)
        except (InvalidTaskError, ContentDisallowed) as exc:
            return c.on_invalid_task(None, message, exc)
        except DecodeError as exc:
            return c.on_decode_error(message, exc)
        self._received(task, req)

    def _request(self, task: Any, message: Any) -> Any:
        # Refuse what the main consumer refuses (pickle: "Refusing to deserialize untrusted
        # content"), before anything is decoded: kombu checks the type alone for empty data.
        kombu_loads(b"", message.content_type, message.content_encoding, accept=self.accept)
        request_cls = symbol_by_name(task.Request)
        req = request_cls(
            message,
            on_ack=message.ack_log_error,
            on_reject=message.reject_log_error,
            app=self.app,
            hostname=self.c.hostname,
            eventer=self.c.event_dispatcher,
            task=task,
            connection_errors=self.errors,
            body=message.body,
            headers=message.headers,
            decoded=False,
            utc=self.app.uses_utc_timezone(),
        )
        req.qfleet_lane = True
        return req

    def _received(self, task: Any, req: Any) -> None:
        """What Celery's default strategy does with a received request, on the lane's pool."""
        context = {"id": req.id, "name": req.name, "args": req.argsrepr,
                   "kwargs": req.kwargsrepr, "eta": req.eta}  # fmt: skip
        log.info(app_trace.LOG_RECEIVED.rstrip() + " (interactive lane)", context)
        if (req.expires or req.id in worker_state.revoked) and req.revoked():
            return
        signals.task_received.send(sender=self.c, request=req)
        if task.send_events:
            req.send_event(
                "task-received", name=req.name, args=req.argsrepr,
                kwargs=req.kwargsrepr, root_id=req.root_id, parent_id=req.parent_id,
                retries=req.request_dict.get("retries", 0),
                eta=req.eta and req.eta.isoformat(),
                expires=req.expires and req.expires.isoformat(),
            )  # fmt: skip
        if req.eta:
            self._hold(req)
            return
        worker_state.task_reserved(req)
        self._execute(req)

    def _execute(self, req: Any) -> None:
        # Revoked while it waited: Celery acknowledged it and answered it revoked.
        with contextlib.suppress(TaskRevokedError):
            future = req.execute_using_pool(self.pool).f
            with self._running_lock:
                self._running.add(future)
            future.add_done_callback(self._finished)

    def _finished(self, future: futures.Future[Any]) -> None:
        with self._running_lock:
            self._running.discard(future)

    def _jobs(self) -> list[futures.Future[Any]]:
        with self._running_lock:
            return list(self._running)

    # --- retries that wait for their countdown ----------------------------------------------

    def _hold(self, req: Any) -> None:
        """Keep a request with an ETA until it is due, without taking one of the lane's slots."""
        try:
            eta = to_timestamp(timezone.to_system(req.eta)) if req.utc else to_timestamp(req.eta)
        except (OverflowError, ValueError):
            eta = time.time()
        self._channel.qos.prefetch_count += 1
        worker_state.task_scheduled(req)
        heapq.heappush(self._waiting, (eta, next(self._seq), req))

    def _start_due(self) -> None:
        now = time.time()
        while self._waiting and self._waiting[0][0] <= now:
            _, _, req = heapq.heappop(self._waiting)
            self._channel.qos.prefetch_count -= 1
            worker_state.task_reserved(req)
            self._execute(req)

    def _timeout(self) -> float:
        if not self._waiting:
            return POLL_S
        return max(min(POLL_S, self._waiting[0][0] - time.time()), 0.01)


class InteractiveLaneStep(bootsteps.StartStopStep):  # type: ignore[misc]  # celery is untyped
    """The consumer bootstep that runs the worker's `InteractiveLane` (added by workers/main.py).

    It starts once, after the main consumer's task consumer; a reconnect of the main consumer
    (Celery restarts its steps) leaves the lane alone, as it has a connection of its own.
    """

    requires = ("celery.worker.consumer.tasks:Tasks", "celery.worker.consumer.events:Events")
    label = "qfleet interactive lane"

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.lane: InteractiveLane | None = None
        self.started = False

    def start(self, c: Any) -> None:
        if self.started:
            return
        self.started = True
        from qfleet.workers.context import context_of

        context = context_of(c.app)
        slots = context.settings.worker_interactive_slots
        pool = type(c.pool).__module__
        if slots == 0:
            log.info("interactive lane off (QFLEET_WORKER_INTERACTIVE_SLOTS=0)")
        elif "prefork" in pool:
            # The model lives in the pool's children; the lane's threads would have none.
            log.info("interactive lane off: the prefork pool has no model in its parent process")
        else:
            self.lane = InteractiveLane(c, slots)
            context.lane = self.lane
            self.lane.start()

    def stop(self, c: Any) -> None:
        if c.blueprint.state == RUN:
            return  # the main consumer reconnects; the lane keeps its own connection
        self.shutdown(c)

    def shutdown(self, c: Any) -> None:
        lane, self.lane = self.lane, None
        if lane is not None:
            lane.stop()

    def terminate(self, c: Any) -> None:
        lane, self.lane = self.lane, None
        if lane is not None:
            lane.terminate()
