"""The sweep at the end of a snapshot tombstones exactly the records the snapshot left out: more of them than one
look-up chunk, in every category it covers, and schedules only inside the window it resent (an older schedule the
snapshot did not carry stays). In-process, through the stub transport."""

from __future__ import annotations

from pathlib import Path

from federationd.broker.delivery import Outcome
from tests.support.stub import StubNetwork

A, B = "site-a", "site-b"
LOST = range(0, 1300, 2)  # 650 employees: more than one 500-id chunk


def test_the_sweep_tombstones_exactly_what_the_snapshot_left_out(tmp_path: Path) -> None:
    net = StubNetwork(tmp_path)
    a = net.add_site(A, batch_records=200)
    b = net.add_site(B)
    net.link(A, B)
    for i in range(1300):
        a.put("employee", f"e-{i}", {"name": f"n{i}"})
    a.put("department", "d-gone", {"name": "old"})
    a.put("schedule", "s-old", {"start": "2026-01-10", "end": "2026-01-15"})  # before the window (2026-08-01)
    a.put("schedule", "s-gone", {"start": "2026-09-01", "end": "2026-10-01"})
    a.put("schedule", "s-kept", {"start": "2026-09-02", "end": "2026-09-03"})
    net.send(A, B)
    assert set(net.deliver_all(B)) == {Outcome.ACK}
    for i in LOST:
        a.delete("employee", f"e-{i}")
    a.delete("department", "d-gone")
    a.delete("schedule", "s-gone")
    net.send(A, B)
    assert net.take(B)  # lost: B still holds all of them
    net.request_snapshot(A, B)
    net.send(A, B)
    parts = net.take(B)
    assert len(parts) > 3
    assert net.deliver(B, parts[::-1]) == [Outcome.ACK] * len(parts)

    held = b.records_of(A, live_only=False)
    live = b.records_of(A)
    gone = {("employee", f"e-{i}") for i in LOST} | {("department", "d-gone"), ("schedule", "s-gone")}
    assert set(held) - set(live) == gone
    assert all(held[key][1] == "{}" for key in gone)
    assert ("schedule", "s-old") in live  # outside the resent window: the snapshot says nothing about it
    assert live == a.records_of(A)
    epoch = b.scalar("SELECT max(epoch) FROM records WHERE origin = :o", o=A)
    assert b.scalar("SELECT count(*) FROM records WHERE origin = :o AND deleted = :t AND epoch = :e",
                    o=A, t=True, e=epoch) == len(gone)
    assert f"snapshot complete: {len(gone)} record(s) no longer at the partner were deleted" in b.log_messages(A)
    net.close()
