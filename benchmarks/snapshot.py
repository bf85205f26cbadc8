"""Benchmark 5: a relink snapshot of 100,000 employees (FED_BENCH_SCALE scales it), streamed in parts.

The sender's records are written directly through the host API (`capture.put_many`), a few records of the sender's
origin are planted at the receiver only (left over, as after a restore), then `federationd relink`. Reported: the
peak RSS (VmHWM at the end) of the sender and the receiver daemon against their own RSS just before the snapshot and
against the size of the data shipped; and whether the receiver's sweep was right (every record there, the planted
ones tombstoned). Snapshot throughput is set against the bulk baseline of benchmark 1 and against federationd's own
bulk rate there (goal >= 0.8x), when that ran.

The clock starts as benchmark 1's does, at the request itself (`lifecycle.relink`, what the CLI verb calls, in
process: a CLI's interpreter start-up would add 0.5 to 2.7 s on this machine to the snapshot only), and stops when
the receiver has finished the snapshot (its `inbound_sweeps` row names the new epoch: every part applied, counts
checked, swept), polled every 50 ms on that one row; the records are counted once, after. Counting them at every
poll scanned the whole table (`deleted` is not indexed) 4 to 8 times a second from a third process on a two-core
machine: at 100,000 records that took more of the machine as the table grew and slowed both daemons.
"""

from __future__ import annotations

import contextlib
import json
import re
import time

from sqlalchemy import Engine, text

from benchmarks.common import (
    NO_AUTO_SEND,
    SNAPSHOT_EMPLOYEES,
    Context,
    Result,
    daemon_pid,
    employees,
    proc_memory_mb,
    ratio,
    scaled,
    timeout_for,
    wait_settled,
)
from federationd import lifecycle
from federationd.config import load_config
from federationd.outbox import capture
from federationd.runtime import Runtime
from federationd.store import reading
from tests.support.sites import link
from tests.support.waiting import wait_until

GHOSTS = 5
CHUNK = 1000
SNAPSHOT_RATE_GOAL = 0.8  # of federationd's own bulk end-to-end rate in the same run


def _growth_goal_mb(data_mb: float) -> float:
    """Bounded memory: the peak may grow by a few batches' worth, not by the snapshot's size (floor 48 MiB for
    small runs, where interpreter and driver warm-up dominate)."""
    return max(48.0, 0.25 * data_mb)


def _fill(rt: Runtime, count: int) -> int:
    """`count` employees through the host API, 1,000 per transaction; returns the bytes of JSON data written."""
    data_bytes = 0
    chunk: list[tuple[str, dict[str, object]]] = []
    for row in employees(count, seed=5):
        chunk.append(row)
        data_bytes += len(json.dumps(row[1], ensure_ascii=False).encode())
        if len(chunk) == CHUNK:
            with rt.engine.begin() as conn:
                capture.put_many(conn, "employee", chunk)
            chunk = []
    if chunk:
        with rt.engine.begin() as conn:
            capture.put_many(conn, "employee", chunk)
    return data_bytes


def _outcome(rt_s: Runtime, rt_r: Runtime, sender: str, receiver: str) -> tuple[int, int, int, str | None]:
    """At the receiver: live employees, planted records tombstoned, snapshots still in progress; at the sender:
    its link log line about the snapshot."""
    with reading(rt_r.engine) as conn:
        live = conn.execute(text("SELECT count(*) FROM records WHERE origin = :o AND category = 'employee' "
                                 "AND deleted = :f AND id LIKE 'e-%'"), {"o": sender, "f": False}).scalar_one()
        swept = conn.execute(text("SELECT count(*) FROM records WHERE origin = :o AND id LIKE 'ghost-%' "
                                  "AND deleted = :t"), {"o": sender, "t": True}).scalar_one()
        pending = conn.execute(text("SELECT count(*) FROM inbound_snapshots WHERE origin = :o"),
                               {"o": sender}).scalar_one()
    with reading(rt_s.engine) as conn:
        logged = conn.execute(text("SELECT message FROM link_log WHERE site = :s AND message LIKE "
                                   "'sent a full snapshot%' ORDER BY id DESC"), {"s": receiver}).scalars().first()
    return int(live), int(swept), int(pending), logged


def _finished_epoch(engine: Engine, origin: str) -> int:
    """The epoch of the newest snapshot from `origin` the receiver finished (0: none): one short row."""
    with reading(engine) as conn:
        epoch = conn.execute(text("SELECT finished_epoch FROM inbound_sweeps WHERE origin = :o"),
                             {"o": origin}).scalar()
    return int(epoch or 0)


def _done_after(rt_s: Runtime, rt_r: Runtime, sender: str, receiver: str, wall0: float) -> tuple[float, float]:
    """Seconds from the request until the sender logged the snapshot sent (every part confirmed) and until the
    receiver's transaction that swept began (its link-log time), -1 if not found."""
    found = []
    for rt, site, like in ((rt_s, receiver, "sent a full snapshot%"), (rt_r, sender, "snapshot complete%")):
        with reading(rt.engine) as conn:
            at = conn.execute(text("SELECT max(at) FROM link_log WHERE site = :s AND message LIKE :m"),
                              {"s": site, "m": like}).scalar()
        found.append(float(at) - wall0 if at is not None else -1.0)
    return found[0], found[1]


