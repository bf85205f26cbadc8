"""The sender alone against a private broker: `PYTHONPATH=. .venv/bin/python -m benchmarks.send_window`.

`federationd.outbox.sender.send` of N pending employees (FED_BENCH_SEND_RECORDS, default 10000) from a SQLite
site to a quorum queue on a private TLS node (tests/support/broker.py), publisher confirms on, nothing consuming.
Wall and in-process CPU (`time.process_time`) of each of FED_BENCH_SEND_RUNS runs (default 3), then the best of
each. No daemon runs: only the send loop, its reads and encodes, and pika.
"""

from __future__ import annotations

import os
import ssl
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pika

from benchmarks.common import employees
from federationd import links
from federationd.broker import topology
from federationd.broker.endpoints import Endpoints
from federationd.broker.publisher import Publisher
from federationd.outbox import capture, sender
from tests.support.broker import TestBroker
from tests.support.pki import make_pki
from tests.support.stub import StubNetwork

A, B = "site-a", "site-b"


def main() -> int:
    count = int(os.environ.get("FED_BENCH_SEND_RECORDS", "10000"))
    runs = int(os.environ.get("FED_BENCH_SEND_RUNS", "3"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with TestBroker(root / "broker", make_pki(root / "pki")) as broker:
            url = broker.url(B, broker.add_site(B))
            context = ssl.create_default_context(cafile=str(broker.ca_file))
            params = pika.URLParameters(url)
            params.ssl_options = pika.SSLOptions(context, "localhost")
            admin = pika.BlockingConnection(params)
            channel = admin.channel()
            topology.declare_partner(channel, A)
            net = StubNetwork(root)
            a = net.add_site(A)
            net.add_site(B)
            net.link(A, B)
            endpoint = Endpoints.parse(url)
            a.rt.publisher = lambda _endpoint, site: Publisher(  # type: ignore[method-assign]
                endpoint, context, site=site, heartbeat=timedelta(seconds=30), timeout=timedelta(seconds=10),
                name="bench-send")
            rows = list(employees(count, seed=9))
            for start in range(0, count, 1000):
                with a.rt.engine.begin() as conn:
                    capture.put_many(conn, "employee", rows[start:start + 1000])
            results = []
            for run in range(runs):
                channel.queue_purge(topology.inbound_queue(A))
                with a.rt.engine.begin() as conn:
                    links.change(conn, B, sent_seq=0)
                wall, cpu = time.perf_counter(), time.process_time()
                report = sender.send(a.rt, B)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                results.append((wall, cpu))
                print(f"run {run + 1}: {sum(report.sent.values())} records in {report.messages} messages, "
                      f"{wall:.3f} s wall, {cpu:.3f} s CPU")
            admin.close()
            net.close()
    best_wall, best_cpu = min(w for w, _ in results), min(c for _, c in results)
    print(f"best of {runs}: {best_wall:.3f} s wall ({count / best_wall:,.0f} records/s), {best_cpu:.3f} s CPU "
          f"({best_cpu / count * 1e6:.1f} us/record)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
