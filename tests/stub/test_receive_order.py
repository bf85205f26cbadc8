"""Delivery order is not guaranteed: every order of a snapshot's parts, with duplicates, with data before `start`
and with a newer snapshot overtaking an older one, ends with the receiver equal to the sender, the sweep run once
and nothing dead-lettered (docs/reliability.md, "Receiving"). In-process, through the stub transport."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from federationd import links
from federationd.broker.delivery import Delivery, Outcome
from tests.support.stub import StubNetwork, StubSite

A, B = "site-a", "site-b"


def _sent_snapshot(net: StubNetwork, a: StubSite) -> list[Delivery]:
    net.request_snapshot(A, B)
    net.send(A, B)
    return net.take(B)


@pytest.fixture
def relink(tmp_path: Path) -> Iterator[tuple[StubNetwork, StubSite, StubSite, list[Delivery]]]:
    """B holds A's data with two losses (a delete, an update never delivered); A sends a 4-part snapshot."""
    net = StubNetwork(tmp_path)
    a = net.add_site(A, batch_records=3)
    b = net.add_site(B)
    net.link(A, B)
    for i in range(9):
        a.put("employee", f"e-{i}", {"name": f"n{i}"})
    a.put("department", "d-gone", {"name": "old"})
    net.send(A, B)
    assert set(net.deliver_all(B)) == {Outcome.ACK}
    a.delete("department", "d-gone")
    a.put("employee", "e-0", {"name": "changed"})
    net.send(A, B)
    assert net.take(B)  # lost: B still holds d-gone and the old e-0
    parts = _sent_snapshot(net, a)
    assert [d.kind for d in parts] == ["snapshot"] * 4
    yield net, a, b, parts
    net.close()


def _sweeps(site: StubSite) -> int:
    return sum(message.startswith("snapshot complete") for message in site.log_messages(A))


def _run(net: StubNetwork, b: StubSite, tmp: Path, name: str, order: Sequence[Delivery]) -> StubSite:
    copy = net.clone(b, tmp / f"{name}.db")
    outcomes = copy.inbound.handle
    assert [outcomes(d) for d in order] == [Outcome.ACK] * len(order), name
    return copy


ORDERS = list(itertools.permutations(range(4)))


@pytest.mark.parametrize("variant", ["once", "each twice", "replayed after", "dup mid"])
def test_every_order_of_a_four_part_snapshot_converges_and_sweeps_once(relink: tuple, tmp_path: Path,
                                                                       variant: str) -> None:
    net, a, b, parts = relink
    assert len(ORDERS) == 24
    for n, order in enumerate(ORDERS):
        sequence = [parts[i] for i in order]
        if variant == "each twice":
            sequence = [d for d in sequence for _ in (0, 1)]
        elif variant == "replayed after":
            sequence = sequence + sequence[::-1]
        elif variant == "dup mid":
            sequence = sequence[:2] + sequence[:1] + sequence[2:] + sequence[1:2]
        copy = _run(net, b, tmp_path, f"{variant}-{n}", sequence)
        assert copy.records_of(A) == a.records_of(A), order
        assert _sweeps(copy) == 1, order
        assert copy.records_of(A, live_only=False)[("department", "d-gone")][1] == "{}"  # swept
        assert copy.scalar("SELECT count(*) FROM inbound_snapshots") == 0
        copy.close()


def test_a_redelivered_part_is_not_counted_twice(relink: tuple, tmp_path: Path) -> None:
    """Final part + part 1 twice + part 2: still three of four parts, so no sweep yet (counts would match if
    the duplicate were counted as the missing part)."""
    net, a, b, parts = relink
    copy = _run(net, b, tmp_path, "dup", [parts[3], parts[0], parts[0], parts[1]])
    assert _sweeps(copy) == 0
    assert ("department", "d-gone") in copy.records_of(A)
    copy.inbound.handle(parts[2])
    assert _sweeps(copy) == 1
    assert copy.records_of(A) == a.records_of(A)


def test_data_before_start_in_every_order(tmp_path: Path) -> None:
    """At the acceptor, A's initial snapshot may come before A's `start`: it waits in the database, then
    applies with the start, whatever the order."""
    net = StubNetwork(tmp_path)
    a = net.add_site(A, batch_records=3)
    b = net.add_site(B)
    net.link(A, B, state_b=links.AWAITING_START)
    for i in range(8):
        a.put("employee", f"e-{i}", {"name": f"n{i}"})
    a.put("group", "g-1", {"name": "g", "members": ["e-1"]})
    parts = _sent_snapshot(net, a)
    assert len(parts) == 4
    start = net.control(A, B, "start", user="fed.site-a.site-b", password="pw")
    messages = [*parts, start]
    for n, order in enumerate(itertools.permutations(range(5))):
        copy = _run(net, b, tmp_path, f"start-{n}", [messages[i] for i in order])
        assert copy.records_of(A) == a.records_of(A), order
        assert _sweeps(copy) == 1, order
        assert copy.scalar("SELECT count(*) FROM inbound_parked") == 0
        assert copy.scalar("SELECT state FROM links WHERE site = :s", s=A) == links.LINKED
        copy.close()
    net.close()


def test_a_newer_snapshot_supersedes_an_older_unfinished_one(relink: tuple, tmp_path: Path) -> None:
    """Parts of two snapshots interleaved in random orders: the newer one wins, a late part of the older one
    never sweeps and never brings back what the newer one removed."""
    net, a, b, first = relink
    a.delete("employee", "e-3")
    a.put("employee", "e-9", {"name": "new"})
    net.send(A, B)
    changes = net.take(B)
    second = _sent_snapshot(net, a)
    rng = random.Random(10)
    for n in range(60):
        sequence = [*first, *second, *changes]
        rng.shuffle(sequence)
        copy = _run(net, b, tmp_path, f"two-{n}", sequence)
        assert copy.records_of(A) == a.records_of(A), n
        assert copy.scalar("SELECT count(*) FROM inbound_snapshots") in (0, 1)
        copy.close()


def test_late_changes_of_an_older_epoch_do_not_resurrect(relink: tuple, tmp_path: Path) -> None:
    """A changes message sent before the snapshot (the lost update and delete) arrives after it."""
    net, a, b, _parts = relink
    a.put("employee", "e-late", {"name": "created then deleted"})
    net.send(A, B)
    created = net.take(B)
    a.delete("employee", "e-late")
    net.send(A, B)
    net.take(B)  # the delete is lost
    snapshot = _sent_snapshot(net, a)
    copy = _run(net, b, tmp_path, "late", [*snapshot, *created])
    assert ("employee", "e-late") not in copy.records_of(A)
    assert copy.records_of(A) == a.records_of(A)
