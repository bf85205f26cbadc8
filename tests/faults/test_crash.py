"""Fault 1: `kill -9` of the sending daemon at random moments while changes and sends are in flight, several times
in a row, then of the receiving daemon in the middle of applying a large batch. Afterwards the partner holds
exactly the origin's records and versions (no record lost, stale or unexpected), and a batch is never half-applied.

(`federationd import` was not available when this was written: the writes are `records put`/`records delete` from
a background thread plus bursts through the host API, `capture.put_many`, in one transaction each.)
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import pytest
from sqlalchemy import select

from federationd.outbox import capture
from federationd.schema import bulk_lock, records
from federationd.schema import links as link_rows
from federationd.store import reading
from tests.faults.common import (
    CATEGORIES,
    FIGURES,
    IMPORT_KILLS,
    Writer,
    converge,
    count_records,
    kill9,
    link,
    link_row,
)
from tests.support.sites import FEDERATIOND, Site
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

KILLS = 5
# Sends every second or so even under constant churn, so that most kills land near a send.
BUSY_SCHEDULE = {"quiet_period": "500ms", "max_delay": "1s", "busy_retry": "1s"}
# The broker notices a killed client's TLS connection only when it next writes to it (a heartbeat): until then the
# deliveries that client held are not redelivered. A short heartbeat keeps the test short (docs/reliability.md).
FAST_HEARTBEAT = "4s"
ACTIVE = "now sends and consumes for site"  # the daemon's line once it holds the site's lock (stale marks cleared)


def _sending(site: Site, partner: str) -> bool:
    with site.engine() as engine, reading(engine) as conn:
        return conn.execute(select(link_rows.c.sending_since).where(link_rows.c.site == partner)).scalar() \
            is not None


@pytest.mark.timeout(600)  # five kills and restarts under a writer, then a convergence
def test_kill9_of_the_sender_at_random_moments_loses_nothing(make_site):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    a = make_site("alpha", schedule=BUSY_SCHEDULE, transport={"batch_records": 25, "heartbeat": FAST_HEARTBEAT})
    b = make_site("beta", transport={"heartbeat": FAST_HEARTBEAT})
    link(a, b)
    writer = Writer(a, seed)
    writer.start()
    moments = []
    try:
        for cycle in range(KILLS):
            if cycle == 2:  # this time the send in flight is a full snapshot under a new epoch
                a.cli("relink", b.id)
            if cycle % 2 == 0:  # in the middle of a send: publishing, awaiting confirms or marking sent
                wait_until(lambda: _sending(a, b.id), 30, interval=0.02, what=f"{a.id} sending (seed {seed})")
                time.sleep(rng.uniform(0, 0.05))
                moments.append("during a send")
            else:  # anywhere: during a host write, after a commit before the send, ...
                time.sleep(rng.uniform(0.2, 1.5))
                moments.append("at random")
            kill9(a)
            assert b.proc.poll() is None
            actives = a.log_text().count(ACTIVE)
            a.start()
            # the killed daemon's "sending" mark stays until the new one, becoming active, clears it: a wait for
            # "sending" must not be answered by that stale mark
            wait_until(lambda: a.log_text().count(ACTIVE) > actives, 60, what=f"{a.id} active again")  # noqa: B023
        wait_until(lambda: writer.writes >= 50 or writer.error, 60, what="at least 50 writes in all")
    finally:
        writer.stop()

    diff = converge(a, b, 120)
    assert diff.clean, f"seed {seed}, kills {moments}: {diff}"
    assert diff.compared > 40
    assert "Traceback" not in a.log_text() + b.log_text()


def _applied_ids(engine, origin: str) -> set[str]:
    with reading(engine) as conn:
        return set(conn.execute(select(records.c.id).where(records.c.origin == origin,
                                                           records.c.category == "employee")).scalars())


@pytest.mark.timeout(600)  # 6,000 records, two kills and restarts, then a convergence
def test_kill9_of_the_receiver_mid_apply_never_half_applies(make_site):
    batch, total = 25, 6000  # 240 batches: enough that the kill lands mid-way however fast the apply is
    a = make_site("alpha", transport={"batch_records": batch, "heartbeat": FAST_HEARTBEAT})
    b = make_site("beta", transport={"heartbeat": FAST_HEARTBEAT})
    link(a, b)
    wait_until(lambda: count_records(b, a.id, "company") == 1, 60, what="the initial snapshot at B")

    cancels = b.log_text().count(f"stopped consuming federation.inbound.{a.id}\n")
    b.cli("pause", a.id)  # A's batches wait in B's broker until B consumes them all in a row
    # the pause is in B's database at once; B's consumer lets go of A's queue at its next sync: wait for that,
    # else B may take the batches in as they arrive and be done before the first kill
    wait_until(lambda: b.log_text().count(f"stopped consuming federation.inbound.{a.id}\n") > cancels, 60,
               what="B's consumer off A's queue")
    rows = [(f"e{n:04d}", {"name": f"Employee {n}", "kana": "シャイン", "email": f"e{n}@a.example",
                           "departments": ["sales", "support"]}) for n in range(total)]
    with a.engine() as engine, engine.begin() as conn:  # one host transaction, 240 batches on the wire
        written = capture.put_many(conn, "employee", rows)
    last = written[-1].version
    wait_until(lambda: link_row(a, b.id).sent_seq >= last, 60, what="A's batches confirmed by B's broker")
    order = [record_id for record_id, _ in rows]  # versions follow the rows: batches are prefixes of this

    seen, kills = 0, []
    for cycle in range(2):
        if cycle == 0:
            b.cli("resume", a.id)
        else:
            b.start()
        with b.engine() as engine:
            # Kill as soon as one more batch has committed: B is then applying the next one.
            seen = wait_until(lambda: (n := len(_applied_ids(engine, a.id))) > seen and n, 60,  # noqa: B023
                              interval=0.005, what="B applying A's batches")
            kill9(b)
            applied = _applied_ids(engine, a.id)
        assert applied == set(order[:len(applied)]), "B applied records out of order"
        assert len(applied) % batch == 0, f"a batch was half-applied: {len(applied)} records"
        seen = len(applied)
        kills.append(seen)
        assert a.proc.poll() is None
        if seen == total:
            break
    assert kills[0] < total, f"the first kill came after B had applied everything ({kills})"

    b.start()
    diff = converge(a, b, 90, CATEGORIES)
    assert diff.clean, diff
    assert diff.compared >= total + 1
    assert count_records(b, a.id, "employee") == total


def test_import_killed_with_the_daemon_does_not_hold_sends_back(make_site, tmp_path):
    """A CSV import and the daemon are SIGKILLed together in the middle of the import (not a power cut: the OS
    page cache survives; a real power cut is not covered by this suite): nothing of the import is committed,
    and the lock the dead import held does not hold sends back. (Regression: found by this suite, fixed in
    72aa6c4; the lock used to stay until the next import, and every due send waited busy_retry forever.)"""
    a = make_site("alpha", schedule={"quiet_period": "1s", "max_delay": "5s", "busy_retry": "1s"})
    b = make_site("beta")
    link(a, b)
    csv = tmp_path / "employees.csv"
    csv.write_text("id,name,email\n" + "".join(f"i{n},Imported {n},i{n}@a.example\n" for n in range(60000)))
    importer = subprocess.Popen([str(FEDERATIOND), "-c", str(a.config_path), "import", "employee", str(csv)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with a.engine() as engine:
            wait_until(lambda: _locked(engine), 60, interval=0.01, what="the import holding the bulk lock")
            time.sleep(random.uniform(0, 0.2))  # somewhere inside the import's one transaction (~1 s or more)
            os.killpg(importer.pid, signal.SIGKILL)  # the import and the daemon die together
            FIGURES[IMPORT_KILLS] += 1
            kill9(a)
            assert _locked(engine), "the import finished before the power cut: no crash to test"
    finally:
        importer.wait(30)
    assert count_records(a, a.id, "employee") == 0, "a part of the import committed"
    a.start()
    a.put("employee", "after", {"name": "After the power cut"})
    # the dead import's lock row is still there (the proof that the stale-lock rule, not a missing lock, let
    # this send go), and the next change reaches B long before anything like busy_retry forever
    with a.engine() as engine:
        assert _locked(engine), "the dead import's lock row is gone: the stale-lock rule was not exercised"
    wait_until(lambda: count_records(b, a.id, "employee") == 1, 60, what="the next change at B")


def _locked(engine) -> bool:
    with reading(engine) as conn:
        return conn.execute(select(bulk_lock.c.name)).first() is not None
