"""The database rules behind the guarantees of docs/reliability.md, on SQLite and PostgreSQL, in-process (no broker):
versions commit in order under concurrent host transactions, the apply's SQL guard never goes back to an older
version, the bulk lock's stale-lock rules, and the weekly rolling job (called with an injected `now`)."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from federationd import wire
from federationd.errors import RejectedChange
from federationd.handlers import changes as apply
from federationd.outbox import capture, importer, rolling
from federationd.outbox.batches import next_batch
from federationd.schema import bulk_lock, outbox, records
from federationd.store import ensure_site_state, make_engine, migrate, reading

pytestmark = pytest.mark.integration

HOME, PARTNER = "site-home", "site-partner"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated, initialised site database (what `federationd init` leaves)."""
    engine = make_engine(database_url)
    migrate(engine)
    with engine.begin() as conn:
        ensure_site_state(conn, HOME)
    try:
        yield engine
    finally:
        engine.dispose()


# -- versions commit in order ---------------------------------------------------------------------------------
WRITERS, WRITES = 16, 25


def test_concurrent_host_transactions_never_let_the_watermark_skip_a_change(engine: Engine,
                                                                           database_url: str) -> None:
    """16 host threads write through `capture.put`, each holding its transaction open a random while after the
    write (so commits interleave), while a sender reads pending changes the way the send does (`next_batch` above
    the watermark) and moves its watermark to the last version it read. Every committed version must be read: a
    version that commits after a higher one was read would be skipped by the watermark for good."""
    rng = random.Random()
    start = threading.Barrier(WRITERS + 1)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            start.wait()
            for k in range(WRITES):
                with engine.begin() as conn:
                    capture.put(conn, "employee", f"w{n}-{k}", {"name": f"writer {n} write {k}"})
                    time.sleep(rng.uniform(0, 0.01))  # the host does more work in the same transaction
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,), daemon=True) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    seen: list[int] = []
    watermark, reads = 0, 0
    sender = make_engine(database_url)  # the sender's own connection pool, as the daemon has its own
    start.wait()
    try:
        while True:
            done = not any(thread.is_alive() for thread in threads)  # checked before the read: the last drains
            with reading(sender) as conn:
                batch = next_batch(conn, HOME, watermark, 50, 1 << 20)
            reads += 1
            if batch is not None:
                seen.extend(batch.versions)
                watermark = batch.last
            elif done:
                break
    finally:
        sender.dispose()
    assert not errors, errors
    with reading(engine) as conn:
        committed = sorted(conn.execute(select(records.c.version).where(records.c.origin == HOME)).scalars())
    assert len(committed) == WRITERS * WRITES
    skipped = sorted(set(committed) - set(seen))
    assert not skipped, f"{len(skipped)} committed version(s) below the watermark never read: {skipped[:10]}"
    assert seen == sorted(seen) and reads > WRITERS  # read in version order, while the writers ran


# -- the apply's SQL guard ------------------------------------------------------------------------------------
def _changes(version: int, name: str, epoch: int = 5, deleted: bool = False) -> wire.ChangesBody:
    body = wire.changes_body(PARTNER, epoch, [{"category": "employee", "id": "e-1", "origin": PARTNER,
                                               "version": version, "deleted": deleted, "data": {"name": name}}])
    decoded = wire.decode("changes", None, json.dumps(body).encode())
    assert isinstance(decoded, wire.ChangesBody)
    return decoded


def _held(engine: Engine) -> tuple[int, int, bool, dict[str, Any]]:
    with reading(engine) as conn:
        row = conn.execute(select(records.c.epoch, records.c.version, records.c.deleted, records.c.data).where(
            records.c.origin == PARTNER, records.c.id == "e-1")).one()
    return row.epoch, row.version, row.deleted, json.loads(row.data)


def test_an_older_change_after_a_newer_one_is_skipped(engine: Engine) -> None:
    with engine.begin() as conn:
        first = apply.apply_changes(conn, _changes(20, "newer"), time.time())
    with engine.begin() as conn:
        second = apply.apply_changes(conn, _changes(10, "older"), time.time())
    assert (sum(first.applied.values()), sum(second.applied.values()), second.skipped) == (1, 0, 1)
    assert _held(engine) == (5, 20, False, {"name": "newer"})


