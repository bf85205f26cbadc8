"""The send window: several batches await their confirm at once, and the watermark (sent_seq) moves only past
batches confirmed in order; a nack, a return or a lost connection leaves it at the last of those."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from federationd import links
from federationd.broker.confirms import SEND_WINDOW
from federationd.broker.delivery import Delivery, Outcome
from federationd.errors import TransportError
from federationd.store import reading
from tests.support.stub import StubBroker, StubNetwork, StubSite

A, B = "site-a", "site-b"


@pytest.fixture
def one_per_batch(tmp_path: Path) -> Iterator[tuple[StubNetwork, StubSite]]:
    """A sends one record per batch to B."""
    net = StubNetwork(tmp_path)
    a = net.add_site(A, batch_records=1)
    net.add_site(B)
    net.link(A, B)
    yield net, a
    net.close()


def _body(delivery: Delivery) -> dict[str, Any]:
    raw = gzip.decompress(delivery.body) if delivery.content_encoding == "gzip" else delivery.body
    body: dict[str, Any] = json.loads(raw)
    return body


def _spans(deliveries: list[Delivery]) -> list[tuple[int, int]]:
    return [(body["first"], body["last"]) for body in map(_body, deliveries)]


def _sent_seq(site: StubSite) -> int:
    with reading(site.rt.engine) as conn:
        return links.require(conn, B).sent_seq


def _put(site: StubSite, count: int) -> None:
    for i in range(count):
        site.put("employee", f"e-{i}", {"name": f"n{i}"})


@pytest.mark.parametrize(("answer", "error"), [
    ("nack", "site-b: broker mq.site-b.test refused (nacked) our changes message"),
    ("return", "site-b: broker mq.site-b.test could not route our changes message (no queue bound for 'site-a')"),
    ("lose", "connection to the stub broker lost at message 3"),
])
def test_a_failure_of_the_third_of_five_in_flight_leaves_the_watermark_at_the_second(
        one_per_batch: tuple[StubNetwork, StubSite], answer: str, error: str) -> None:
    net, a = one_per_batch
    _put(a, 5)
    net.broker = StubBroker(answers={3: answer})
    with pytest.raises(TransportError) as raised:
        net.send(A, B)
    assert str(raised.value) == error
    first = _spans(net.take(B))
    assert len(first) == 5 and net.broker.most_unconfirmed == 5  # all five were in flight together
    assert _sent_seq(a) == first[1][1]  # batches 1 and 2 confirmed in order; 4 and 5 acked after 3 failed
    assert [m for m in a.log_messages(B) if m.startswith("sent")] == ["sent 1 employee record(s)"] * 2

    net.broker = None
    net.send(A, B)
    assert _spans(net.take(B)) == first[2:]  # the next send starts again at batch 3
    assert _sent_seq(a) == first[4][1]


def test_acks_out_of_order_mark_nothing_past_an_unconfirmed_batch(
        one_per_batch: tuple[StubNetwork, StubSite]) -> None:
    """Batch 2 acked, batch 1 never: the watermark stays before batch 1 when the connection drops."""
    net, a = one_per_batch
    _put(a, 3)
    before = _sent_seq(a)

    class SecondOnly(StubBroker):
        def answer(self, window: Any) -> None:
            if window.outstanding() == [1, 2, 3]:
                window.ack(2, False)
            else:
                window.lost(TransportError("connection to the stub broker lost"))

    net.broker = SecondOnly()
    with pytest.raises(TransportError, match="lost"):
        net.send(A, B)
    assert _sent_seq(a) == before


def test_the_window_bounds_the_messages_awaiting_their_confirm(one_per_batch: tuple[StubNetwork, StubSite]) -> None:
    net, a = one_per_batch
    _put(a, 3 * SEND_WINDOW)
    net.broker = StubBroker(one_at_a_time=True)  # answers only the oldest each time the send waits
    report = net.send(A, B)
    assert report.messages == 3 * SEND_WINDOW
    assert net.broker.most_unconfirmed == SEND_WINDOW
    spans = _spans(net.take(B))
    assert _sent_seq(a) == spans[-1][1]


def test_a_snapshot_is_marked_only_once_every_part_is_confirmed(tmp_path: Path) -> None:
    net = StubNetwork(tmp_path)
    a = net.add_site(A, batch_records=2)
    net.add_site(B)
    net.link(A, B)
    _put(a, 6)
    net.send(A, B)
    assert set(net.deliver_all(B)) == {Outcome.ACK}
    net.request_snapshot(A, B)
    watermark = _sent_seq(a)
    net.broker = StubBroker(answers={4: "nack"})  # the final part (3 parts of 2 records, then the counts)
    with pytest.raises(TransportError, match="nacked"):
        net.send(A, B)
    assert net.broker.most_unconfirmed == 4
    assert _sent_seq(a) == watermark
    assert a.scalar("SELECT snapshot_due FROM links WHERE site = :s", s=B)
    net.take(B)
    net.broker = None
    assert net.send(A, B).snapshot
    assert not a.scalar("SELECT snapshot_due FROM links WHERE site = :s", s=B)
    assert set(net.deliver_all(B)) == {Outcome.ACK}
    net.close()
