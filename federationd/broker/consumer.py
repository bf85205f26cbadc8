"""Consuming our own broker: one connection on one I/O thread, and one worker thread that applies.

The I/O thread only does pika I/O: it subscribes to every partner queue we read plus the handshake queue (the
subscriptions follow `wanted()` each second), hands deliveries to the worker, and services heartbeats while an
apply runs. The worker calls `handle` and settles the delivery back on the I/O thread through
`connection.add_callback_threadsafe`. Partners take turns at the worker (broker/fair.py), so one partner's slow
message delays another's by at most one message; the prefetch is small.

When `handle` says BACK_OFF (our database failed), the message is given back once (nack, requeue) and the
connection closed, which returns every other unacked message; the consumer then waits, with capped backoff,
until `probe()` answers before it subscribes again: never a requeue loop. Any other failure, whatever its type,
is logged once with its context, and the consumer reconnects with capped backoff. `beat_at` moves while the
thread is alive (for the watchdog); `up` is true while it is subscribed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties
from sqlalchemy.exc import SQLAlchemyError

from federationd.broker import topology
from federationd.broker.delivery import Delivery, Outcome
from federationd.broker.fair import FairQueue
from federationd.errors import StoreError, TransportError
from federationd.outage import Outage
from federationd.retry import consumer_backoff_seconds, database_wait

log = logging.getLogger(__name__)

PREFETCH = 2  # per queue: one being applied, one ready; the rest waits in the broker, visible as queue depth
POLL_SECONDS = 0.5
RESYNC_SECONDS = 1.0
DRAIN_SECONDS = 30.0  # at shutdown, how long the message being applied may take to finish


class ConsumerEvents(Protocol):
    """What the consumer reports (metrics observe it); every method must be cheap and never raise."""

    def consumer_up(self, up: bool) -> None: ...

    def message_received(self, site: str) -> None: ...


class _NoEvents:
    def consumer_up(self, up: bool) -> None:
        return None

    def message_received(self, site: str) -> None:
        return None


@dataclass(frozen=True)
class _Work:
    channel: BlockingChannel
    tag: int
    delivery: Delivery


class Consumer:
    def __init__(self, connect: Callable[[], pika.BlockingConnection], handle: Callable[[Delivery], Outcome],
                 wanted: Callable[[], set[str]], stop: threading.Event, *, probe: Callable[[], object],
                 own_user: str, events: ConsumerEvents | None = None, group_size: int | None = None) -> None:
        self._connect = connect
        self._handle = handle
        self._wanted = wanted
        self._stop = stop
        self._probe = probe
        self._own_user = own_user
        self._group_size = group_size  # members of a quorum queue we declare (None: the broker's default)
        self._events: ConsumerEvents = events or _NoEvents()
        self._tags: dict[str, str] = {}  # queue -> consumer tag
        self._work: FairQueue[_Work] = FairQueue()
        self._halt = threading.Event()  # the worker takes no more work (back-off or end of session)
        self._busy = threading.Event()  # the worker is applying a message
        self._backing_off = False
        self._failures = 0  # consecutive failed sessions: the backoff grows with them
        self._back_offs = 0  # consecutive BACK_OFF outcomes without a message applied in between
        self._broker = Outage(log, "our own broker")
        self._database = Outage(log, "our database (consumer)")
        self.connected = threading.Event()
        self.beat_at = time.monotonic()

    # -- supervision: the one loop that never ends until `stop` -----------------------------------------------
    def run(self) -> None:
        """Until `stop` is set: connect, consume, and recover from any failure."""
        last_problem = ""
        while not self._stop.is_set():
            self.beat_at = time.monotonic()
            try:
                self._session_then_recover()
                last_problem = ""
                continue
            except TransportError as exc:
                self._broker.failed(exc)
            except (pika.exceptions.AMQPError, OSError) as exc:
                self._broker.failed(f"connection lost: {exc!r}")
            except (StoreError, SQLAlchemyError) as exc:
                self._database.failed(exc)
            except Exception as exc:  # any other failure must not end consuming for good: log it, recover
                problem = f"{type(exc).__name__}: {exc}"
                if problem != last_problem:  # once per kind of failure, with its traceback
                    log.exception("the consumer failed; reconnecting with backoff")
                last_problem = problem
            self._failures += 1
            self._rest(consumer_backoff_seconds(self._failures))

    def _session_then_recover(self) -> None:
        connection = self._connect()
        self._broker.recovered()
        self._backing_off = False
        try:
            self._consume(connection)
        finally:
            self._close(connection)
        if self._backing_off:
            # The probe may answer while applying still fails (a table gone, a full disk): the pause before the
            # next subscription grows with consecutive back-offs, reset by the next message applied.
            self._back_offs += 1
            self._wait_for_database()
            self._rest(consumer_backoff_seconds(self._back_offs))

    def _rest(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.beat_at = time.monotonic()
            self._stop.wait(min(1.0, max(0.0, deadline - time.monotonic())))

    def _wait_for_database(self) -> None:
        def attempt() -> None:
            self.beat_at = time.monotonic()
            try:
                self._probe()
            except Exception as exc:
                self._database.failed(exc)
                raise
        with contextlib.suppress(StoreError, SQLAlchemyError, OSError):  # only when stopping
            database_wait("waiting for our database", stop_when=lambda _s: self._stop.is_set(),
                          sleep=self._rest)(attempt)
        if not self._stop.is_set():
            self._database.recovered()

    # -- one session: connected and subscribed ------------------------------------------------------------------
    def _consume(self, connection: pika.BlockingConnection) -> None:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=PREFETCH)
        topology.declare_home(channel, self._group_size)
        self._halt.clear()
        worker = threading.Thread(target=self._apply_loop, args=(connection,), name="apply", daemon=True)
        worker.start()
        self.connected.set()
        log.info("consuming from our own broker")
        next_sync = 0.0
        try:
            while not self._stop.is_set() and not self._backing_off:
                self.beat_at = time.monotonic()
                if time.monotonic() >= next_sync:
                    self._sync(channel)
                    next_sync = time.monotonic() + RESYNC_SECONDS
                connection.process_data_events(time_limit=POLL_SECONDS)
            if not self._backing_off:
                self._drain(connection, channel)
        finally:
            self._halt.set()
            worker.join(DRAIN_SECONDS)
            dropped = self._work.clear()  # not acked: they go back with the connection
            log.debug("%d prefetched message(s) go back to the broker", dropped)
            self.connected.clear()
            self._events.consumer_up(False)

    def _drain(self, connection: pika.BlockingConnection, channel: BlockingChannel) -> None:
        """At shutdown: stop taking work, let the message being applied finish and its ack go out."""
        self._halt.set()
        for tag in list(self._tags.values()):
            channel.basic_cancel(tag)
        self._tags.clear()
        deadline = time.monotonic() + DRAIN_SECONDS
        while self._busy.is_set() and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)
        connection.process_data_events(time_limit=0)

    def _close(self, connection: pika.BlockingConnection) -> None:
        self._tags.clear()
        self.connected.clear()
        self._events.consumer_up(False)
        if connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()

    def _sync(self, channel: BlockingChannel) -> None:
        wanted = {topology.inbound_queue(p): p for p in self._wanted()}
        wanted[topology.HANDSHAKE_QUEUE] = ""
        for queue in set(self._tags) - set(wanted):
            channel.basic_cancel(self._tags.pop(queue))
            log.info("stopped consuming %s", queue)
        for queue in set(wanted) - set(self._tags):
            partner = wanted[queue] or None
            if partner is not None:
                topology.declare_partner(channel, partner, self._group_size)
            self._tags[queue] = channel.basic_consume(queue, partial(self._on_message, partner))
            log.info("consuming %s", queue)
        self._database.recovered()
        self._failures = 0
        self._events.consumer_up(True)

    def _on_message(self, partner: str | None, channel: BlockingChannel, method: Basic.Deliver,
                    properties: BasicProperties, body: bytes) -> None:
        user_id = properties.user_id
        headers = properties.headers or {}
        redriven = headers.get(topology.REDRIVEN_USER_HEADER)
        if user_id == self._own_user and isinstance(redriven, str | bytes):
            # Put back by `federationd redrive` (the broker checked that our own user published it): the
            # partner user the broker validated at the first publish.
            user_id = redriven.decode() if isinstance(redriven, bytes) else redriven
        delivery = Delivery(partner, method.routing_key, properties.type, properties.content_encoding,
                            user_id, body)
        self._work.put(partner or "", _Work(channel, method.delivery_tag, delivery))

    # -- the worker: applies, then settles on the I/O thread ----------------------------------------------------
    def _apply_loop(self, connection: pika.BlockingConnection) -> None:
        while not self._halt.is_set():
            self._busy.set()  # before taking: a drain never misses a message between take and apply
            work = self._work.take(timeout=0.2)
            if work is None or self._halt.is_set():
                self._busy.clear()
                continue  # a message taken after the halt is not applied: it goes back with the connection
            try:
                outcome = self._handle(work.delivery)
            except Exception:  # the handler's own net failed: give the message back, like a database failure
                log.exception("applying a message from %s failed unexpectedly", work.delivery.partner or "handshake")
                outcome = Outcome.BACK_OFF
            finally:
                self._busy.clear()
            if outcome is Outcome.BACK_OFF:
                self._halt.set()  # take nothing more: the I/O thread closes the connection
            try:
                connection.add_callback_threadsafe(partial(self._settle, work, outcome))
            except (pika.exceptions.AMQPError, OSError) as exc:  # the connection is gone: the broker redelivers
                log.warning("could not settle a message from %s: %s", work.delivery.partner or "handshake", exc)
                return

    def _settle(self, work: _Work, outcome: Outcome) -> None:
        """On the I/O thread: ack, dead-letter or give back (and stop consuming) as the handler decided."""
        if not work.channel.is_open:
            return  # the channel closed meanwhile: the broker gives the message back
        if outcome is Outcome.ACK:
            work.channel.basic_ack(work.tag)
            self._back_offs = 0
            if work.delivery.partner is not None:
                self._events.message_received(work.delivery.partner)
        elif outcome is Outcome.REJECT:
            work.channel.basic_reject(work.tag, requeue=False)
        else:
            work.channel.basic_nack(work.tag, requeue=True)
            self._backing_off = True
            log.warning("stopped consuming until our database answers again (the message goes back to the queue)")

