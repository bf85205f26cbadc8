"""Issue 16: two daemons of one site on the machine's PostgreSQL, as on two hosts (one database, two copies of the
same state_dir, a database role each), linked to a partner.

- kill -9 of the active daemon in the middle of a 20,000-record send, and in the middle of a snapshot (relink):
  the standby takes over, the partner converges to exactly the origin (record by record), and every record was
  applied at most once per epoch, in the origin's order;
- fencing: the active daemon's database sessions are terminated and its role blocked: it stops acting (log, metric)
  and the standby takes over; a daemon frozen (SIGSTOP, as a host that stopped answering) loses the lock to the
  standby and, woken, finds itself fenced.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select

from federationd.outbox import capture
from federationd.schema import links as link_rows
from federationd.schema import records
from federationd.store import reading
from tests.faults.common import compare, converge, epoch_of, link, link_row
from tests.support.pg import (
    ADMIN_DSN,
    applied,
    audit_applies,
    block_role,
    copy_database,
    create_role,
    drop_database,
    drop_role,
)
from tests.support.sites import Site, second_daemon, use_database_role
from tests.support.waiting import holds_for, wait_until

# Two sites, a link and a second daemon before the scenario starts: on a machine this loaded (load average 20 to
# 30 on 2 cores) that alone took three minutes, so these tests get twice the suite's per-test timeout.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TOTAL = 20_000
SNAPSHOT_TOTAL = 5_000
# A short AMQP heartbeat: the broker notices a killed daemon's consumer connection within seconds, so that the
# standby's consumer (single active consumer) gets the inbound queue.
TRANSPORT = {"batch_records": 100, "heartbeat": "4s"}


def label(site: Site) -> str:
    assert site.proc is not None
    return f"{socket.gethostname()} pid {site.proc.pid}"


def sending(site: Site, partner: str) -> bool:
    with site.engine() as engine, reading(engine) as conn:
        return conn.execute(select(link_rows.c.sending_since).where(link_rows.c.site == partner)).scalar() \
            is not None


def held_at(site: Site, origin: str, epoch: int) -> int:
    """How many live employee records of `origin` `site` holds under `epoch` (cheap to poll, unlike a diff)."""
    with site.engine() as engine, reading(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(records).where(
            records.c.origin == origin, records.c.category == "employee", records.c.epoch == epoch,
            records.c.deleted.is_(False))).scalar_one())


def active(site: Site) -> float:
    return float(site.metric("federationd_active"))


def in_order(applies: list[tuple[str, str, int, int]]) -> list[str]:
    """What breaks per-record order or applies a record twice: a record's (epoch, version) must only grow."""
    last: dict[tuple[str, str], tuple[int, int]] = {}
    problems = []
    for category, record_id, epoch, version in applies:
        key = (category, record_id)
        if key in last and last[key] >= (epoch, version):
            problems.append(f"{key}: {(epoch, version)} applied after {last[key]}")
        last[key] = (epoch, version)
    return problems


@pytest.fixture
def pair(make_site: Any, backend: str) -> Iterator[tuple[Site, Site, Site, list[str]]]:
    """(a, standby, b, roles): site A's two daemons (A active, its standby waiting), each connecting as a role of
    its own, and partner B linked to A; B logs every apply."""
    if backend != "postgresql":
        pytest.skip("the daemon pair shares a PostgreSQL database")
    a = make_site("alpha", start=False, transport=TRANSPORT)
    assert a.pg_name is not None
    roles = [f"{a.pg_name}_one", f"{a.pg_name}_two"]
    for role in roles:
        create_role(role)
    use_database_role(a, roles[0])
    a.start()
    b = make_site("beta", transport={"heartbeat": "4s"})
    assert b.pg_name is not None
    audit_applies(b.pg_name)
    standby = second_daemon(a)
    use_database_role(standby, roles[1])
    try:
        link(a, b)
        standby.start()
        wait_until(lambda: "standby: another federationd is active" in standby.log_text(), 30,
                   what="the second daemon waiting as a standby")
        assert active(a) == 1 and active(standby) == 0
        yield a, standby, b, roles
    finally:
        standby.stop()
        a.stop()
        for role in roles:
            drop_role(role)


def put_employees(site: Site, count: int) -> int:
    """`count` employees in one host transaction (the bulk capture path); returns the last version."""
    rows = [(f"e{n:05d}", {"name": f"Employee {n}", "email": f"e{n}@a.example"}) for n in range(count)]
    with site.engine() as engine, engine.begin() as conn:
        return capture.put_many(conn, "employee", rows)[-1].version


def test_kill9_of_the_active_daemon_mid_send(pair):
    a, standby, b, _roles = pair
    assert b.pg_name is not None
    assert a.json("health")["active_daemon"] == label(a)
    assert {row["active_daemon"] for row in a.json("status")} == {label(a)}

    last = put_employees(a, TOTAL)
    wait_until(lambda: sending(a, b.id) and 0 < link_row(a, b.id).sent_seq < last, 60, interval=0.02,
               what="A in the middle of the send")
    a.stop(signal.SIGKILL)
    assert link_row(standby, b.id).sent_seq < last, "the send had finished before the kill"
    wait_until(lambda: active(standby) == 1, 30, what="the standby takes over")
    wait_until(lambda: held_at(b, a.id, epoch_of(a)) == TOTAL, 180, what="A's 20,000 records at B")
    diff = compare(a, b, ("company", "employee"))
    assert diff.clean, diff
    applies = [entry for entry in applied(b.pg_name, a.id) if entry[0] == "employee"]
    stamps = [(epoch, version) for _c, _i, epoch, version in applies]
    assert len(applies) == TOTAL and stamps == sorted(stamps), "B applied A's records out of order or twice"
    health = standby.json("health")
    assert health["active"] is True and health["active_daemon"] == label(standby)
    assert "Traceback" not in standby.log_text()


