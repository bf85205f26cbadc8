"""federationd.broker.cancel: a send blocked in pika's connect is abandoned from another thread (no broker: a
port that completes TCP in the kernel's backlog and never answers holds the TLS handshake)."""

from __future__ import annotations

import ssl
import threading
from datetime import timedelta

import pytest

from federationd.broker.cancel import Cancel
from federationd.broker.endpoints import Endpoints
from federationd.broker.publisher import Publisher
from federationd.errors import FederationError, SendCancelled

HOUR = timedelta(hours=1)  # the connect timeout: far beyond the test, only the cancel can end the wait


def _publisher(port: int) -> Publisher:
    endpoint = Endpoints.parse(f"amqps://127.0.0.1:{port}/vh").with_credentials("u", "p")
    return Publisher(endpoint, ssl.create_default_context(), site="site-b", heartbeat=timedelta(seconds=30),
                     timeout=HOUR, name="test")


def test_a_cancel_from_another_thread_ends_a_connect_hung_in_the_tls_handshake(blackhole: int) -> None:
    cancel = Cancel()
    outcome: list[BaseException | None] = []
    entered = threading.Event()

    def send() -> None:
        try:
            entered.set()
            with _publisher(blackhole).watch(cancel):
                outcome.append(None)
        except FederationError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=send, daemon=True)
    worker.start()
    assert entered.wait(10)
    worker.join(1.0)
    assert worker.is_alive(), "the connect should hang against the blackhole"
    cancel.cancel()
    worker.join(60)  # a deadline, not a speed check: without the cancel it would wait for an hour
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], SendCancelled), outcome
    assert "abandoned" in str(outcome[0])


def test_a_cancel_before_the_connect_raises_at_once_and_twice_is_harmless(blackhole: int) -> None:
    cancel = Cancel()
    cancel.cancel()
    cancel.cancel()
    with pytest.raises(SendCancelled), _publisher(blackhole).watch(cancel):
        pass
