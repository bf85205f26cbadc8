"""Profile the hot paths in process with pyinstrument: `PYTHONPATH=. .venv/bin/python -m benchmarks.profile`.

* send: `federationd.outbox.sender.send` of N pending employees from A to B (real broker, TLS, confirms);
* apply: `federationd.handlers.dispatch.Inbound.handle` of those messages, fetched from B's inbound queue
  (both on SQLite, and again on PostgreSQL when reachable: FED_BENCH_BACKENDS as for the benchmarks);
* capture: `capture.put` inside a host transaction (benchmark 3's federationd variant);
* tick: the daemon's idle main-loop work (`Daemon._schedule` + the consumer's `_consumed_partners`) with 200 links.

The daemons of A and B are stopped while profiling, so only the profiled code runs. Reports are written to
benchmarks/results/profile-<time>-<path>.txt. pyinstrument is a dev tool, not a dependency of federationd:
`.venv/bin/pip install pyinstrument`.

FED_BENCH_PROFILE_RECORDS (default 10000) sets N; FED_BENCH_PROFILE_ONLY (default all) a comma-separated subset.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from benchmarks.__main__ import RESULTS, console, session
from benchmarks.common import NO_AUTO_SEND, Context, count_records, employees, wait_settled
from federationd import links
from federationd.broker.connection import connect
from federationd.broker.delivery import Delivery, Outcome
from federationd.broker.topology import inbound_queue
from federationd.config import load_config
from federationd.daemon import Daemon
from federationd.handlers.dispatch import Inbound
from federationd.outbox import capture, sender
from federationd.runtime import Runtime
from tests.support.pg import pg_reachable
from tests.support.sites import link

STAMP = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


@contextlib.contextmanager
def profiled(name: str, summary: dict[str, Any]) -> Iterator[None]:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    started, cpu = time.perf_counter(), time.process_time()
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"profile-{STAMP}-{name}.txt"
        out.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        summary[name] = {"seconds": seconds, "cpu_seconds": cpu, "report": str(out)}
        console.log(f"profile {name}: {seconds:.2f}s, {cpu:.2f}s CPU (profiler included) -> {out}")


def _fill(rt: Runtime, count: int) -> None:
    rows = list(employees(count, seed=9))
    for start in range(0, count, 1000):
        with rt.engine.begin() as conn:
            capture.put_many(conn, "employee", rows[start:start + 1000])


def send_and_apply(ctx: Context, count: int, summary: dict[str, Any], backend: str) -> None:
    send, apply = ("send", "apply") if backend == "sqlite" else (f"send-{backend}", f"apply-{backend}")
    with contextlib.ExitStack() as stack:
        a = ctx.site(stack, "prof-a", backend, extra=NO_AUTO_SEND)
        b = ctx.site(stack, "prof-b", backend, extra=NO_AUTO_SEND)
        link(a, b)
        rt_a = Runtime(load_config(a.config_path))
        stack.callback(rt_a.dispose)
        rt_b = Runtime(load_config(b.config_path))
        stack.callback(rt_b.dispose)
        wait_settled(rt_a.engine, a.id, rt_b.engine, b.id)
        a.stop()
        b.stop()
        _fill(rt_a, count)
        with profiled(send, summary):
            report = sender.send(rt_a, b.id)
        summary[send]["records_per_second"] = count / summary[send]["seconds"]
        summary[send]["cpu_us_per_record"] = summary[send]["cpu_seconds"] / count * 1e6
        summary[send]["messages"] = report.messages
        transport = rt_b.config.transport
        connection = connect(rt_b.own, rt_b.tls, heartbeat=transport.heartbeat, timeout=transport.connect_timeout,
                             name="profile", site=b.id)
        stack.callback(connection.close)
        channel = connection.channel()
        inbound = Inbound(rt_b)
        applied = 0
        with profiled(apply, summary):
            while True:
                method, properties, body = channel.basic_get(inbound_queue(a.id))
                if method is None:
                    break
                outcome = inbound.handle(Delivery(a.id, method.routing_key, properties.type,
                                                  properties.content_encoding, properties.user_id, body))
                if outcome is not Outcome.ACK:
                    raise AssertionError(f"apply returned {outcome}")
                channel.basic_ack(method.delivery_tag)
                applied += 1
        got = count_records(rt_b.engine, a.id)
        if got != count:
            raise AssertionError(f"B holds {got} of A's employees, expected {count}")
        summary[apply]["records_per_second"] = count / summary[apply]["seconds"]
        summary[apply]["cpu_us_per_record"] = summary[apply]["cpu_seconds"] / count * 1e6
        summary[apply]["messages"] = applied


def capture_put(ctx: Context, summary: dict[str, Any], iterations: int = 2000) -> None:
    rows = list(employees(1000, seed=11))
    with contextlib.ExitStack() as stack:
        site = ctx.site(stack, "prof-capture", "sqlite", start=False)
        rt = Runtime(load_config(site.config_path))
        stack.callback(rt.dispose)
        with rt.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE host_employees (id VARCHAR(255) PRIMARY KEY, data TEXT NOT NULL)")
            conn.execute(text("INSERT INTO host_employees VALUES (:id, :data)"),
                         [{"id": rid, "data": json.dumps(data)} for rid, data in rows])
            capture.put_many(conn, "employee", rows)
        with profiled("capture", summary):
            for step in range(iterations):
                record_id, data = rows[step % len(rows)]
                changed = {**data, "phone": f"+81-3-0000-{step:04d}"}
                with rt.engine.begin() as conn:
                    conn.execute(text("UPDATE host_employees SET data = :d WHERE id = :id"),
                                 {"d": json.dumps(changed), "id": record_id})
                    capture.put(conn, "employee", record_id, changed)
        summary["capture"]["ms_per_transaction"] = summary["capture"]["seconds"] / iterations * 1e3


class _NoPool:
    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        raise AssertionError("nothing should be due while idle")


def idle_tick(ctx: Context, summary: dict[str, Any], partners: int = 200, ticks: int = 240) -> None:
    """The main loop's work per 250 ms tick, and the consumer's per-second resync, with `partners` idle links."""
    with contextlib.ExitStack() as stack:
        site = ctx.site(stack, "prof-hub", "sqlite", start=False)
        daemon = Daemon(site.config_path, load_config(site.config_path))
        stack.callback(daemon.rt.dispose)
        now = time.time()
        with daemon.rt.engine.begin() as conn:
            seq = conn.execute(text("SELECT next_seq FROM site_state")).scalar_one()
            for i in range(partners):
                links.create(conn, now, site=f"p{i:03d}", state=links.LINKED, role=links.REQUESTER, company="P",
                             name="P", public_url="amqps://localhost:5671/p", remote_user="u", remote_password="pw",
                             sent_seq=seq, visit_sent="null")
        daemon._sends._pool = _NoPool()  # type: ignore[assignment]
        with profiled("tick", summary):
            for tick in range(ticks):
                daemon._tick()
                if tick % 4 == 0:  # the consumer resyncs once a second
                    daemon._consumed_partners()
        summary["tick"]["ms_per_tick"] = summary["tick"]["seconds"] / ticks * 1e3
        summary["tick"]["cpu_share_at_4_ticks_per_s"] = summary["tick"]["seconds"] / (ticks / 4)


def main() -> int:
    only = {n.strip() for n in os.environ.get("FED_BENCH_PROFILE_ONLY", "").split(",") if n.strip()}
    count = int(os.environ.get("FED_BENCH_PROFILE_RECORDS", "10000"))
    summary: dict[str, Any] = {"records": count}
    with session(os.environ.get("FED_BENCH_KEEP") == "1") as ctx:
        for backend in ctx.backends:
            if backend == "postgresql" and not pg_reachable():
                console.log("PostgreSQL not reachable: send/apply profiled on SQLite only")
                continue
            if not only or only & {"send", "apply"}:
                send_and_apply(ctx, count, summary, backend)
        if not only or "capture" in only:
            capture_put(ctx, summary)
        if not only or "tick" in only:
            idle_tick(ctx, summary)
    out = RESULTS / f"profile-{STAMP}-summary.json"
    out.write_text(json.dumps(summary, indent=2))
    console.print_json(data=summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
