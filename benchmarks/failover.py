"""Benchmark 7: the daemon pair's failover (PostgreSQL only): two daemons of site A on one database (a copy of the
state_dir each, as on two hosts), a writer streaming changes into A, partner B receiving them.

Each failover is a `kill -9` of the active daemon while the stream flows (the killed one then comes back as the
standby, and the next failover kills the other). Reported, per failover and as the median:
- the failover time: kill -9 to the standby acting (its log's `active:` line), and to the end of its first send of
  records (its log's `sent ... record(s)` line, written when the send is confirmed);
- the throughput across the failover: records applied at B in the FED_BENCH_FAILOVER_WINDOW seconds (default 20)
  from the kill, as a ratio to the steady rate measured in the same run just before the kill.
FED_BENCH_FAILOVERS (default 2) sets how many failovers.
"""

from __future__ import annotations

import contextlib
import re
import signal
import statistics
import threading
import time
from datetime import datetime

from benchmarks.common import Context, Result, count_records, env_float, wait_settled
from federationd.active import LEASE_SECONDS, LOCK_CHECK_SECONDS, LOCK_IDLE_SECONDS, TAKEOVER_GRACE_SECONDS
from federationd.outbox import capture
from tests.support.sites import Site, link, second_daemon
from tests.support.waiting import wait_until

STEADY_SECONDS = 15.0
CHUNK = 100  # records per host transaction of the writer
FAST = {"schedule": {"quiet_period": "300ms", "max_delay": "1s", "busy_retry": "1s"},
        "transport": {"heartbeat": "4s", "batch_records": 500}}
_SENT = re.compile(r"^(\S+) INFO federationd\.sendloop: (?:site=\S+ )?sent \S+ (\d+) record")
_ACTIVE = re.compile(r"^(\S+) INFO federationd\.daemon: (?:site=\S+ )?active: this daemon")


class Stream(threading.Thread):
    """Writes CHUNK employees per transaction into the site's database until stopped (the host application)."""

    def __init__(self, site: Site, pause: float = 0.02) -> None:
        super().__init__(name="stream", daemon=True)
        self.site, self.pause = site, pause
        self.halt = threading.Event()
        self.written = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.site.engine() as engine:
                while not self.halt.is_set():
                    rows = [(f"s-{self.written + i:07d}", {"name": f"Streamed {self.written + i}"})
                            for i in range(CHUNK)]
                    with engine.begin() as conn:
                        capture.put_many(conn, "employee", rows)
                    self.written += CHUNK
                    self.halt.wait(self.pause)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def stop(self) -> None:
        self.halt.set()
        self.join(60)
        if self.error is not None:
            raise RuntimeError(f"the stream writer failed: {self.error!r}")


def _first_after(site: Site, pattern: re.Pattern[str], moment: float, records: bool = False) -> float | None:
    """Unix time of the first line of `site`'s log matching `pattern` after `moment` (with `records`: a send that
    carried records)."""
    for line in site.log_text().splitlines():
        match = pattern.match(line)
        if match and (not records or int(match.group(2)) > 0):
            at = datetime.fromisoformat(match.group(1).replace("Z", "+00:00")).timestamp()
            if at > moment:
                return at
    return None


def _rate(samples: list[tuple[float, int]], start: float, end: float) -> float:
    inside = [(t, n) for t, n in samples if start <= t <= end]
    if len(inside) < 2:
        return 0.0
    (t0, n0), (t1, n1) = inside[0], inside[-1]
    return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0


def run(ctx: Context, backend: str) -> list[Result]:
    if backend != "postgresql":
        return []
    failovers = int(env_float("FED_BENCH_FAILOVERS", 2))
    window = env_float("FED_BENCH_FAILOVER_WINDOW", 20.0)
    with contextlib.ExitStack() as stack:
        a = ctx.site(stack, "pair", backend, extra=FAST)
        b = ctx.site(stack, "partner", backend, extra=FAST)
        link(a, b)
        with a.engine() as ea, b.engine() as eb:
            wait_settled(ea, a.id, eb, b.id)
        other = second_daemon(a)
        stack.callback(other.stop)
        other.start()
        wait_until(lambda: "standby: another federationd is active" in other.log_text(), 60, what="the standby")
        stream = Stream(a)
        stream.start()
        samples: list[tuple[float, int]] = []
        figures: list[dict[str, float | None]] = []
        active, standby = a, other
        try:
            with b.engine() as eb:
                def sample() -> int:
                    count = count_records(eb, a.id)
                    samples.append((time.time(), count))
                    return count

                for _ in range(failovers):
                    end = time.monotonic() + STEADY_SECONDS
                    while time.monotonic() < end:
                        sample()
                        time.sleep(0.2)
                    killed_at = time.time()
                    before = sample()
                    active.stop(signal.SIGKILL)
                    wait_until(lambda: sample() > before, 120, 0.1,  # noqa: B023
                               what="the stream applied at B again after the failover")
                    applied_at = samples[-1][0]
                    end = time.monotonic() + max(0.0, window - (time.time() - killed_at))
                    while time.monotonic() < end:
                        sample()
                        time.sleep(0.2)
                    sent_at = _first_after(standby, _SENT, killed_at, records=True)
                    acting_at = _first_after(standby, _ACTIVE, killed_at)
                    steady = _rate(samples, killed_at - STEADY_SECONDS, killed_at)
                    across = _rate(samples, killed_at, killed_at + window)
                    figures.append({"send_s": None if sent_at is None else sent_at - killed_at,
                                    "acting_s": None if acting_at is None else acting_at - killed_at,
                                    "applied_s": applied_at - killed_at, "steady": steady, "across": across})
                    active.start()  # back as the standby
                    wait_until(lambda: "standby: another federationd is active" in active.log_text(), 60,  # noqa: B023
                               what="the killed daemon back as the standby")
                    active, standby = standby, active
        finally:
            stream.stop()
    return _results(backend, figures, window)


def _results(backend: str, figures: list[dict[str, float | None]], window: float) -> list[Result]:
    sends = [f["send_s"] for f in figures if f["send_s"] is not None]
    acting = [f["acting_s"] for f in figures if f["acting_s"] is not None]
    steady = statistics.median(float(f["steady"] or 0) for f in figures)
    across = statistics.median(float(f["across"] or 0) for f in figures)
    ratios = [float(f["across"] or 0) / float(f["steady"]) for f in figures if f["steady"]]
    bound = LOCK_CHECK_SECONDS + TAKEOVER_GRACE_SECONDS
    details = {"failovers": figures, "lock_check_s": LOCK_CHECK_SECONDS, "grace_s": TAKEOVER_GRACE_SECONDS,
               "lease_s": LEASE_SECONDS, "idle_session_timeout_s": LOCK_IDLE_SECONDS, "window_s": window}
    return [
        Result("7 pair failover", backend, "kill -9 to the standby acting (median)",
               statistics.median(acting) if acting else None, None, "s",
               note=f"{len(figures)} failovers; stated bound: lock check {LOCK_CHECK_SECONDS:g}s + grace "
                    f"{TAKEOVER_GRACE_SECONDS:g}s = {bound:g}s, plus start-up", details=details),
        Result("7 pair failover", backend, "kill -9 to the standby's first send confirmed (median)",
               statistics.median(sends) if sends else None, None, "s",
               note="the end of the first send carrying records (it resends from the last confirmed batch)"),
        Result("7 pair failover", backend, f"records/s at B across the failover ({window:g}s from the kill)",
               across, steady, "rec/s", ratio=statistics.median(ratios) if ratios else None,
               note="baseline: the steady rate just before the kill; ratio: median of the failovers' ratios"),
    ]
