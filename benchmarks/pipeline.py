"""Benchmark 1's baseline: the fastest simple way to move N records from one site's memory into another's database.

One process, the same broker, TLS and CA as the federationd run:

1. publish: JSON-encode 1,000 records per message (`{"changes": [{category, id, origin, version, data}, ...]}`),
   gzip level 1, publish each persistent with publisher confirms (pika `BlockingConnection`, one confirm awaited per
   message) to a quorum queue;
2. consume and apply: consume them all (prefetch 10), and for each message `json.loads` and one `executemany`
   versioned upsert (`INSERT ... ON CONFLICT (origin, category, id) DO UPDATE ... WHERE version <
   excluded.version`) into SQLite or PostgreSQL (the same engine settings as federationd's: `make_engine`),
   commit, ack.

Records per second over both phases; CPU seconds of this process (`time.process_time`) per phase, so the two
federationd daemons (sender A, receiver B) can be set against the matching half.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import pika
from sqlalchemy import Engine

from benchmarks.common import Context, employees, placeholder
from federationd.store import make_engine, reading
from tests.support.pg import create_database, drop_database

BATCH = 1000
GZIP_LEVEL = 1
PREFETCH = 10
ORIGIN = "baseline-src"
QUEUE = "bench.baseline"

_TARGET_DDL = """CREATE TABLE bench_records (origin VARCHAR(64) NOT NULL, category VARCHAR(32) NOT NULL,
    id VARCHAR(255) NOT NULL, epoch BIGINT NOT NULL, version BIGINT NOT NULL, deleted BOOLEAN NOT NULL,
    data TEXT NOT NULL, updated_at FLOAT NOT NULL, PRIMARY KEY (origin, category, id))"""


@dataclass(frozen=True)
class PipelineRun:
    """One baseline run: wall and CPU seconds of each phase."""

    records: int
    messages: int
    publish_seconds: float
    publish_cpu_seconds: float
    apply_seconds: float
    apply_cpu_seconds: float

    @property
    def seconds(self) -> float:
        return self.publish_seconds + self.apply_seconds

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": self.seconds, "records_per_second": self.records_per_second,
                "publish_cpu_us_per_record": self.publish_cpu_seconds / self.records * 1e6,
                "apply_cpu_us_per_record": self.apply_cpu_seconds / self.records * 1e6}


def upsert_sql(mark: str) -> str:
    return (f"INSERT INTO bench_records (origin, category, id, epoch, version, deleted, data, updated_at) "
            f"VALUES ({', '.join([mark] * 8)}) ON CONFLICT (origin, category, id) DO UPDATE SET "
            "epoch = excluded.epoch, version = excluded.version, deleted = excluded.deleted, data = excluded.data, "
            "updated_at = excluded.updated_at WHERE bench_records.version < excluded.version")


def amqps(ctx: Context, vhost: str) -> pika.BlockingConnection:
    """A connection as the vhost's administrator over AMQPS, verifying the run's CA and the host name."""
    creds = ctx.broker.sites[vhost]
    tls = ssl.create_default_context(cafile=str(ctx.broker.ca_file))
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="localhost", port=ctx.broker.amqps_port, virtual_host=vhost,
        credentials=pika.PlainCredentials(creds.user, creds.password),
        ssl_options=pika.SSLOptions(tls, server_hostname="localhost"), heartbeat=60))


def records(count: int) -> list[dict[str, Any]]:
    """The same N employees as federationd's run (same generator and seed), as changes of version 1..N."""
    return [{"category": "employee", "id": record_id, "origin": ORIGIN, "version": version, "data": data}
            for version, (record_id, data) in enumerate(employees(count), start=1)]


def publish(channel: Any, changes: list[dict[str, Any]]) -> int:
    """Phase 1: every 1,000 records one message, each awaited until the broker confirmed it."""
    properties = pika.BasicProperties(delivery_mode=2, content_type="application/json", content_encoding="gzip")
    messages = 0
    for start in range(0, len(changes), BATCH):
        body = json.dumps({"changes": changes[start:start + BATCH]}, separators=(",", ":"), ensure_ascii=False)
        channel.basic_publish("", QUEUE, gzip.compress(body.encode(), compresslevel=GZIP_LEVEL, mtime=0),
                              properties, mandatory=True)  # returns once confirmed (raises on nack/return)
        messages += 1
    return messages


def consume_and_apply(engine: Engine, channel: Any, messages: int, timeout: float = 60.0) -> int:
    """Phase 2: each message decoded and upserted with one executemany in one transaction, then acked."""
    upsert = upsert_sql(placeholder(engine))
    channel.basic_qos(prefetch_count=PREFETCH)
    applied = 0
    for received, (method, _properties, body) in enumerate(channel.consume(QUEUE, inactivity_timeout=timeout), 1):
        if method is None:
            raise TimeoutError(f"baseline: no message for {timeout:g}s after {received - 1} of {messages}")
        now = time.time()
        params = [(c["origin"], c["category"], c["id"], 1, c["version"], False,
                   json.dumps(c["data"], separators=(",", ":"), ensure_ascii=False), now)
                  for c in json.loads(gzip.decompress(body))["changes"]]
        with engine.begin() as conn:
            conn.exec_driver_sql(upsert, params)
        channel.basic_ack(method.delivery_tag)
        applied += len(params)
        if received == messages:
            break
    channel.cancel()
    return applied


@contextlib.contextmanager
def _database(ctx: Context, backend: str, name: str) -> Iterator[Engine]:
    if backend == "postgresql":
        db = f"fedbench_{name.replace('-', '_')}"
        url = create_database(db)
    else:
        url = f"sqlite:///{ctx.root / (name + '.db')}"
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(_TARGET_DDL)
        yield engine
    finally:
        engine.dispose()
        if backend == "postgresql":
            drop_database(db)


def run(ctx: Context, backend: str, count: int) -> PipelineRun:
    """The baseline on the run's broker, into a fresh database of `backend`; checks every record arrived."""
    vhost = ctx.site_id("baseline")
    changes = records(count)  # built before the clock: federationd's records are in its database already
    with contextlib.ExitStack() as stack:
        stack.callback(ctx.drop_vhost, vhost)
        ctx.broker.add_site(vhost)
        engine = stack.enter_context(_database(ctx, backend, vhost))
        connection = amqps(ctx, vhost)
        stack.callback(lambda: connection.close() if connection.is_open else None)
        pub = connection.channel()
        pub.confirm_delivery()
        pub.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        sub = connection.channel()

        wall, cpu = time.perf_counter(), time.process_time()
        messages = publish(pub, changes)
        wall_mid, cpu_mid = time.perf_counter(), time.process_time()
        applied = consume_and_apply(engine, sub, messages)
        wall_end, cpu_end = time.perf_counter(), time.process_time()

        with reading(engine) as conn:
            stored = conn.exec_driver_sql("SELECT count(*) FROM bench_records").scalar_one()
    if applied != count or stored != count:
        raise AssertionError(f"baseline applied {applied}, stored {stored}, expected {count}")
    return PipelineRun(count, messages, wall_mid - wall, cpu_mid - cpu, wall_end - wall_mid, cpu_end - cpu_mid)
