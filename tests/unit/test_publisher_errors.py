"""The real publisher's errors with a window of confirms: the same exceptions and messages as when each publish
waited for its own confirm (no broker: the pika answers are fed to the publisher's callbacks directly)."""

from __future__ import annotations

import ssl
from datetime import timedelta
from typing import Any

import pika.exceptions
import pika.frame
import pika.spec
import pytest

from federationd.broker.endpoints import Endpoints
from federationd.broker.publisher import Publisher
from federationd.errors import CredentialsRevoked, Fenced, TransportError
from federationd.wire import Outgoing, encode

ENDPOINT = Endpoints.parse("amqps://u:pw@mq.site-b.test:5671/federation")


class Offline(Publisher):
    """The publisher without a connection: `_send` only notes the message, `_pump` plays the broker."""

    def __init__(self, broker: Any, allowed: bool = True) -> None:
        super().__init__(ENDPOINT, ssl.create_default_context(), site="site-b", heartbeat=timedelta(seconds=30),
                         timeout=timedelta(seconds=10), name="test", allowed=lambda: allowed)
        self._channel = object()  # type: ignore[assignment]
        self.broker = broker
        self.sent: list[Outgoing] = []

    def _send(self, message: Outgoing, routing_key: str, tag: int) -> None:
        self.sent.append(message)

    def _pump(self) -> None:
        self.broker(self)

    def _revive(self) -> None:  # no connection to lose (the tests of `_revive` below give it one)
        pass


def _ack(publisher: Publisher, tag: int) -> None:
    publisher._on_confirm(pika.frame.Method(1, pika.spec.Basic.Ack(delivery_tag=tag)))


def _publish_three(publisher: Offline, settled: list[int] | None = None) -> None:
    for i in range(3):
        publisher.stream(encode("changes", {"n": i}), "site-a",
                         (lambda i=i: settled.append(i)) if settled is not None else None)
    publisher.drain()


def test_the_watermark_callbacks_run_in_order_and_only_for_confirmed_messages() -> None:
    settled: list[int] = []

    def broker(p: Offline) -> None:
        _ack(p, 1)
        p._on_confirm(pika.frame.Method(1, pika.spec.Basic.Nack(delivery_tag=2)))
        _ack(p, 3)

    with pytest.raises(TransportError) as raised:
        _publish_three(Offline(broker), settled)
    assert str(raised.value) == f"site-b: broker {ENDPOINT} refused (nacked) our changes message"
    assert settled == [0]


def test_a_return_names_the_routing_key() -> None:
    def broker(p: Offline) -> None:
        p._on_return(None, pika.spec.Basic.Return(), pika.spec.BasicProperties(message_id=p.sent[1].message_id),
                     b"")
        for tag in (1, 2, 3):
            _ack(p, tag)

    with pytest.raises(TransportError) as raised:
        _publish_three(Offline(broker))
    assert str(raised.value) == (f"site-b: broker {ENDPOINT} could not route our changes message "
                                 "(no queue bound for 'site-a')")


@pytest.mark.parametrize(("error", "expected", "kind"), [
    (pika.exceptions.ChannelClosedByBroker(403, "ACCESS_REFUSED - no"),
     f"site-b: broker {ENDPOINT} closed the channel: ACCESS_REFUSED - no", TransportError),
    (pika.exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED - user 'u' is deleted"),
     f"site-b: broker {ENDPOINT} closed the connection: user 'u' was deleted while our changes message awaited "
     "its confirm", CredentialsRevoked),
])
def test_a_lost_channel_or_connection(error: Exception, expected: str, kind: type[Exception]) -> None:
    def broker(p: Offline) -> None:
        _ack(p, 1)
        p._on_channel_closed(None, error)

    with pytest.raises(kind) as raised:
        _publish_three(Offline(broker))
    assert str(raised.value) == expected


def test_fenced_before_any_publish() -> None:
    publisher = Offline(lambda p: None, allowed=False)
    with pytest.raises(Fenced, match="no longer the site's active daemon"):
        publisher.stream(encode("changes", {}), "site-a")
    assert publisher.sent == []


class DroppedConnection:
    """A connection whose first poll raises `error` (the broker dropped it while the send was busy elsewhere)."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.is_open = False
        self.is_closed = True
        self.publisher: Publisher | None = None

    def process_data_events(self, time_limit: float) -> None:
        if self.publisher is not None:  # as pika does: the channel's close callback runs, then the poll raises
            self.publisher._on_channel_closed(None, self.error)
        raise self.error

    def call_later(self, delay: float, callback: Any) -> None:  # the publisher's wake-up: nothing to wake here
        pass


class Reconnecting(Offline):
    def __init__(self, broker: Any, dropped: DroppedConnection) -> None:
        super().__init__(broker)
        self._connection = dropped  # type: ignore[assignment]
        dropped.publisher = self
        self.opened = 0

    _revive = Publisher._revive

    def _open(self) -> None:
        self.opened += 1
        self._connection = object()  # type: ignore[assignment]
        self._channel = object()  # type: ignore[assignment]


def test_a_connection_lost_with_nothing_in_flight_is_replaced_and_the_send_goes_on() -> None:
    """Heartbeats stop while the send waits on our database; the broker drops the connection: reconnect, no
    failure (nothing was in flight), and the new channel's confirms are numbered from 1 again."""
    settled: list[int] = []

    def broker(p: Offline) -> None:
        for tag in range(1, len(p.sent) + 1):
            _ack(p, tag)

    publisher = Reconnecting(broker, DroppedConnection(pika.exceptions.StreamLostError("Stream connection lost")))
    _publish_three(publisher, settled)
    assert publisher.opened == 1 and settled == [0, 1, 2]


def test_a_connection_the_broker_closed_on_purpose_is_still_a_failure() -> None:
    """A deleted user (CONNECTION_FORCED) is not a dropped connection: no reconnect, the send fails as before."""
    closed = pika.exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED - user 'u' is deleted")
    publisher = Reconnecting(lambda p: None, DroppedConnection(closed))
    with pytest.raises(CredentialsRevoked):
        _publish_three(publisher)
    assert publisher.opened == 0
