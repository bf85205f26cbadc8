"""Consuming our own broker: one connection, one thread, every partner queue we read plus the handshake queue.

Subscriptions follow the database each second (a link that starts, pauses or stops is picked up without a
restart). A delivery is acked only after its transaction committed; a refused one goes to the dead-letter
queue and never blocks the queue behind it. Lost connections are reopened with capped, jittered backoff.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from federationd.broker import topology
from federationd.broker.connection import connect
from federationd.errors import TransportError
from federationd.handlers.dispatch import Delivery, Outcome
from federationd.retry import transport_retry
from federationd.runtime import Runtime

log = logging.getLogger(__name__)

PREFETCH = 8
POLL_SECONDS = 0.5
RESYNC_SECONDS = 1.0
REQUEUE_PAUSE_SECONDS = 2.0


class Consumer:
    def __init__(self, rt: Runtime, handle: Callable[[Delivery], Outcome], wanted: Callable[[], set[str]],
                 stop: threading.Event) -> None:
        self.rt = rt
        self._handle = handle
        self._wanted = wanted
        self._stop = stop
        self._tags: dict[str, str] = {}  # queue -> consumer tag
        self.connected = threading.Event()

    def run(self) -> None:
        """Until `stop` is set: connect, consume, and reconnect after any loss."""
        while not self._stop.is_set():
            try:
                connection = transport_retry("connecting to our own broker", max_wait_seconds=30,
                                             stop_when=lambda _state: self._stop.is_set(),
                                             sleep=self._stop.wait)(self._connect)
            except TransportError:
                return  # only reached when stopping
            try:
                self._consume(connection)
            except (pika.exceptions.AMQPError, OSError) as exc:
                log.warning("lost the connection to our own broker: %s; reconnecting", exc)
            finally:
                self.connected.clear()
                self._tags.clear()
                if connection.is_open:
                    with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                        connection.close()

    def _connect(self) -> pika.BlockingConnection:
        transport = self.rt.config.transport
        return connect(self.rt.own, self.rt.tls, heartbeat=transport.heartbeat, timeout=transport.connect_timeout,
                       name=f"federationd {self.rt.home} consumer", site=f"{self.rt.home} (our own broker)")

    def _consume(self, connection: pika.BlockingConnection) -> None:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=PREFETCH)
        topology.declare_home(channel)
        self.connected.set()
        log.info("consuming from our own broker %s", self.rt.own)
        next_sync = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_sync:
                self._sync(channel)
                next_sync = time.monotonic() + RESYNC_SECONDS
            connection.process_data_events(time_limit=POLL_SECONDS)
        for tag in list(self._tags.values()):
            channel.basic_cancel(tag)

    def _sync(self, channel: BlockingChannel) -> None:
        wanted = {topology.inbound_queue(p): p for p in self._wanted()}
        wanted[topology.HANDSHAKE_QUEUE] = ""
        for queue in set(self._tags) - set(wanted):
            channel.basic_cancel(self._tags.pop(queue))
            log.info("stopped consuming %s", queue)
        for queue in set(wanted) - set(self._tags):
            partner = wanted[queue] or None
            if partner is not None:
                topology.declare_partner(channel, partner)
            self._tags[queue] = channel.basic_consume(queue, self._callback(partner))
            log.info("consuming %s", queue)

    def _callback(self, partner: str | None) -> Callable[[BlockingChannel, Basic.Deliver, BasicProperties, bytes],
                                                         None]:
        def on_message(channel: BlockingChannel, method: Basic.Deliver, properties: BasicProperties,
                       body: bytes) -> None:
            delivery = Delivery(partner, method.routing_key, properties.type, properties.content_encoding,
                                properties.user_id, body)
            outcome = self._handle(delivery)
            if outcome is Outcome.ACK:
                channel.basic_ack(method.delivery_tag)
            elif outcome is Outcome.REJECT:
                channel.basic_reject(method.delivery_tag, requeue=False)
            else:
                channel.basic_nack(method.delivery_tag, requeue=True)
                self._stop.wait(REQUEUE_PAUSE_SECONDS)
        return on_message
