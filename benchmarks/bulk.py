"""Benchmark 1: bulk end to end. N employees of ~1 KB imported at A (CSV), `send-now`, until all are applied at B.

Baseline, same broker, same machine, same run: a minimal serial pipeline in one process - read 1,000 records from
a source table, JSON + gzip, publish with publisher confirms over TLS (verifying the test CA) into a quorum queue,
get it back, versioned upsert (`ON CONFLICT ... WHERE version < excluded.version`) with one executemany, commit,
ack; repeat.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import ssl
import time
from typing import Any

import pika
from sqlalchemy import Engine, text

from benchmarks.common import (
    BASE_EMPLOYEES,
    NO_AUTO_SEND,
    Context,
    Result,
    employees,
    placeholder,
    ratio,
    scaled,
    timeout_for,
    wait_for_count,
    wait_settled,
    write_csv,
)
from federationd.store import make_engine, reading
from tests.support.pg import create_database, drop_database
from tests.support.sites import Site, link

BATCH = 1000
GZIP_LEVEL = 6  # what federationd uses (wire.GZIP_LEVEL); gzip.compress's own default would be 9
BASELINE_ORIGIN = "baseline-src"

_TARGET_DDL = """CREATE TABLE bench_records (origin VARCHAR(64) NOT NULL, category VARCHAR(32) NOT NULL,
    id VARCHAR(255) NOT NULL, epoch BIGINT NOT NULL, version BIGINT NOT NULL, deleted BOOLEAN NOT NULL,
    data TEXT NOT NULL, updated_at FLOAT NOT NULL, PRIMARY KEY (origin, category, id))"""
_SOURCE_DDL = "CREATE TABLE bench_source (version BIGINT PRIMARY KEY, id VARCHAR(255) NOT NULL, data TEXT NOT NULL)"


def _upsert_sql(mark: str) -> str:
    return (f"INSERT INTO bench_records (origin, category, id, epoch, version, deleted, data, updated_at) "
            f"VALUES ({', '.join([mark] * 8)}) ON CONFLICT (origin, category, id) DO UPDATE SET "
            "epoch = excluded.epoch, version = excluded.version, deleted = excluded.deleted, data = excluded.data, "
            "updated_at = excluded.updated_at WHERE bench_records.version < excluded.version")


def _connection(ctx: Context, vhost: str) -> pika.BlockingConnection:
    creds = ctx.broker.sites[vhost]
    tls = ssl.create_default_context(cafile=str(ctx.broker.ca_file))  # CA-verified, host name checked
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="localhost", port=ctx.broker.amqps_port, virtual_host=vhost,
        credentials=pika.PlainCredentials(creds.user, creds.password),
        ssl_options=pika.SSLOptions(tls, server_hostname="localhost"), heartbeat=60))


def _load_source(engine: Engine, count: int) -> None:
    mark = placeholder(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(_SOURCE_DDL)
        conn.exec_driver_sql(_TARGET_DDL)
        chunk: list[tuple[int, str, str]] = []
        for version, (record_id, data) in enumerate(employees(count), start=1):
            chunk.append((version, record_id, json.dumps(data, ensure_ascii=False)))
            if len(chunk) == 5000:
                conn.exec_driver_sql(f"INSERT INTO bench_source VALUES ({mark}, {mark}, {mark})", chunk)
                chunk = []
        if chunk:
            conn.exec_driver_sql(f"INSERT INTO bench_source VALUES ({mark}, {mark}, {mark})", chunk)


def _serial_pipeline(engine: Engine, channel_pub: Any, channel_get: Any, queue: str) -> int:
    """The baseline's timed part: every batch read, encoded, published and confirmed, fetched, upserted, acked."""
    mark = placeholder(engine)
    upsert = _upsert_sql(mark)
    select = f"SELECT version, id, data FROM bench_source WHERE version > {mark} ORDER BY version LIMIT {BATCH}"
    after, applied = 0, 0
    while True:
        with reading(engine) as conn:
            rows = conn.exec_driver_sql(select, (after,)).all()
        if not rows:
            return applied
        changes = [{"category": "employee", "id": record_id, "origin": BASELINE_ORIGIN, "version": version,
                    "deleted": False, "data": json.loads(data)} for version, record_id, data in rows]
        body = {"schema": 1, "origin": BASELINE_ORIGIN, "epoch": 1, "first": rows[0][0], "last": rows[-1][0],
                "changes": changes}
        payload = gzip.compress(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
                                compresslevel=GZIP_LEVEL, mtime=0)
        channel_pub.basic_publish("", queue, payload, pika.BasicProperties(
            delivery_mode=2, content_type="application/json", content_encoding="gzip", type="changes"),
            mandatory=True)  # returns once the broker confirmed it
        after = rows[-1][0]
        method, received = _get(channel_get, queue)
        document = json.loads(gzip.decompress(received))
        now = time.time()
        params = [(document["origin"], change["category"], change["id"], document["epoch"], change["version"],
                   change["deleted"], json.dumps(change["data"], separators=(",", ":"), ensure_ascii=False), now)
                  for change in document["changes"]]
        with engine.begin() as conn:
            conn.exec_driver_sql(upsert, params)
        channel_get.basic_ack(method.delivery_tag)
        applied += len(params)


