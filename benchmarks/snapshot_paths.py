"""A snapshot against a bulk send of the same records, in process: `PYTHONPATH=. .venv/bin/python -m
benchmarks.snapshot_paths [N] [ROUNDS]` (default 20,000 employees, 3 rounds).

Through the stub transport (tests/support/stub.py, SQLite, no broker, no daemon): site A holds N benchmark
employees; A's send of them as `changes` messages and A's send of a snapshot of them are timed
(`sender.send`), then B applies each message list into its own copy of the same empty database
(`Inbound.handle`, one transaction per message, the snapshot's bookkeeping and sweep included). Printed per round:
wall and CPU seconds (`time.process_time()`) of each half, and the snapshot's CPU against the bulk path's. What
benchmark 5 adds on top of this (the relink control, the partner's own snapshot, the broker) is not in it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import employees
from federationd.broker.delivery import Delivery, Outcome
from federationd.outbox import capture
from tests.support.stub import StubNetwork, StubSite

A, B = "site-a", "site-b"


def _timed(work: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def _apply(site: StubSite, messages: list[Delivery]) -> None:
    outcomes = [site.inbound.handle(message) for message in messages]
    if set(outcomes) != {Outcome.ACK}:
        raise AssertionError(f"not every message applied: {outcomes}")


def one_round(root: Path, count: int) -> dict[str, float]:
    net = StubNetwork(root)
    a, b = net.add_site(A), net.add_site(B)
    net.link(A, B)
    rows = list(employees(count, seed=5))
    with a.rt.engine.begin() as conn:
        for start in range(0, count, 1000):
            capture.put_many(conn, "employee", rows[start:start + 1000])
    bulk_b, snap_b = net.clone(b, root / "bulk-b.db"), net.clone(b, root / "snap-b.db")
    figures: dict[str, float] = {}
    figures["bulk_send_s"], figures["bulk_send_cpu"] = _timed(lambda: net.send(A, B))
    changes = net.take(B)
    net.request_snapshot(A, B)
    figures["snap_send_s"], figures["snap_send_cpu"] = _timed(lambda: net.send(A, B))
    parts = net.take(B)
    figures["bulk_apply_s"], figures["bulk_apply_cpu"] = _timed(lambda: _apply(bulk_b, changes))
    figures["snap_apply_s"], figures["snap_apply_cpu"] = _timed(lambda: _apply(snap_b, parts))
    if snap_b.records_of(A) != a.records_of(A) or bulk_b.records_of(A) != a.records_of(A):
        raise AssertionError("B does not hold what A holds")
    figures["messages"], figures["parts"] = len(changes), len(parts)
    net.close()
    for site in (bulk_b, snap_b):
        site.close()
    return figures


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    for n in range(rounds):
        with tempfile.TemporaryDirectory(prefix="fed-snapshot-paths-") as tmp:
            f = one_round(Path(tmp), count)
        print(f"round {n + 1}, {count:,} employees: send bulk {f['bulk_send_s']:.2f}s wall {f['bulk_send_cpu']:.2f}s "
              f"CPU ({f['messages']:.0f} messages), snapshot {f['snap_send_s']:.2f}s wall {f['snap_send_cpu']:.2f}s "
              f"CPU ({f['parts']:.0f} parts); apply bulk {f['bulk_apply_s']:.2f}s wall {f['bulk_apply_cpu']:.2f}s "
              f"CPU, snapshot {f['snap_apply_s']:.2f}s wall {f['snap_apply_cpu']:.2f}s CPU; snapshot CPU / bulk "
              f"CPU: send {f['snap_send_cpu'] / f['bulk_send_cpu']:.2f}x, apply "
              f"{f['snap_apply_cpu'] / f['bulk_apply_cpu']:.2f}x")


if __name__ == "__main__":
    main()
