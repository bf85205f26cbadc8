"""A snapshot's epoch bump is one statement, and a relink requested while a snapshot is being sent is not lost."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from federationd import links, wire
from federationd.broker.delivery import Outcome
from federationd.store import bump_epoch, ensure_site_state, make_engine, migrate
from tests.support.pg import create_database, drop_database, pg_reachable
from tests.support.stub import StubNetwork

A, B = "site-a", "site-b"


def _due(net: StubNetwork) -> bool:
    return bool(net.sites[A].scalar("SELECT snapshot_due FROM links WHERE site = :s", s=B))


@pytest.mark.parametrize("request_during", [False, True])
def test_snapshot_due_is_cleared_only_without_a_newer_request(tmp_path: Path, request_during: bool) -> None:
    net = StubNetwork(tmp_path)
    a = net.add_site(A, batch_records=2)
    net.add_site(B)
    net.link(A, B)
    for i in range(5):
        a.put("employee", f"e-{i}", {"name": str(i)})
    net.request_snapshot(A, B)

    def relink_requested(_sender: str, _receiver: str, message: wire.Outgoing) -> None:
        if message.kind == "snapshot" and request_during and not net.on_publish[1:]:
            with a.rt.engine.begin() as conn:  # what `federationd relink` or a partner's relink does meanwhile
                links.change(conn, B, snapshot_due=True, send_now=True, hold_seq=0)
            net.on_publish.append(lambda *_: None)  # once

    net.on_publish.append(relink_requested)
    report = net.send(A, B)
    assert report.snapshot
    assert _due(net) is request_during
    assert set(net.deliver_all(B)) == {Outcome.ACK}
    if request_during:  # the next send carries the snapshot that was asked for
        assert net.send(A, B).snapshot
        assert not _due(net)
    net.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url, name = f"sqlite:///{tmp_path / 'epoch.db'}", None
    else:
        if not pg_reachable():
            pytest.skip("PostgreSQL is not reachable")
        name = f"fedtest_epoch_{uuid.uuid4().hex[:8]}"
        url = create_database(name)
    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        ensure_site_state(conn, A, "install")
    yield engine
    engine.dispose()
    if name:
        drop_database(name)


def test_bump_epoch_is_one_statement_and_never_goes_back(engine: Engine) -> None:
    """Two snapshots starting at once: the second bump waits for the first and gets a newer epoch (a read then
    a write gave both the same one, or let the slower writer move it back)."""
    with engine.begin() as conn:
        start = int(conn.execute(text("SELECT epoch FROM site_state")).scalar_one())
    got: list[int] = []
    first = engine.connect()
    tx = first.begin()
    got.append(bump_epoch(first, now=start + 100))
    second = threading.Thread(target=lambda: got.append(_bump(engine, start + 50)))
    second.start()
    second.join(0.5)  # it waits on the first one's row lock (on SQLite: on the write lock)
    tx.commit()
    first.close()
    second.join(30)
    assert got == [start + 100, start + 101]
    with engine.begin() as conn:
        assert conn.execute(text("SELECT epoch FROM site_state")).scalar_one() == start + 101


def _bump(engine: Engine, now: int) -> int:
    with engine.begin() as conn:
        return bump_epoch(conn, now=now)


def test_every_snapshot_request_is_counted_by_the_database(engine: Engine) -> None:
    """The trigger behind the compare-and-clear, on both databases: whoever sets snapshot_due, it counts."""
    with engine.begin() as conn:
        links.create(conn, 1.0, site=B, state=links.LINKED, role=links.REQUESTER)

    def requests() -> int:
        with engine.begin() as conn:
            return int(conn.execute(text("SELECT snapshot_requests FROM links")).scalar_one())

    for values, expected in [({"snapshot_due": True}, 1), ({"snapshot_due": True, "send_now": True}, 2),
                             ({"sent_seq": 5}, 2), ({"snapshot_due": False}, 2), ({"snapshot_due": True}, 3)]:
        with engine.begin() as conn:
            links.change(conn, B, **values)
        assert requests() == expected, values