def test_the_sql_guard_refuses_an_older_version_the_plan_let_through(engine: Engine,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The apply decides from what it read, then writes with a WHERE guard that repeats the decision in SQL. Here
    the read is made blind (as if a concurrent apply committed the newer version after our read): only the SQL
    guard stands between the older change and the row."""
    with engine.begin() as conn:
        apply.apply_changes(conn, _changes(20, "newer"), time.time())
    with engine.begin() as conn:  # a tombstone of the same epoch, newer still
        apply.apply_changes(conn, _changes(30, "", deleted=True), time.time())
    monkeypatch.setattr(apply, "_held", lambda *_args: {})
    for version, epoch in ((10, 5), (30, 5), (29, 5), (99, 4)):  # older, equal, older, an older epoch
        with engine.begin() as conn:
            apply.apply_changes(conn, _changes(version, f"stale {version}", epoch=epoch), time.time())
        assert _held(engine) == (5, 30, True, {}), (version, epoch)
    with engine.begin() as conn:  # and a newer epoch does win (the guard is not simply "never update")
        apply.apply_changes(conn, _changes(1, "next epoch", epoch=6), time.time())
    assert _held(engine) == (6, 1, False, {"name": "next epoch"})


# -- the bulk lock's stale-lock rules -----------------------------------------------------------------------------
def _lock(engine: Engine, holder: str, acquired_at: float) -> None:
    with engine.begin() as conn:
        conn.execute(bulk_lock.delete())
        conn.execute(insert(bulk_lock).values(name=importer.LOCK_NAME, holder=holder, acquired_at=acquired_at))


def _held_at(engine: Engine, now: float) -> bool:
    with reading(engine) as conn:
        return importer.lock_held(conn, now)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(30)
    return child.pid


def test_stale_lock_rules(engine: Engine) -> None:
    now, here, stale = time.time(), socket.gethostname(), importer.STALE_LOCK_SECONDS
    assert not _held_at(engine, now)  # no lock at all
    cases = [  # (holder, age in seconds, held?)
        (f"{os.getpid()}@{here} import employee x.csv", 0, True),  # a live job on this host
        (f"{os.getpid()}@{here} import employee x.csv", stale - 60, True),  # ... even a long one
        (f"{os.getpid()}@{here} import employee x.csv", stale + 60, False),  # but not past an hour
        (f"{_dead_pid()}@{here} import employee x.csv", 0, False),  # its process is gone: freed at once
        (f"{os.getpid()}@another-host.example import employee x.csv", 0, True),  # elsewhere: cannot check
        (f"{os.getpid()}@another-host.example import employee x.csv", stale - 60, True),
        (f"{os.getpid()}@another-host.example import employee x.csv", stale + 60, False),  # stale after an hour
        ("a holder that names no process", 0, True),
        ("a holder that names no process", stale + 1, False),
    ]
    got = []
    for holder, age, _expected in cases:
        _lock(engine, holder, now - age)
        got.append(_held_at(engine, now))
    assert got == [expected for _h, _a, expected in cases], list(zip(cases, got, strict=True))


def test_a_dead_jobs_lock_is_taken_over_and_a_live_one_refuses(engine: Engine) -> None:
    now, here = time.time(), socket.gethostname()
    _lock(engine, f"{_dead_pid()}@{here} import employee old.csv", now)
    with importer.held(engine, f"{os.getpid()}@{here} import employee new.csv", now):
        assert _held_at(engine, now)
        with pytest.raises(RejectedChange) as refused, importer.held(
                engine, f"{os.getpid()}@{here} import department other.csv", now):
            pass
        assert refused.value.reason == "bulk_locked" and "new.csv" in str(refused.value)
    assert not _held_at(engine, now)  # released when the job ends


# -- the weekly rolling job ----------------------------------------------------------------------------------------
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC).timestamp()  # a Monday
DAY = 86400.0


def _schedule(engine: Engine, record_id: str) -> tuple[int, list[dict[str, str]]]:
    with reading(engine) as conn:
        row = conn.execute(select(records.c.version, records.c.data).where(
            records.c.origin == HOME, records.c.category == "schedule", records.c.id == record_id)).one()
    return row.version, json.loads(row.data).get("occurrences", [])


def _outbox_rows(engine: Engine) -> int:
    with reading(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(outbox)).scalar_one())


def test_rolling_job_moves_the_window_weekly_and_only_for_recurring_schedules(engine: Engine) -> None:
    weekly = {"title": "Weekly", "start": "2026-01-05T10:00:00+00:00", "end": "2026-01-05T11:00:00+00:00",
              "recurrence": "FREQ=WEEKLY"}
    once = {"title": "Once", "start": "2026-01-06T10:00:00+00:00", "end": "2026-01-06T11:00:00+00:00"}
    with engine.begin() as conn:
        capture.put(conn, "schedule", "weekly", weekly, now=T0)
        capture.put(conn, "schedule", "once", once, now=T0)
    version, window = _schedule(engine, "weekly")
    horizon = datetime.fromtimestamp(T0, UTC).date() + timedelta(days=370)
    assert window and max(o["start"] for o in window)[:10] <= horizon.isoformat()
    once_version = _schedule(engine, "once")[0]

    with engine.begin() as conn:
        assert rolling.due(conn, T0)  # never rolled yet
        assert rolling.roll(conn, HOME, T0) == 0  # same day: nothing moved, nothing written
        assert not rolling.due(conn, T0 + 6 * DAY)  # within the week after a roll
        assert rolling.due(conn, T0 + 7 * DAY)
    rows_before = _outbox_rows(engine)
    with engine.begin() as conn:
        assert rolling.roll(conn, HOME, T0 + 7 * DAY) == 1  # one week on: the weekly schedule moved
        assert not rolling.due(conn, T0 + 8 * DAY)
    new_version, new_window = _schedule(engine, "weekly")
    assert new_version > version and _outbox_rows(engine) == rows_before + 1  # a new version, to be sent
    assert max(o["start"] for o in new_window) > max(o["start"] for o in window)
    assert max(o["start"] for o in new_window)[:10] <= (horizon + timedelta(days=7)).isoformat()
    assert _schedule(engine, "once")[0] == once_version  # a one-off schedule is never rewritten