def run(ctx: Context, backend: str) -> list[Result]:
    count = scaled(SNAPSHOT_EMPLOYEES)
    with contextlib.ExitStack() as stack:
        sender = ctx.site(stack, "snap-s", backend, extra=NO_AUTO_SEND)
        receiver = ctx.site(stack, "snap-r", backend, extra=NO_AUTO_SEND)
        link(sender, receiver)
        rt_s = Runtime(load_config(sender.config_path))
        stack.callback(rt_s.dispose)
        rt_r = Runtime(load_config(receiver.config_path))
        stack.callback(rt_r.dispose)
        wait_settled(rt_s.engine, sender.id, rt_r.engine, receiver.id)

        started = time.perf_counter()
        data_bytes = _fill(rt_s, count)
        put_seconds = time.perf_counter() - started

        with rt_r.engine.begin() as conn:
            epoch = conn.execute(text("SELECT received_epoch FROM links WHERE site = :s"),
                                 {"s": sender.id}).scalar_one()
            conn.execute(text("INSERT INTO records (origin, category, id, epoch, version, deleted, data, updated_at) "
                              "VALUES (:o, 'employee', :id, :e, :v, :d, :data, :at)"),
                         [{"o": sender.id, "id": f"ghost-{i}", "e": epoch, "v": i + 1, "d": False,
                           "data": json.dumps({"name": f"Ghost {i}"}), "at": time.time()} for i in range(GHOSTS)])

        pid_s, pid_r = daemon_pid(sender), daemon_pid(receiver)
        before = {"sender": proc_memory_mb(pid_s), "receiver": proc_memory_mb(pid_r)}
        finished_before = _finished_epoch(rt_r.engine, sender.id)
        wall0, t0 = time.time(), time.monotonic()
        if lifecycle.relink(rt_s, receiver.id) is not None:
            raise AssertionError(f"the relink with {receiver.id} waits for a snapshot window")

        wait_until(lambda: _finished_epoch(rt_r.engine, sender.id) > finished_before, timeout_for(count), 0.05,
                   what="the snapshot finished (swept) at the receiver")
        seconds = time.monotonic() - t0
        sent_after, swept_after = _done_after(rt_s, rt_r, sender.id, receiver.id, wall0)
        after = {"sender": proc_memory_mb(pid_s), "receiver": proc_memory_mb(pid_r)}
        live_ids, ghosts_deleted, pending, logged = _outcome(rt_s, rt_r, sender.id, receiver.id)
    match = re.search(r"snapshot of (\d+) record\(s\) in (\d+) part", logged or "")
    parts = int(match.group(2)) if match else None
    sweep_ok = live_ids == count and ghosts_deleted == GHOSTS and pending == 0
    data_mb = data_bytes / 2**20
    results = []
    for role in ("sender", "receiver"):
        peak, start = after[role]["VmHWM"], before[role]["VmRSS"]
        growth = peak - start
        results.append(Result(
            "5 snapshot", backend, f"{role} peak RSS, {count:,}-record relink snapshot ({data_mb:.0f} MiB of data)",
            peak, start, "MiB", ratio(peak, start), "bounded: growth < max(48 MiB, 25% of data)",
            growth < _growth_goal_mb(data_mb), f"grew {growth:.0f} MiB = {growth / data_mb:.0%} of the data",
            details={"before_mb": before[role], "after_mb": after[role], "data_mb": data_mb}))
    bulk = ctx.shared.get(f"bulk_baseline_{backend}")
    fed_bulk = ctx.shared.get(f"bulk_federationd_{backend}")
    throughput = count / seconds
    results.append(Result(
        "5 snapshot", backend, f"sweep correct: {count:,} live, {GHOSTS} planted records tombstoned, in parts",
        throughput, bulk, "records/s", ratio(throughput, bulk), "all present, planted ones swept", sweep_ok,
        f"{seconds:.1f}s, {parts} parts (A sent all {sent_after:.1f}s, B swept {swept_after:.1f}s after the "
        f"request); baseline = benchmark 1's minimal pipeline" if bulk else f"{seconds:.1f}s, {parts} parts",
        details={"live": live_ids, "ghosts_deleted": ghosts_deleted, "snapshot_in_progress_rows": pending,
                 "parts": parts, "seconds": seconds, "put_many_seconds": put_seconds, "log": logged,
                 "send_done_after_seconds": sent_after, "sweep_done_after_seconds": swept_after}))
    if fed_bulk:
        rate = ratio(throughput, fed_bulk)
        results.append(Result(
            "5 snapshot", backend, f"{count:,}-record relink snapshot rate vs federationd's bulk rate (benchmark 1)",
            throughput, fed_bulk, "records/s", rate, f">= {SNAPSHOT_RATE_GOAL:g}x the bulk rate",
            rate is not None and rate >= SNAPSHOT_RATE_GOAL, "relink until all applied and swept at the receiver"))
    return results
