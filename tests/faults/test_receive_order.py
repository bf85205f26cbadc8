"""Fault: `kill -9` of the receiver in the middle of a 20-part snapshot and an immediate restart. Afterwards the
partner holds exactly the origin's records, the sweep ran (a record the origin no longer has is deleted) and
nothing was dead-lettered.

Every order of a snapshot's parts, with duplicates, is proven through the stub transport (tests/stub); the inbound
queues' single active consumer keeps a second consumer from taking parts ahead of the daemon on a real broker, so
this test does not force a reordering (an earlier version held the first parts with `basic.get`, which quorum
queues with single active consumer refuse)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, insert, select

from federationd.outbox import capture
from federationd.schema import inbound_snapshot_parts, inbound_sweeps, records
from federationd.store import reading
from tests.faults.common import converge, count_records, kill9, link, link_row
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

PARTS = 20
BATCH = 150  # records per part: enough that applying the 20 parts takes a while


def _finished(engine, origin: str) -> str | None:
    with reading(engine) as conn:
        return conn.execute(select(inbound_sweeps.c.finished_id).where(inbound_sweeps.c.origin == origin)).scalar()


def _parts_applied(engine, origin: str, before: str | None) -> int:
    """Parts of the snapshot in progress applied so far; PARTS + 1 once it finished (its rows are then gone)."""
    with reading(engine) as conn:
        if _finished(engine, origin) != before:
            return PARTS + 1
        return int(conn.execute(select(func.count()).select_from(inbound_snapshot_parts)
                                .where(inbound_snapshot_parts.c.origin == origin)).scalar_one())


@pytest.mark.timeout(600)  # 3,000 records twice, a kill and a restart, then a convergence
def test_kill9_of_the_receiver_during_a_20_part_snapshot_converges_without_dead_letters(make_site, broker):
    a = make_site("alpha", transport={"batch_records": BATCH})
    b = make_site("beta")
    link(a, b)
    wait_until(lambda: count_records(b, a.id, "company") == 1, 60, what="the initial snapshot at B")
    rows = [(f"e{n:04d}", {"name": f"Employee {n}", "email": f"e{n}@a.example"}) for n in range(PARTS * BATCH - 1)]
    with a.engine() as engine, engine.begin() as conn:
        capture.put_many(conn, "employee", rows)
    wait_until(lambda: count_records(b, a.id, "employee") == len(rows), 90, what="A's employees at B")
    with b.engine() as engine, engine.begin() as conn:  # left over at B: A no longer has it (as after a restore)
        conn.execute(insert(records).values(origin=a.id, category="employee", id="ghost", epoch=1, version=1,
                                            deleted=False, data='{"name":"ghost"}', updated_at=time.time()))

    cancels = b.log_text().count(f"stopped consuming federation.inbound.{a.id}\n")
    b.cli("pause", a.id)  # the whole snapshot waits in B's queue, then B takes it in at full speed
    # the pause is in B's database at once; B's consumer lets go of A's queue at its next sync: wait for that,
    # else the snapshot may be applied as it arrives and be over before the kill
    wait_until(lambda: b.log_text().count(f"stopped consuming federation.inbound.{a.id}\n") > cancels, 60,
               what="B's consumer off A's queue")
    sent = link_row(a, b.id).last_send_at
    a.cli("relink", b.id)
    wait_until(lambda: (row := link_row(a, b.id)).last_send_at != sent and not row.snapshot_due, 90,
               what="A's snapshot confirmed by B's broker")

    with b.engine() as engine:
        before = _finished(engine, a.id)  # the initial snapshot's id
        b.cli("resume", a.id)
        wait_until(lambda: _parts_applied(engine, a.id, before) >= 2, 90, interval=0.01,
                   what="B applying the first parts of the snapshot")
        kill9(b)
        b.start()  # at once
        assert _parts_applied(engine, a.id, before) < PARTS + 1, "the snapshot finished before the kill"
    diff = converge(a, b, 150, ("company", "employee"))
    assert diff.clean, diff
    assert diff.compared >= len(rows) + 1
    ghost = b.json("records", "get", "employee", "ghost", "--origin", a.id)
    assert ghost["deleted"], "the snapshot was never swept"
    dead = broker.api("GET", f"/api/queues/{b.id}/federation.dead.{a.id}")
    assert dead.get("messages", 0) == 0, dead
    logged = b.log_text()
    assert "dead-letter" not in logged and "Traceback" not in logged
    assert any(m["message"].startswith("snapshot complete") for m in b.json("log", "--site", a.id))