def _get(channel: Any, queue: str, timeout: float = 30.0) -> tuple[Any, bytes]:
    """The next message of `queue` (a confirmed message is there at once; ask again briefly if not)."""
    deadline = time.monotonic() + timeout
    while True:
        method, _properties, body = channel.basic_get(queue)
        if method is not None:
            return method, body
        if time.monotonic() > deadline:
            raise TimeoutError(f"no message on {queue} after {timeout:g}s")
        time.sleep(0.001)


def run_baseline(ctx: Context, backend: str, count: int) -> dict[str, float]:
    """The minimal pipeline on the same broker, into a database of the same backend; returns its figures."""
    vhost = ctx.site_id("baseline")
    with contextlib.ExitStack() as stack:
        stack.callback(ctx.drop_vhost, vhost)
        ctx.broker.add_site(vhost)
        if backend == "postgresql":
            name = f"fedbench_{vhost.replace('-', '_')}"
            url = create_database(name)
            stack.callback(drop_database, name)
        else:
            url = f"sqlite:///{ctx.root / (vhost + '.db')}"
        engine = make_engine(url)
        stack.callback(engine.dispose)
        _load_source(engine, count)
        connection = _connection(ctx, vhost)
        stack.callback(lambda: connection.close() if connection.is_open else None)
        queue = "bench.baseline"
        pub = connection.channel()
        pub.confirm_delivery()
        pub.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        get = connection.channel()
        started = time.perf_counter()
        applied = _serial_pipeline(engine, pub, get, queue)
        elapsed = time.perf_counter() - started
        with reading(engine) as conn:
            stored = conn.exec_driver_sql("SELECT count(*) FROM bench_records").scalar_one()
    if applied != count or stored != count:
        raise AssertionError(f"baseline applied {applied}, stored {stored}, expected {count}")
    return {"seconds": elapsed, "records_per_second": count / elapsed}


def _wall(engine: Engine, sql: str, params: dict[str, Any]) -> float | None:
    with reading(engine) as conn:
        value = conn.execute(text(sql), params).scalar()
    return float(value) if value is not None else None


def run_federationd(ctx: Context, backend: str, count: int) -> dict[str, float]:
    with contextlib.ExitStack() as stack:
        a = ctx.site(stack, "bulk-a", backend, extra=NO_AUTO_SEND)
        b = ctx.site(stack, "bulk-b", backend, extra=NO_AUTO_SEND)
        link(a, b)
        engine_b = stack.enter_context(b.engine())
        engine_a = stack.enter_context(a.engine())
        # the link's start-up traffic (snapshots, visit rules) is over before the import and the clock
        wait_settled(engine_a, a.id, engine_b, b.id)
        path = ctx.root / f"employees-{count}.csv"
        if not path.exists():
            write_csv(path, count)
        started = time.perf_counter()
        a.cli("import", "employee", str(path), timeout=timeout_for(count, 100))
        import_seconds = time.perf_counter() - started
        wall0 = time.time()
        cli_started = time.monotonic()
        a.cli("send-now", b.id)
        t0 = time.monotonic()
        done = wait_for_count(engine_b, a.id, count, timeout_for(count), interval=0.1, what="A's employees at B")
        elapsed = done - t0
        last_send = _wall(engine_a, "SELECT last_send_at FROM links WHERE site = :s", {"s": b.id})
        last_apply = _wall(engine_b, "SELECT max(updated_at) FROM records WHERE origin = :o", {"o": a.id})
        _check_daemons(a, b)
    return {"seconds": elapsed, "records_per_second": count / elapsed, "import_seconds": import_seconds,
            "import_rows_per_second": count / import_seconds, "send_now_cli_seconds": t0 - cli_started,
            "send_done_after_seconds": (last_send - wall0) if last_send else -1.0,
            "apply_done_after_seconds": (last_apply - wall0) if last_apply else -1.0}


def _check_daemons(*sites: Site) -> None:
    for site in sites:
        if site.proc is not None and site.proc.poll() is not None:
            raise AssertionError(f"{site.id} daemon exited with {site.proc.returncode}")


def run(ctx: Context, backend: str) -> list[Result]:
    count = scaled(BASE_EMPLOYEES)
    first = run_baseline(ctx, backend, count)
    fed = run_federationd(ctx, backend, count)
    second = run_baseline(ctx, backend, count)
    best = max(first["records_per_second"], second["records_per_second"])
    value = fed["records_per_second"]
    r = ratio(value, best)
    if r is None:
        met, note = None, ""
    elif r >= 1.0:
        met, note = True, ""
    else:
        met, note = False, ("above the 0.5x floor" if r >= 0.5 else "BELOW the 0.5x floor")
    note += ("; " if note else "") + (f"A sent all by {fed['send_done_after_seconds']:.1f}s, B applied all by "
                                      f"{fed['apply_done_after_seconds']:.1f}s (after send-now)")
    ctx.shared[f"bulk_baseline_{backend}"] = best
    return [Result(
        "1 bulk end to end", backend, f"{count:,} employees imported at A, send-now, applied at B", value, best,
        "records/s", r, ">= 1.0x (never < 0.5x)", met, note,
        details={"records": count, "federationd": fed, "baseline_runs": [first, second]})]
