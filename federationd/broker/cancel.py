"""Abandoning one send from another thread: how `federationd clear` reaches a send stuck inside the daemon.

pika's BlockingConnection is not thread-safe, and while it connects there is no connection object to close at
all. So the send's own thread arms its `Cancel` with the one thread-safe way to interrupt what it is blocked in,
and `cancel()`, from any thread, calls it:

- while connecting (TCP, TLS, AMQP handshake): the connection workflow is aborted through its I/O loop's
  `add_callback_threadsafe`; pika closes the socket and the connect raises;
- once connected (waiting for a publisher confirm, say): the stream is dropped from the connection's own thread
  through `BlockingConnection.add_callback_threadsafe`, and the blocked publish raises.

pika offers no public way to abort a blocking connect: this module, alone, reaches into pika 1.x's connection
workflow (BlockingConnection's `_impl_class`, the workflow's `abort`, the adapter's `_adapter_disconnect_stream`).
Between steps the flag suffices: the publisher asks it before every publish.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pika
import pika.exceptions
from pika.adapters.select_connection import SelectConnection
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from federationd.errors import SendCancelled

log = logging.getLogger(__name__)

Interrupt = Callable[[], None]


class Cancel:
    """A cancellation flag for one send, with the thread-safe interrupt of the wait the send is in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._interrupt: Interrupt | None = None

    @property
    def is_set(self) -> bool:
        return self._set

    def cancel(self) -> None:
        """From any thread: flag the send and interrupt the wait it is blocked in, if any."""
        with self._lock:
            if self._set:
                return
            self._set = True
            interrupt, self._interrupt = self._interrupt, None
            if interrupt is not None:
                _call(interrupt)

    def check(self, site: str) -> None:
        """In the send's thread, between steps: raise SendCancelled once cancelled."""
        if self._set:
            raise SendCancelled(f"the send to {site} was abandoned: cleared by the operator")

    def connecting_class(self) -> type[SelectConnection]:
        """The connection class a cancellable connect passes to BlockingConnection: it arms this Cancel with an
        abort of the connection workflow for as long as the workflow runs."""
        cancel = self

        class CancellableConnection(SelectConnection):  # type: ignore[misc]
            @classmethod
            def create_connection(cls, connection_configs: Sequence[pika.connection.Parameters],
                                  on_done: Callable[[Any], None], custom_ioloop: Any = None,
                                  workflow: Any = None) -> Any:
                def done(result: Any) -> None:  # runs on the I/O loop, before BlockingConnection closes it
                    cancel.disarm()
                    on_done(result)

                flow = super().create_connection(connection_configs, done, custom_ioloop, workflow)
                loop = custom_ioloop
                cancel.arm(lambda: loop.add_callback_threadsafe(lambda: _abort(flow)))
                return flow

        return CancellableConnection

    def arm_connected(self, connection: pika.BlockingConnection) -> None:
        """Once connected: a cancel drops the stream from the connection's own thread."""
        def drop() -> None:
            if connection.is_open:
                connection._impl._adapter_disconnect_stream()  # see the module docstring

        self.arm(lambda: connection.add_callback_threadsafe(drop))

    def arm(self, interrupt: Interrupt) -> None:
        with self._lock:
            if self._set:
                _call(interrupt)
            else:
                self._interrupt = interrupt

    def disarm(self) -> None:
        with self._lock:
            self._interrupt = None


def _abort(flow: Any) -> None:
    try:
        flow.abort()
    except AMQPConnectorException as exc:  # the workflow completed meanwhile: the flag stops the send
        log.debug("abort of a connection workflow that already ended: %s", exc)


def _call(interrupt: Interrupt) -> None:
    try:
        interrupt()
    except (pika.exceptions.AMQPError, OSError) as exc:  # the wait ended meanwhile: the flag stops the send
        log.debug("interrupting a cancelled send: %s", exc)
