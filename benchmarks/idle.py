"""Benchmark 4: one hub linked to 200 partners, idle, then one change fanned out to all 200; then a hub with 1,000
links, idle (FED_BENCH_IDLE_LINKS, default "200,1000").

No 200 daemons: each partner is a vhost on the shared broker with what a linked partner's broker holds for the hub
(its user `fed.P.HUB`, write-only, routing key HUB; its `federation.inbound.HUB` quorum queue, declared by
federationd's own topology code), and the hub's database gets 200 `linked` link rows carrying those credentials.
Then ONE hub daemon runs. Its CPU (utime + stime from /proc) and RSS are measured over FED_BENCH_IDLE_SECONDS
(default 60) next to a reference daemon with no links, started at the same time and measured over the same window.

Fan-out: one `records put` at the hub and `send-now`; the time until every partner's queue holds the message (the
hub's database says confirmed; the management API's queue counts say it is there), against a minimal serial
publisher (TLS connect, confirm, publish, close per partner) over the same 200 vhosts with the same credentials.

The 1,000-link hub gets link rows only: its partners' vhosts are not provisioned, since an idle hub talks to its own
broker only (its own inbound queue per partner, which its daemon declares and consumes); 1,000 partner vhosts would
load the shared broker for nothing the idle figure depends on.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pika
from sqlalchemy import text

from benchmarks.common import Context, Result, daemon_pid, env_float, proc_cpu_seconds, proc_memory_mb, ratio
from federationd import links
from federationd.broker import topology
from federationd.broker.connection import connect
from federationd.broker.endpoints import Endpoints
from federationd.broker.provisioning import ManagementAPI, new_password, partner_user
from federationd.config import load_config
from federationd.runtime import Runtime
from federationd.store import reading
from tests.support.sites import Site
from tests.support.waiting import wait_until

CPU_GOAL = 0.005  # of one core (issue 13: < 0.5% with 200 links and with 1,000)
RSS_GOAL_MB = 150.0


def partner_count() -> int:
    return int(os.environ.get("FED_BENCH_PARTNERS", "200"))


def _tls(ctx: Context) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ctx.broker.ca_file))


def _provision(ctx: Context, hub: str, partner: str) -> tuple[str, str, str]:
    """What partner P's broker holds for a linked hub: user fed.P.HUB and queue federation.inbound.HUB."""
    creds = ctx.broker.add_site(partner)
    own = Endpoints.parse(ctx.broker.url(partner, creds))
    tls = _tls(ctx)
    user, password = partner_user(partner, hub), new_password()
    ManagementAPI(ctx.broker.management_url, own, tls).create_publisher(user, password, hub)
    connection = connect(own, tls, heartbeat=timedelta(seconds=30), timeout=timedelta(seconds=20),
                         name="benchmark provisioning", site=partner)
    try:
        topology.declare_partner(connection.channel(), hub)
    finally:
        connection.close()
    return partner, user, password


def _queues(ctx: Context, vhost: str | None = None) -> list[dict[str, Any]]:
    path = f"/api/queues/{quote(vhost, safe='')}" if vhost else "/api/queues"
    result: list[dict[str, Any]] = ctx.broker.api("GET", f"{path}?columns=name,vhost,messages,consumers",
                                                  timeout=30)
    return result


