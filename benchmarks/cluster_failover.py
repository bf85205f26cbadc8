"""A broker node stop during a steady stream: how long sends stall, and the throughput across the failover.

Two sites on a private three-node cluster (tests/support/broker.py TestCluster; quorum queues on every node), A
streaming new employees to B at a steady offered rate (host-API writes of `BURST` records every `TICK_SECONDS`;
`max_delay: 1s`, so A sends about once a second). After a steady phase the node that leads B's inbound queue is
stopped, the stream goes on for a while, the node is started again and rejoins, and everything A wrote must be at
B (lost = 0). This is done twice on the same cluster: a clean stop (`rabbitmqctl stop`), then a crash (SIGKILL).

Figures (B's count of A's employees sampled every `SAMPLE_SECONDS`):

* failover: the longest time without a new record at B from the stop on (seconds until sends resume), against
  the longest such gap of the steady phase (the baseline: the send cadence);
* throughput across the failover: records applied at B in the window after the stop, per second, as a
  ratio to the steady rate.

The cluster boots for this benchmark alone (about a minute on a quiet machine). FED_BENCH_FAILOVER_STEADY and
FED_BENCH_FAILOVER_AFTER (seconds) change the two windows.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time

from benchmarks.common import Context, Result, count_records, employees, env_float, wait_settled
from federationd.broker.topology import inbound_queue
from federationd.outbox import capture
from tests.support.broker import TestCluster
from tests.support.sites import Site, link
from tests.support.waiting import wait_until

BURST = 20
TICK_SECONDS = 0.1
SAMPLE_SECONDS = 0.2
STREAM = {"schedule": {"quiet_period": "1s", "max_delay": "1s", "busy_retry": "1s"}}


class _Stream(threading.Thread):
    """Writes `BURST` new employees at A every `TICK_SECONDS` until stopped (one transaction per burst)."""

    def __init__(self, site: Site, offset: int = 0) -> None:
        super().__init__(name="stream", daemon=True)
        self.site = site
        self.halt = threading.Event()
        self.written = offset  # employees e-000000.. below the offset were written by an earlier stream
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.site.engine() as engine:
                while not self.halt.wait(TICK_SECONDS):
                    rows = list(employees(BURST, start=self.written))
                    with engine.begin() as conn:
                        capture.put_many(conn, "employee", rows)
                    self.written += BURST
        except Exception as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def stop(self) -> int:
        self.halt.set()
        self.join(60)
        if self.error is not None:
            raise RuntimeError(f"the stream failed: {self.error!r}") from self.error
        return self.written


class _Sampler(threading.Thread):
    """(monotonic time, B's count of A's employees) every `SAMPLE_SECONDS`."""

    def __init__(self, site: Site, origin: str) -> None:
        super().__init__(name="sampler", daemon=True)
        self.site, self.origin = site, origin
        self.halt = threading.Event()
        self.samples: list[tuple[float, int]] = []

    def run(self) -> None:
        with self.site.engine() as engine:
            while not self.halt.wait(SAMPLE_SECONDS):
                self.samples.append((time.monotonic(), count_records(engine, self.origin)))

    def stop(self) -> list[tuple[float, int]]:
        self.halt.set()
        self.join(30)
        return self.samples


def longest_stall(samples: list[tuple[float, int]], start: float, end: float) -> float:
    """The longest time within [start, end] between two samples at which the count grew (or the window's edges)."""
    moments = [start] + [t for (_, before), (t, n) in itertools.pairwise(samples)
                         if start < t <= end and n > before] + [end]
    return max(b - a for a, b in itertools.pairwise(moments))


def arrived(samples: list[tuple[float, int]], start: float, end: float) -> int:
    inside = [n for t, n in samples if start <= t <= end]
    return inside[-1] - inside[0] if len(inside) > 1 else 0


def run(ctx: Context, backend: str) -> list[Result]:
    cluster = TestCluster(ctx.root / "cluster", ctx.broker.pki, size=3)
    with contextlib.ExitStack() as stack:
        booted = time.perf_counter()
        cluster.start()
        stack.callback(cluster.stop)
        boot_seconds = time.perf_counter() - booted
        sites = []
        for name in ("fa", "fb"):
            site_id = ctx.site_id(name)
            site = Site(site_id, ctx.root / site_id, cluster, backend, extra=dict(STREAM))  # type: ignore[arg-type]
            stack.callback(site.close)
            site.cli("init")
            site.start()
            sites.append(site)
        a, b = sites
        link(a, b)
        with a.engine() as engine_a, b.engine() as engine_b:
            wait_settled(engine_a, a.id, engine_b, b.id)
        results, written = [], 0
        for mode in ("stop", "kill"):
            got, written = _failover(cluster, a, b, backend, mode, written)
            for result in got:
                result.details["boot_seconds"] = round(boot_seconds, 1)
            results.extend(got)
    return results


def _failover(cluster: TestCluster, a: Site, b: Site, backend: str, mode: str,
              offset: int) -> tuple[list[Result], int]:
    """One failover of the node leading B's inbound queue: `stop` (rabbitmqctl stop) or `kill` (SIGKILL, a
    crash); the stream writes new employees from number `offset` on. Returns the results and the new offset."""
    steady_seconds = env_float("FED_BENCH_FAILOVER_STEADY", 30.0)
    after_seconds = env_float("FED_BENCH_FAILOVER_AFTER", 30.0)
    queue = inbound_queue(a.id)
    stream, sampler = _Stream(a, offset), _Sampler(b, a.id)
    stream.start()
    sampler.start()
    time.sleep(5)  # the stream reaches its cadence
    steady_start = time.monotonic()
    time.sleep(steady_seconds)
    leader = cluster.queue_leader(b.id, queue)
    stopped_at = time.monotonic()
    leader.stop() if mode == "stop" else leader.kill()
    stop_seconds = time.monotonic() - stopped_at
    time.sleep(max(0.0, after_seconds - (time.monotonic() - stopped_at)))
    after_end = time.monotonic()
    written = stream.stop()
    new_leader = cluster.queue_leader(b.id, queue).node
    leader.start()
    cluster.wait_running(cluster.nodes)
    with b.engine() as engine_b:
        wait_until(lambda: count_records(engine_b, a.id) >= written, 300, 0.5,
                   what=f"all {written} streamed employees at B")
        final = count_records(engine_b, a.id)
    samples = sampler.stop()

    steady_rate = arrived(samples, steady_start, stopped_at) / steady_seconds
    across_rate = arrived(samples, stopped_at, after_end) / (after_end - stopped_at)
    steady_gap = longest_stall(samples, steady_start, stopped_at)
    failover = longest_stall(samples, stopped_at, after_end)
    how = "stop (rabbitmqctl stop)" if mode == "stop" else "crash (SIGKILL)"
    details = {"nodes": 3, "mode": mode, "stopped": leader.node, "new_leader": new_leader,
               "stop_command_seconds": round(stop_seconds, 1), "written": written - offset,
               "lost": written - final, "offered_per_second": BURST / TICK_SECONDS,
               "steady_seconds": steady_seconds, "after_seconds": after_seconds}
    note = f"leader node {mode}; lost {written - final} of {written - offset}"
    return [
        Result("failover", backend, f"broker node {how}: seconds until sends resume", failover, steady_gap, "s",
               failover / steady_gap if steady_gap else None, "sends resume", written == final, note, details),
        Result("failover", backend, f"records/s across the {mode} (+{after_seconds:.0f} s)", across_rate,
               steady_rate, "records/s", across_rate / steady_rate if steady_rate else None, "", None,
               f"steady {steady_rate:.0f}/s of {BURST / TICK_SECONDS:.0f}/s offered", details),
    ], written
