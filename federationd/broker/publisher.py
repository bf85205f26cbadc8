"""Putting messages on a broker: persistent, `mandatory`, and only done once the broker confirmed them."""

from __future__ import annotations

import logging
import ssl
from datetime import timedelta
from types import TracebackType

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from federationd.broker.connection import connect, transport_error
from federationd.broker.endpoints import Endpoint
from federationd.errors import TransportError
from federationd.wire import Outgoing

log = logging.getLogger(__name__)

EXCHANGE = "federation"


class Publisher:
    """One connection and one confirming channel to one broker, for the lifetime of a `with` block.

    `publish` returns only after the broker confirmed the message; a nack, an unroutable return or a refusal
    raises TransportError naming the site."""

    def __init__(self, endpoint: Endpoint, context: ssl.SSLContext, *, site: str, heartbeat: timedelta,
                 timeout: timedelta, name: str) -> None:
        self.endpoint = endpoint
        self.site = site
        self._context = context
        self._heartbeat = heartbeat
        self._timeout = timeout
        self._name = name
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def __enter__(self) -> Publisher:
        self._connection = connect(self.endpoint, self._context, heartbeat=self._heartbeat,
                                   timeout=self._timeout, name=self._name, site=self.site)
        try:
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
        except pika.exceptions.AMQPError as exc:
            self.close()
            raise transport_error(exc, self.site, self.endpoint) from None
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def publish(self, message: Outgoing, routing_key: str) -> None:
        if self._channel is None:
            raise RuntimeError("Publisher used outside its with block")
        properties = pika.BasicProperties(**message.properties(self.endpoint.user))
        try:
            self._channel.basic_publish(EXCHANGE, routing_key, message.body, properties, mandatory=True)
        except pika.exceptions.UnroutableError:
            raise TransportError(f"{self.site}: broker {self.endpoint} could not route our {message.kind} "
                                 f"message (no queue bound for {routing_key!r})", site=self.site) from None
        except pika.exceptions.NackError:
            raise TransportError(f"{self.site}: broker {self.endpoint} refused (nacked) our {message.kind} "
                                 "message", site=self.site) from None
        except pika.exceptions.ChannelClosedByBroker as exc:
            raise TransportError(f"{self.site}: broker {self.endpoint} closed the channel: {exc.reply_text}",
                                 site=self.site) from None
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise transport_error(exc, self.site, self.endpoint) from None

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except (pika.exceptions.AMQPError, OSError) as exc:
                log.debug("closing the connection to %s: %s", self.site, exc)