def _idle_window(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    """CPU share of one core and RSS of each process over the same window (RSS sampled every second)."""
    cpu0 = {name: proc_cpu_seconds(pid) for name, pid in pids.items()}
    rss_max = dict.fromkeys(pids, 0.0)
    started = time.monotonic()
    while (remaining := started + seconds - time.monotonic()) > 0:
        for name, pid in pids.items():
            rss_max[name] = max(rss_max[name], proc_memory_mb(pid)["VmRSS"])
        time.sleep(min(1.0, remaining))
    elapsed = time.monotonic() - started
    result = {}
    for name, pid in pids.items():
        memory = proc_memory_mb(pid)
        result[name] = {"cpu_share": (proc_cpu_seconds(pid) - cpu0[name]) / elapsed, "seconds": elapsed,
                        "rss_max_mb": max(rss_max[name], memory["VmRSS"]), "hwm_mb": memory["VmHWM"]}
    return result


def _baseline_fanout(ctx: Context, hub: str, partners: list[tuple[str, str, str]]) -> float:
    """A minimal serial publisher: per partner, a TLS connection as fed.P.HUB, a confirm channel, one message."""
    tls = _tls(ctx)
    change = {"category": "employee", "id": "fanout-baseline", "origin": hub, "version": 1, "deleted": False,
              "data": {"name": "Fan Out", "email": "fan.out@example.co.jp"}}
    body = gzip.compress(json.dumps({"schema": 1, "origin": hub, "epoch": 1, "first": 1, "last": 1,
                                     "changes": [change]}).encode(), compresslevel=6, mtime=0)
    started = time.perf_counter()
    for partner, user, password in partners:
        connection = pika.BlockingConnection(pika.ConnectionParameters(
            host="localhost", port=ctx.broker.amqps_port, virtual_host=partner,
            credentials=pika.PlainCredentials(user, password),
            ssl_options=pika.SSLOptions(tls, server_hostname="localhost")))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.basic_publish(topology.EXCHANGE, hub, body, pika.BasicProperties(
                delivery_mode=2, content_type="application/json", content_encoding="gzip", type="changes",
                user_id=user), mandatory=True)
        finally:
            connection.close()
    return time.perf_counter() - started


def _cleanup(ctx: Context, vhosts: list[str], users: list[str]) -> None:
    def drop(kind: str, name: str) -> None:
        with contextlib.suppress(Exception):
            ctx.broker.api("DELETE", f"/api/{kind}/{quote(name, safe='')}", timeout=60)

    if not ctx.broker.running:
        return
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda v: drop("vhosts", v), vhosts))
        list(pool.map(lambda u: drop("users", u), users))
    for vhost in vhosts:
        ctx.broker.sites.pop(vhost, None)


def _fanout(ctx: Context, hub: Site, rt: Runtime, partner_names: set[str]) -> tuple[float, float]:
    """One change at the hub, `send-now`; seconds until every link confirmed it, and until the management API
    shows it in every partner's queue."""
    count = len(partner_names)
    hub.put("employee", "fanout-1", {"name": "Fan Out", "email": "fan.out@example.co.jp"})
    version = hub.json("records", "get", "employee", "fanout-1")["version"]
    t0 = time.monotonic()
    hub.cli("send-now")
    marks: dict[str, float] = {}

    def done() -> bool:
        now = time.monotonic()
        if "confirmed" not in marks:
            with reading(rt.engine) as conn:
                sent = conn.execute(text("SELECT count(*) FROM links WHERE state = 'linked' AND sent_seq >= :v"),
                                    {"v": version}).scalar_one()
            if sent >= count:
                marks["confirmed"] = now
        if "queued" not in marks:
            holding = sum(1 for q in _queues(ctx) if q["vhost"] in partner_names
                          and q["name"] == topology.inbound_queue(hub.id) and (q.get("messages") or 0) >= 1)
            if holding >= count:
                marks["queued"] = now
        return len(marks) == 2

    wait_until(done, 300, 0.2, what=f"the change at all {count} partners")
    return marks["confirmed"] - t0, marks["queued"] - t0


def idle_link_counts() -> list[int]:
    """FED_BENCH_IDLE_LINKS (default "200,1000"): the hub's link counts for the idle measurement."""
    raw = os.environ.get("FED_BENCH_IDLE_LINKS", "200,1000")
    return sorted({int(part) for part in raw.split(",") if part.strip()})


def _add_links(ctx: Context, rt: Runtime, partners: list[tuple[str, str | None, str | None]]) -> None:
    now = time.time()
    with rt.engine.begin() as conn:
        next_seq = conn.execute(text("SELECT next_seq FROM site_state WHERE id = 1")).scalar_one()
        for partner, user, password in partners:
            links.create(conn, now, site=partner, state=links.LINKED, role=links.REQUESTER,
                         company=f"{partner} Co.", name=f"{partner} HQ",
                         public_url=ctx.broker.public_url(partner), remote_user=user, remote_password=password,
                         sent_seq=next_seq, visit_sent="null")


def _idle(ctx: Context, hub: Site, reference: Site, count: int, idle_seconds: float) -> tuple[dict[str, Any], float]:
    """Start the hub and the reference, wait until the hub consumes every inbound queue, settle, measure."""
    hub.start()
    reference.start()
    started = time.perf_counter()
    wait_until(lambda: sum(1 for q in _queues(ctx, hub.id) if q["name"].startswith("federation.inbound.")
                           and q.get("consumers")) >= count, 300 + count * 0.5, 1.0,
               what=f"the hub consuming all {count} inbound queues")
    warmup_seconds = time.perf_counter() - started
    time.sleep(5)  # let start-up work (first policy sync, declarations) settle
    return _idle_window({"hub": daemon_pid(hub), "reference": daemon_pid(reference)}, idle_seconds), warmup_seconds


