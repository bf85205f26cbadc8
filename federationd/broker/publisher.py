"""Putting messages on a broker: persistent, `mandatory`, and done only once the broker confirmed them.

Up to `SEND_WINDOW` messages await their confirm at once (broker/confirms.py): the sender reads and encodes the
next batch while the broker confirms the previous ones. pika's BlockingChannel offers confirms only one publish
at a time (its `basic_publish` waits for each), so this module, alone, turns confirms on through the underlying
asynchronous channel (`BlockingChannel._impl`, pika 1.x): `confirm_delivery` with an ack/nack callback and
`add_on_return_callback` there, and `BlockingConnection.process_data_events` to wait. Those callbacks run inside
pika's I/O loop: they only record the answer (and ask `process_data_events` to return at once); settling and
raising happen afterwards, in the send's own code.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import Any

import pika
import pika.exceptions
import pika.frame
import pika.spec
from pika.adapters.blocking_connection import BlockingChannel
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from federationd.broker.cancel import Cancel
from federationd.broker.confirms import ConfirmingPublisher, Failure, Window
from federationd.broker.connection import connect, transport_error
from federationd.broker.endpoints import Endpoints
from federationd.errors import CredentialsRevoked, Fenced, TransportError
from federationd.wire import Outgoing

CONNECTION_FORCED = 320  # AMQP reply code: the broker closed the connection (e.g. its user was deleted)

log = logging.getLogger(__name__)

EXCHANGE = "federation"

# How long one wait for the broker's answers may block before the loop looks again (a confirm, a return or a
# close ends the wait at once; this only bounds a wait that nothing ends, e.g. during a resource alarm).
PUMP_SECONDS = 1.0


class Publisher(ConfirmingPublisher):
    """One connection and one confirming channel to one broker, for the lifetime of a `with` block.

    `publish` returns only after the broker confirmed the message; `stream` lets up to `SEND_WINDOW` messages
    await their confirm (broker/confirms.py). A nack, an unroutable return or a refusal raises TransportError
    naming the site. `allowed` is asked before every publish: once it says no (this daemon lost its active
    lock), publishing raises Fenced and nothing more goes out."""

    def __init__(self, endpoint: Endpoints, context: ssl.SSLContext, *, site: str, heartbeat: timedelta,
                 timeout: timedelta, name: str, allowed: Callable[[], bool] | None = None) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.site = site
        self._context = context
        self._heartbeat = heartbeat
        self._timeout = timeout
        self._name = name
        self._allowed = allowed
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._cancel: Cancel | None = None
        self._woken = False
        self._last_io = 0.0  # when pika last ran for this connection (monotonic)

    def watch(self, cancel: Cancel) -> Publisher:
        """Let another thread abandon this send (`federationd clear`): connecting, awaiting a confirm, or
        between publishes, a cancel makes the send raise SendCancelled (federationd/broker/cancel.py)."""
        self._cancel = cancel
        return self

    def __enter__(self) -> Publisher:
        self._open()
        return self

    def _open(self) -> None:
        cancel = self._cancel
        if cancel is not None:
            cancel.check(self.site)
        try:
            self._connection = connect(self.endpoint, self._context, heartbeat=self._heartbeat,
                                       timeout=self._timeout, name=self._name, site=self.site,
                                       impl_class=cancel.connecting_class() if cancel is not None else None)
        except (TransportError, AMQPConnectorException) as exc:
            if cancel is not None:
                cancel.check(self.site)
            if isinstance(exc, TransportError):
                raise
            raise transport_error(exc, self.site, self.endpoint) from None
        try:
            if cancel is not None:
                cancel.arm_connected(self._connection)
            self._channel = self._connection.channel()
            self._confirming(self._channel)
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.close()
            if cancel is not None:
                cancel.check(self.site)
            raise transport_error(exc, self.site, self.endpoint) from None
        self._last_io = time.monotonic()

    def _revive(self) -> None:
        """A BlockingConnection answers heartbeats only while its thread is in pika: a send that waited on our own
        database (a lock, a slow read) for two heartbeat intervals with this connection open finds it closed by
        the broker. With nothing in flight, nothing is lost: reconnect quietly instead of failing the send and
        blaming the partner's broker (a new channel numbers its confirms from 1, hence a new window)."""
        if self._connection is None:
            raise RuntimeError("Publisher used outside its with block")
        idle = time.monotonic() - self._last_io
        try:
            self._connection.process_data_events(time_limit=0)
            self._last_io = time.monotonic()
            return  # whatever the broker said meanwhile (a channel closed) is in the window, raised as before
        except pika.exceptions.ConnectionClosedByBroker as exc:
            self._window.lost(exc)  # closed on purpose (its user deleted, an operator): a real failure
            return
        except (pika.exceptions.AMQPError, OSError) as exc:
            why = exc
        log.info("%s: the connection to its broker closed while we were busy for %.0f s with nothing in flight "
                 "(%r); reconnecting", self.site, idle, why)
        self.close()
        self._window = Window()
        self._open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _confirming(self, channel: BlockingChannel) -> None:
        """Confirm mode with our own callbacks on the asynchronous channel (see the module docstring)."""
        assert self._connection is not None
        impl = channel._impl
        impl.add_on_return_callback(self._on_return)
        impl.add_on_close_callback(self._on_channel_closed)
        selected: list[pika.frame.Method] = []

        def on_select_ok(frame: pika.frame.Method) -> None:
            selected.append(frame)
            self._wake()

        impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=on_select_ok)
        deadline = time.monotonic() + self._timeout.total_seconds()
        while not selected:
            if channel.is_closed or time.monotonic() > deadline:
                raise TransportError(f"{self.site}: broker {self.endpoint} did not turn on publisher confirms",
                                     site=self.site)
            self._connection.process_data_events(time_limit=PUMP_SECONDS)

    def _may_publish(self) -> None:
        if self._channel is None:
            raise RuntimeError("Publisher used outside its with block")
        if self._allowed is not None and not self._allowed():
            raise Fenced(f"not sending to {self.site}: this daemon is no longer the site's active daemon")
        if self._cancel is not None:
            self._cancel.check(self.site)

    def _where(self) -> str:
        return str(self.endpoint)

    def _send(self, message: Outgoing, routing_key: str, tag: int) -> None:
        assert self._channel is not None
        properties = pika.BasicProperties(**message.properties(self.endpoint.user))
        try:  # not in the BlockingChannel's own confirm mode: this only writes the message out
            self._channel.basic_publish(EXCHANGE, routing_key, message.body, properties, mandatory=True)
        except (pika.exceptions.AMQPError, OSError) as exc:
            self._window.lost(exc)

    def _pump(self) -> None:
        if self._connection is None:
            raise RuntimeError("Publisher used outside its with block")
        try:
            self._connection.process_data_events(time_limit=PUMP_SECONDS)
        except (pika.exceptions.AMQPError, OSError) as exc:
            self._window.lost(exc)
        self._last_io = time.monotonic()

    def _wake(self) -> None:
        """From a pika callback: make the current `process_data_events` return once this I/O is handled (it
        returns early only for a ready BlockingConnection event, and a zero-delay timer is one)."""
        if not self._woken and self._connection is not None:
            self._woken = True
            self._connection.call_later(0, self._awake)

    def _awake(self) -> None:
        self._woken = False

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        if isinstance(method, pika.spec.Basic.Ack):
            self._window.ack(method.delivery_tag, method.multiple)
        else:
            self._window.nack(method.delivery_tag, method.multiple)
        self._wake()

    def _on_return(self, _channel: Any, _method: pika.spec.Basic.Return, properties: pika.spec.BasicProperties,
                   _body: bytes) -> None:
        self._window.returned(properties.message_id)
        self._wake()

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        self._window.lost(reason)
        self._wake()

    def _error(self, failure: Failure) -> Exception:
        if self._cancel is not None:  # a cancel dropped the stream: abandoned, not the partner's failure
            self._cancel.check(self.site)
        error = failure.error
        if failure.what != "lost" or error is None:
            return super()._error(failure)
        kind = failure.message.kind if failure.message is not None else "control"
        if isinstance(error, pika.exceptions.ChannelClosedByBroker):
            return TransportError(f"{self.site}: broker {self.endpoint} closed the channel: {error.reply_text}",
                                  site=self.site)
        if isinstance(error, pika.exceptions.ConnectionClosedByBroker) and \
                error.reply_code == CONNECTION_FORCED and "is deleted" in str(error.reply_text):
            return CredentialsRevoked(f"{self.site}: broker {self.endpoint} closed the connection: user "
                                      f"{self.endpoint.user!r} was deleted while our {kind} message "
                                      "awaited its confirm", site=self.site)
        if isinstance(error, pika.exceptions.AMQPError | OSError):
            return transport_error(error, self.site, self.endpoint)
        return TransportError(f"{self.site}: lost the channel to broker {self.endpoint}: {error}", site=self.site)

    def close(self) -> None:
        if self._cancel is not None:
            self._cancel.disarm()
        connection, self._connection, self._channel = self._connection, None, None
        if connection is None:
            return
        if connection.is_open:
            try:
                connection.close()
            except (pika.exceptions.AMQPError, OSError) as exc:
                log.debug("closing the connection to %s: %s", self.site, exc)
        if not connection.is_closed:  # the partner's broker counts it against its user's connection limit
            log.warning("the connection to %s's broker did not close cleanly: dropping it", self.site)
            try:
                connection._impl._adapter_disconnect_stream()  # pika 1.x, as broker/cancel.py
            except (pika.exceptions.AMQPError, OSError, AttributeError) as exc:
                log.debug("dropping the connection to %s: %s", self.site, exc)
