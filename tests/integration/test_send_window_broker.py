"""The send window against a real broker: pika's asynchronous confirms through a BlockingConnection settle in
order, and an unroutable message stops the window at the messages confirmed before it."""

from __future__ import annotations

import ssl
import time
from datetime import timedelta

import pika
import pytest

from federationd.broker import publisher as publisher_module
from federationd.broker.confirms import SEND_WINDOW
from federationd.broker.endpoints import Endpoints
from federationd.broker.publisher import Publisher
from federationd.errors import TransportError
from federationd.wire import encode
from tests.support.broker import TestBroker

SITE = "window"


@pytest.fixture
def endpoint(broker: TestBroker) -> Endpoints:
    creds = broker.sites.get(SITE) or broker.add_site(SITE)
    url = broker.url(SITE, creds)
    params = pika.URLParameters(url)
    params.ssl_options = pika.SSLOptions(ssl.create_default_context(cafile=str(broker.ca_file)), "localhost")
    with pika.BlockingConnection(params) as connection:
        channel = connection.channel()
        channel.exchange_declare("federation", exchange_type="topic", durable=True)
        channel.queue_declare("federation.in", durable=True)
        channel.queue_bind("federation.in", "federation", "site-a")
        channel.queue_purge("federation.in")
    return Endpoints.parse(url)


def _publisher(broker: TestBroker, endpoint: Endpoints) -> Publisher:
    return Publisher(endpoint, ssl.create_default_context(cafile=str(broker.ca_file)), site="site-b",
                     heartbeat=timedelta(seconds=30), timeout=timedelta(seconds=10), name="test-window")


def test_confirms_settle_in_publish_order_and_a_wait_ends_with_its_confirm(broker: TestBroker,
                                                                           endpoint: Endpoints,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    settled: list[int] = []
    count = 4 * SEND_WINDOW
    with _publisher(broker, endpoint) as publisher:
        for i in range(count):
            publisher.stream(encode("control", {"n": i}), "site-a", lambda i=i: settled.append(i))
        publisher.drain()
        assert settled == list(range(count))
        # A confirm ends the wait at once instead of at the end of a pump (PUMP_SECONDS): with a pump made long
        # (60 s), five synchronous publishes take less than one, however loaded the machine; a wait that ran to
        # the end of its pump would take five.
        pump = 60.0
        with monkeypatch.context() as patched:
            patched.setattr(publisher_module, "PUMP_SECONDS", pump)
            started = time.monotonic()
            for i in range(5):
                publisher.publish(encode("control", {"n": i}), "site-a")
            elapsed = time.monotonic() - started
        assert elapsed < pump, f"five publishes took {elapsed:.1f} s: a wait ran to the end of its pump"


def test_an_unroutable_message_stops_the_window_at_the_ones_before_it(broker: TestBroker,
                                                                      endpoint: Endpoints) -> None:
    settled: list[int] = []
    with pytest.raises(TransportError) as raised, _publisher(broker, endpoint) as publisher:
        for i in range(3):
            publisher.stream(encode("control", {"n": i}), "site-a", lambda i=i: settled.append(i))
        publisher.stream(encode("control", {"n": 3}), "nobody", lambda: settled.append(3))
        publisher.stream(encode("control", {"n": 4}), "site-a", lambda: settled.append(4))
        publisher.drain()
    assert settled == [0, 1, 2]
    assert str(raised.value) == (f"site-b: broker {endpoint} could not route our control message "
                                 "(no queue bound for 'nobody')")