def test_kill9_of_the_active_daemon_mid_snapshot(pair):
    a, standby, b, _roles = pair
    assert b.pg_name is not None
    put_employees(a, SNAPSHOT_TOTAL)
    wait_until(lambda: held_at(b, a.id, epoch_of(a)) == SNAPSHOT_TOTAL, 120, what="A's records at B")
    epoch_before = epoch_of(a)
    with a.engine() as engine:
        def snapshot_underway() -> bool:
            with reading(engine) as conn:
                row = conn.execute(select(link_rows.c.snapshot_due, link_rows.c.sending_since)
                                   .where(link_rows.c.site == b.id)).one()
            return bool(row.snapshot_due) and row.sending_since is not None

        # The snapshot's epoch bump (an update of site_state) waits on this lock: A is caught sending it, its
        # sending mark and snapshot_due both set, however fast the machine (a 5,000-record snapshot could end
        # between two polls, or before the CLI's own process had exited).
        with psycopg.connect(ADMIN_DSN.rsplit("/", 1)[0] + f"/{a.pg_name}") as holder:
            holder.execute("LOCK TABLE site_state IN EXCLUSIVE MODE")  # reads go on, updates wait
            a.cli("relink", b.id)
            wait_until(snapshot_underway, 90, what="A sending the snapshot")
            a.stop(signal.SIGKILL)
            holder.rollback()
    assert link_row(standby, b.id).snapshot_due, "the snapshot had been sent in full before the kill"
    wait_until(lambda: active(standby) == 1, 30, what="the standby takes over")
    wait_until(lambda: epoch_of(a) > epoch_before and held_at(b, a.id, epoch_of(a)) == SNAPSHOT_TOTAL, 180,
               what="the snapshot's records at B")
    diff = converge(a, b, 60, ("company", "employee"))
    assert diff.clean, diff
    applies = applied(b.pg_name, a.id)
    assert in_order(applies) == []
    assert "Traceback" not in standby.log_text()


def test_fencing_a_daemon_cut_off_its_database_and_a_frozen_one(pair):
    a, standby, b, roles = pair

    # 1. A's sessions terminated and its role blocked: A fences itself, the standby takes over
    assert block_role(roles[0]) > 0
    wait_until(lambda: "fenced: this daemon lost the site's active lock" in a.log_text(), 30, what="A fenced")
    wait_until(lambda: active(a) == 0 and active(standby) == 1, 30, what="the standby active, A not")
    holds_for(lambda: active(a) + active(standby) == 1, 3, what="exactly one daemon active")
    b.put("employee", "after-fencing", {"name": "Sent after the lock moved"})
    wait_until(lambda: [r["id"] for r in standby.records("employee", origin=b.id)] == ["after-fencing"], 60,
               what="B's record applied by the new active daemon")
    assert standby.json("health")["active_daemon"] == label(standby)

    # 2. A may log in again: it stays a standby
    block_role(roles[0], blocked=False)
    wait_until(lambda: f"({label(standby)}); taking over when it stops" in a.log_text(), 30,
               what="A a standby again, naming the active daemon")

    # 3. the active daemon frozen (its sessions stay open, it answers nothing): A takes over once the server ends
    #    the frozen daemon's lock session; woken, the frozen daemon finds its lease gone and fences itself
    assert standby.proc is not None
    frozen_at = len(standby.log_text())
    standby.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: active(a) == 1, 60, what="A takes over from the frozen daemon")
        b.put("employee", "after-freeze", {"name": "Sent while the other daemon was frozen"})
        wait_until(lambda: "after-freeze" in {r["id"] for r in a.records("employee", origin=b.id)}, 60,
                   what="B's record applied by A")
    finally:
        standby.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: active(standby) == 0, 60, what="the woken daemon not active")
    # the gauge drops just before the line is logged: wait for the line, written after the freeze
    wait_until(lambda: "fenced: " in standby.log_text()[frozen_at:], 30, what="the woken daemon saying it is fenced")
    holds_for(lambda: active(a) + active(standby) == 1, 3, what="exactly one daemon active")
    assert a.json("health")["active_daemon"] == label(a)


def test_a_second_daemon_is_the_site_a_copy_of_its_database_and_state_dir_is_not(make_site, backend):
    """The copied-database guard: a second daemon (a copy of state_dir, the same database) runs the site; a test
    copy of the database with a copy of state_dir is guarded until `adopt --i-am-the-site`."""
    if backend != "postgresql":
        pytest.skip("the database's own identity is PostgreSQL's")
    a = make_site("alpha")  # its first start records the database it runs on in state_dir
    a.stop()
    assert a.pg_name is not None
    copy = f"{a.pg_name}_copy"
    copy_database(a.pg_name, copy)
    try:
        second = second_daemon(a)
        tester = second_daemon(a, "test-server")
        tester.cfg = {**tester.cfg, "database": {"url": a.cfg["database"]["url"].rsplit("/", 1)[0] + f"/{copy}"}}
        tester.write_config()
        assert "copy of this one's" not in second.cli("status").stdout
        assert "copy of this one's" in tester.cli("status").stdout
        tester.start()
        try:
            wait_until(lambda: "the database is a copy of this installation's" in tester.log_text(), 30,
                       what="the test copy guarded")
            wait_until(lambda: tester.metric("federationd_paused") == 1, 30, what="the test copy paused")
        finally:
            tester.stop()
        tester.cli("adopt", "--i-am-the-site")
        assert "copy of this one's" not in tester.cli("status").stdout
        assert "copy of this one's" not in a.cli("status").stdout
    finally:
        drop_database(copy)
