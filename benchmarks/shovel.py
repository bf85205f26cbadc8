"""Benchmark 1's peer: RabbitMQ Shovel moving the same N records between two vhosts over AMQPS.

The records are pre-loaded one per message (the change as JSON, persistent) into a quorum queue of a source vhost
(not timed). Then a dynamic shovel (management API `PUT /api/parameters/shovel/VHOST/NAME`, plugin
`rabbitmq_shovel`, enabled on the benchmark's private node) moves them to a quorum queue of a second vhost over
AMQPS (the run's CA verified, host name checked) with `ack-mode: on-confirm` and the plugin's default prefetch
(1,000). Timed from just before the shovel is created until the destination queue holds N messages (polled with
a passive `queue.declare` every 20 ms over an open connection).
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any
from urllib.parse import quote, urlencode

import pika

from benchmarks.common import Context
from benchmarks.pipeline import amqps, records
from tests.support.broker import ManagementAPIError
from tests.support.waiting import wait_until

QUEUE = "bench.shovel"
PLUGINS = ("rabbitmq_management", "rabbitmq_shovel", "rabbitmq_shovel_management")


def _uri(ctx: Context, vhost: str) -> str:
    """The AMQPS URI the shovel connects with: the vhost's administrator, verifying the run's CA and host name."""
    creds = ctx.broker.sites[vhost]
    tls = urlencode({"cacertfile": str(ctx.broker.ca_file), "verify": "verify_peer",
                     "server_name_indication": "localhost"})
    return (f"amqps://{quote(creds.user, safe='')}:{quote(creds.password, safe='')}@localhost:"
            f"{ctx.broker.amqps_port}/{quote(vhost, safe='')}?{tls}")


def _declare(channel: Any) -> None:
    channel.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})


def _preload(ctx: Context, vhost: str, count: int) -> None:
    """N messages, one record each, into the source queue; returns once the queue holds them all."""
    connection = amqps(ctx, vhost)
    try:
        channel = connection.channel()
        _declare(channel)
        properties = pika.BasicProperties(delivery_mode=2, content_type="application/json")
        for change in records(count):
            channel.basic_publish("", QUEUE, json.dumps(change, separators=(",", ":"), ensure_ascii=False).encode(),
                                  properties)
        wait_until(lambda: _depth(channel) >= count, 300, 0.1, what=f"{count} messages pre-loaded in {vhost}")
    finally:
        connection.close()


def _depth(channel: Any) -> int:
    return int(channel.queue_declare(QUEUE, passive=True).method.message_count)


def run(ctx: Context, count: int, timeout: float) -> dict[str, float]:
    """Pre-load, shovel, and time it; returns seconds and records/s."""
    src, dst = ctx.site_id("shovel-src"), ctx.site_id("shovel-dst")
    name = f"bench-{src}"
    path = f"/api/parameters/shovel/{quote(src, safe='')}/{quote(name, safe='')}"
    with contextlib.ExitStack() as stack:
        stack.callback(ctx.drop_vhost, src)
        stack.callback(ctx.drop_vhost, dst)
        ctx.broker.add_site(src)
        ctx.broker.add_site(dst)
        stack.callback(_delete, ctx, path)
        watcher = amqps(ctx, dst)
        stack.callback(lambda: watcher.close() if watcher.is_open else None)
        channel = watcher.channel()
        _declare(channel)
        _preload(ctx, src, count)
        value = {"src-protocol": "amqp091", "src-uri": _uri(ctx, src), "src-queue": QUEUE,
                 "dest-protocol": "amqp091", "dest-uri": _uri(ctx, dst), "dest-queue": QUEUE,
                 "ack-mode": "on-confirm", "src-delete-after": "queue-length"}
        started = time.perf_counter()
        ctx.broker.api("PUT", path, {"value": value})
        wait_until(lambda: _depth(channel) >= count, timeout, 0.02, what=f"the shovel moved {count} messages")
        seconds = time.perf_counter() - started
        moved = _depth(channel)
    if moved != count:
        raise AssertionError(f"shovel: destination holds {moved} messages, expected {count}")
    return {"seconds": seconds, "records_per_second": count / seconds}


def _delete(ctx: Context, path: str) -> None:
    if ctx.broker.running:
        with contextlib.suppress(ManagementAPIError):  # 404: it deleted itself after moving the queue's length
            ctx.broker.api("DELETE", path)