def _idle_rows(backend: str, count: int, window: dict[str, Any], common: dict[str, Any]) -> list[Result]:
    hub_idle, ref_idle = window["hub"], window["reference"]
    cpu, rss = hub_idle["cpu_share"], hub_idle["rss_max_mb"]
    label = f"4 idle, {count} links"
    return [
        Result(label, backend, f"hub CPU over {hub_idle['seconds']:.0f}s idle, {count} links",
               cpu * 100, ref_idle["cpu_share"] * 100, "% of a core", ratio(cpu, ref_idle["cpu_share"]),
               f"< {CPU_GOAL:.1%} of one core", cpu < CPU_GOAL, "baseline: a daemon with no links, same window",
               details={**common, "hub": hub_idle, "reference": ref_idle}),
        Result(label, backend, "hub RSS (max sampled while idle)", rss, ref_idle["rss_max_mb"],
               "MiB", ratio(rss, ref_idle["rss_max_mb"]), "< 150 MB", rss < RSS_GOAL_MB,
               f"peak (VmHWM) {hub_idle['hwm_mb']:.0f} MiB", details=common),
    ]


def _idle_only(ctx: Context, backend: str, count: int, idle_seconds: float) -> list[Result]:
    """A hub with `count` linked partners that are never contacted while idle (no partner vhosts: an idle hub
    talks to its own broker only), next to a reference daemon with no links."""
    with contextlib.ExitStack() as stack:
        hub = ctx.site(stack, "hub", backend, start=False)
        reference = ctx.site(stack, "idle-ref", backend, start=False)
        rt = Runtime(load_config(hub.config_path))
        stack.callback(rt.dispose)
        _add_links(ctx, rt, [(f"{hub.id}-p{i:04d}", None, None) for i in range(count)])
        window, warmup_seconds = _idle(ctx, hub, reference, count, idle_seconds)
    return _idle_rows(backend, count, window, {"links": count, "idle_seconds": window["hub"]["seconds"],
                                               "warmup_seconds": warmup_seconds, "partner_vhosts": False})


def run(ctx: Context, backend: str) -> list[Result]:
    count = partner_count()
    idle_seconds = env_float("FED_BENCH_IDLE_SECONDS", 60.0)
    made_vhosts: list[str] = []
    made_users: list[str] = []
    with contextlib.ExitStack() as stack:
        stack.callback(_cleanup, ctx, made_vhosts, made_users)  # last: after the daemons stopped
        hub = ctx.site(stack, "hub", backend, start=False)
        reference = ctx.site(stack, "idle-ref", backend, start=False)
        names = [f"{hub.id}-p{i:03d}" for i in range(count)]
        made_vhosts.extend(names)
        made_users.extend(f"admin-{name}" for name in names)
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            partners = list(pool.map(lambda name: _provision(ctx, hub.id, name), names))
        made_users.extend(user for _partner, user, _password in partners)
        provision_seconds = time.perf_counter() - started

        rt = Runtime(load_config(hub.config_path))
        stack.callback(rt.dispose)
        _add_links(ctx, rt, list(partners))
        window, warmup_seconds = _idle(ctx, hub, reference, count, idle_seconds)

        fed_confirmed, fed_queued = _fanout(ctx, hub, rt, set(names))
        hub_memory = proc_memory_mb(daemon_pid(hub))
        baseline_seconds = _baseline_fanout(ctx, hub.id, partners)

    fan_value, fan_base = count / fed_confirmed, count / baseline_seconds
    common = {"partners": count, "idle_seconds": window["hub"]["seconds"], "provision_seconds": provision_seconds,
              "warmup_seconds": warmup_seconds, "partner_vhosts": True}
    results = _idle_rows(backend, count, window, common)
    results.append(
        Result("4 fan-out", backend, f"one change to {count} partners, send-now until all confirmed",
               fan_value, fan_base, "partners/s", ratio(fan_value, fan_base),
               "report (no goal set)", None,
               f"{fed_confirmed:.1f}s confirmed, {fed_queued:.1f}s seen in all queues (mgmt stats, ~1s lag); "
               f"baseline serial {baseline_seconds:.1f}s",
               details={**common, "confirmed_seconds": fed_confirmed, "queued_seconds": fed_queued,
                        "baseline_seconds": baseline_seconds, "hub_memory_after_fanout_mb": hub_memory}))
    for links_count in idle_link_counts():
        if links_count != count:
            results.extend(_idle_only(ctx, backend, links_count, idle_seconds))
    return results
