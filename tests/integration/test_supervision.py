"""Issue 10 (runtime half): the daemon supervises itself and never stalls silently.

Against the real TLS broker, on SQLite and PostgreSQL: the consumer survives any exception of its own, stops
consuming while our database is down (nothing dead-lettered, nothing spun through requeues) and resumes by itself;
a send worker's unexpected exception is logged, counted and backed off; one site runs one active daemon.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from federationd import links
from federationd.broker.provisioning import PARTNER_MAX_CONNECTIONS
from federationd.store import reading
from tests.faults.common import change, confirming_channel, connect_as, publish, raw
from tests.support.pg import ADMIN_DSN
from tests.support.sites import Site, link
from tests.support.waiting import holds_for, wait_until

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dead_letters(site: Site, partner: str) -> int:
    q = urllib.parse.quote
    queue = site.broker.api("GET", f"/api/queues/{q(site.id, safe='')}/{q(f'federation.dead.{partner}', safe='')}")
    return int(queue.get("messages") or 0)


def inbound_consumers(site: Site, partner: str) -> int:
    q = urllib.parse.quote
    queue = site.broker.api("GET", f"/api/queues/{q(site.id, safe='')}/"
                                   f"{q(f'federation.inbound.{partner}', safe='')}")
    return int(queue.get("consumers") or 0)


def names(site: Site, origin: str) -> dict[str, str]:
    with site.engine() as engine, reading(engine) as conn:
        rows = conn.execute(text("SELECT id, data FROM records WHERE origin = :o AND category = 'employee' "
                                 "AND NOT deleted"), {"o": origin}).all()
    return {row[0]: json.loads(row[1])["name"] if isinstance(row[1], str) else row[1]["name"] for row in rows}


class TwinSite(Site):
    @property
    def log_path(self) -> Any:
        return self.dir / "daemon-twin.log"


def twin(site: Site) -> Site:
    """A second daemon for the same site: the same config (database, state_dir), its own metrics port and log."""
    other = TwinSite.__new__(TwinSite)
    other.__dict__.update(site.__dict__)
    other.proc = None
    other.pg_name = None  # the original owns (and drops) the database
    other.metrics_port = _free_port()
    other.cfg = {**site.cfg, "metrics": {"listen": f"127.0.0.1:{other.metrics_port}"}}
    other.config_path = site.dir / "federationd-twin.yaml"
    other.write_config()
    return other


# -- the consumer's subscription sync raising a database error -----------------------------------------------------
def test_consumer_recovers_from_a_database_error_in_its_subscription_sync(make_site):
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    assert a.metric("federationd_consumer_up") == 1
    with renamed_table(a, "links"):
        wait_until(lambda: a.metric("federationd_consumer_up") == 0, 60, what="consumer_up 0 while the table is gone")
        b.put("employee", "during", {"name": "Sent while the receiver's database failed"})
    wait_until(lambda: a.metric("federationd_consumer_up") == 1, 30, what="the consumer up again by itself")
    wait_until(lambda: "during" in names(a, b.id), 30, what="the record sent meanwhile applied at A")
    assert a.metric("federationd_last_receive_timestamp_seconds", site=b.id) > 0
    assert dead_letters(a, b.id) == 0
    assert a.proc is not None and a.proc.poll() is None


# -- applying fails on our database: stop consuming, back off, resume ----------------------------------------------
def test_apply_failing_on_our_database_backs_off_without_a_requeue_loop(make_site):
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    with renamed_table(a, "records"):
        b.put("employee", "while-failing", {"name": "Sent while A cannot write records"})
        wait_until(lambda: "stopped consuming until our database answers" in a.log_text(), 30,
                   what="A backs off")
        holds_for(lambda: dead_letters(a, b.id) == 0, 30, what="nothing dead-lettered while A's apply fails")
        backed_off = a.log_text().count("stopped consuming until our database answers")
        assert backed_off <= 12, f"{backed_off} back-offs in 30 s: a requeue loop"
    wait_until(lambda: "while-failing" in names(a, b.id), 60, what="the record applied once A's table is back")
    wait_until(lambda: a.metric("federationd_consumer_up") == 1, 30, what="A consuming again")
    assert dead_letters(a, b.id) == 0


@contextlib.contextmanager
def renamed_table(site: Site, table: str) -> Iterator[None]:
    with site.engine() as engine:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {table} RENAME TO {table}_gone"))
        try:
            yield
        finally:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {table}_gone RENAME TO {table}"))


# -- an unexpected exception in a send worker -------------------------------------------------------------------------
def test_unexpected_send_exception_is_logged_counted_and_backed_off(make_site):
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    # A value the sender cannot handle: a port out of range makes the endpoint parser raise ValueError.
    with a.engine() as engine, engine.begin() as conn:
        conn.execute(text("UPDATE links SET public_url = 'amqps://localhost:99999/x' WHERE site = :s"), {"s": b.id})
    a.put("employee", "e-1", {"name": "Never sent"})
    a.cli("send-now", b.id)
    wait_until(lambda: a.metric("federationd_send_errors_total", site=b.id) >= 1, 60,
               what="the unexpected send error counted")

    def failure_recorded() -> links.Link | None:
        # the counter goes up first, then the warning is logged and the failure written on the link row
        with a.engine() as engine, reading(engine) as conn:
            row = links.require(conn, b.id)
        return row if row.failures >= 1 else None

    row = wait_until(failure_recorded, 60, what="the failure recorded on the link row")
    assert row.failures >= 1 and row.retry_at is not None and row.retry_at > row.failures
    assert row.last_error and "Port out of range" in row.last_error
    lines = [line for line in a.log_text().splitlines() if "unexpected" in line and b.id in line]
    assert lines, a.log_text()[-3000:]
    # backed off like a partner failure: each failure counted on the link and the next try scheduled later
    backoff = [line for line in a.log_text().splitlines()
               if f"send to {b.id} failed (attempt" in line and "next try in" in line and "ValueError" in line]
    assert backoff, a.log_text()[-3000:]


# -- PostgreSQL refusing connections in the middle of a multi-part snapshot -----------------------------------------
@pytest.mark.timeout(600)  # ten imports, a 60 s outage and a 400-record snapshot on a loaded machine
def test_database_outage_during_a_snapshot_stops_consuming_and_resumes(make_site, backend):
    if backend != "postgresql":
        pytest.skip("ALLOW_CONNECTIONS is PostgreSQL's")
    a = make_site("alpha")
    b = make_site("beta", transport={"batch_records": 20})
    link(a, b)
    for i in range(10):
        b.cli("import", "employee", str(write_csv(b, i)))
    wait_until(lambda: len(names(a, b.id)) == 400, 90, what="B's 400 employees at A")
    assert a.pg_name is not None
    with refusing_connections(a.pg_name):
        b.cli("relink", a.id)
        wait_until(lambda: a.metric("federationd_consumer_up") == 0, 30, what="A's consumer stops on the outage")
        holds_for(lambda: dead_letters(a, b.id) == 0 and a.proc is not None and a.proc.poll() is None, 60,
                  what="nothing dead-lettered, the daemon alive while the database refuses connections")
    wait_until(lambda: a.metric("federationd_consumer_up") == 1, 60, what="A's consumer up again by itself")
    wait_until(lambda: b.link_row(a.id)["pending_records"] == 0 and inbound_consumers(a, b.id) == 1, 60,
               what="the snapshot sent and A consuming again")
    wait_until(lambda: a.metric("federationd_inbound_queue_messages", site=b.id) == 0 and len(names(a, b.id)) == 400,
               90, what="every part applied at A")
    assert dead_letters(a, b.id) == 0
    log = a.log_text()
    assert "database" in log and "is back" in log


def write_csv(site: Site, chunk: int) -> Any:
    path = site.dir / f"chunk-{chunk}.csv"
    rows = ["id,name"] + [f"e-{chunk}-{i},Person {chunk}-{i}" for i in range(40)]
    path.write_text("\n".join(rows) + "\n")
    return path


@contextlib.contextmanager
def refusing_connections(database: str) -> Iterator[None]:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


# -- one active daemon per site -------------------------------------------------------------------------------------
def test_two_daemons_one_active_and_the_standby_takes_over(make_site):
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    standby = twin(a)
    try:
        standby.start()
        wait_until(lambda: "standby" in standby.log_text(), 60, what="the second daemon says it is a standby")
        assert a.metric("federationd_active") == 1
        assert standby.metric("federationd_active") == 0
        wait_until(lambda: inbound_consumers(a, b.id) == 1, 60, what="A consuming its inbound queue")
        holds_for(lambda: inbound_consumers(a, b.id) == 1, 6, what="one consumer on the inbound queue")
        health = json.loads(a.cli("health", "--json").stdout)
        holder = f"{socket.gethostname()} pid {a.proc.pid}"
        assert health == {"ok": True, "daemon": True, "consuming": True, "database": True, "active": True,
                          "active_daemon": holder}
        assert "daemon: active" in a.cli("status").stdout
        assert healthz(a) == (200, {"ok": True, "daemon": True, "consuming": True, "database": True, "active": True,
                                    "active_daemon": holder})
        assert healthz(standby) == (200, {"ok": True, "daemon": True, "consuming": False, "database": True,
                                          "active": False, "active_daemon": holder})

        for version in range(5):
            b.put("employee", "ordered", {"name": f"v{version}"})
            a.put("employee", f"a-{version}", {"name": f"from A {version}"})
        a.stop(signal.SIGKILL)
        wait_until(lambda: standby.metric("federationd_active") == 1, 30, what="the standby takes over")
        for version in range(5, 10):
            b.put("employee", "ordered", {"name": f"v{version}"})
        wait_until(lambda: names(a, b.id).get("ordered") == "v9", 60, what="B's last version at A")
        wait_until(lambda: {f"a-{i}" for i in range(5)} <= set(names(b, a.id)), 60, what="A's records at B")
        assert dead_letters(a, b.id) == 0
        assert "standby" in standby.log_text() and "active" in standby.log_text()
    finally:
        standby.stop()


def healthz(site: Site) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{site.metrics_port}/healthz", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_without_a_daemon_is_not_ok(make_site):
    a = make_site("alpha", start=False)
    result = a.cli("health", "--json", check=False)
    assert result.returncode != 0
    health = json.loads(result.stdout)
    assert health["ok"] is False and health["daemon"] is False and health["database"] is True


# -- redrive: dead letters back to the inbound queue ------------------------------------------------------------------
def test_redrive_moves_dead_letters_back_as_the_partner_sent_them(make_site):
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    with b.engine() as engine, reading(engine) as conn:
        row = links.require(conn, a.id)
    assert row.remote_user and row.remote_password
    connection = connect_as(a.broker, a.id, row.remote_user, row.remote_password)
    try:
        # well-formed, from the authenticated partner, but claiming another site's record: refused after the
        # user_id check, so a copy that lost its partner user would be refused for that instead
        body = {"schema": 1, "origin": b.id, "epoch": 1, "first": 1, "last": 1,
                "changes": [change("someone-else", "x-1", 1)]}
        publish(confirming_channel(connection), b.id, raw(body), user_id=row.remote_user)
    finally:
        connection.close()
    _broker_bounds_are_set(a, b)
    wait_until(lambda: dead_letters(a, b.id) == 1, 30, what="the message dead-lettered")
    assert a.metric("federationd_rejected_records_total", site=b.id, reason="foreign_origin") == 1
    assert a.metric("federationd_rejected_records_total", site=b.id, reason="user_id_mismatch", default=0) == 0

    dry = json.loads(a.cli("redrive", b.id, "--dry-run", "--json").stdout)
    assert dry == {"ok": True, "site": b.id, "dead_letters": 1, "moved": 0, "dry_run": True, "reasons": {}}
    assert dead_letters(a, b.id) == 1
    moved = json.loads(a.cli("redrive", b.id, "--json").stdout)
    assert moved["moved"] == 1 and moved["reasons"] == {"rejected": 1}
    # refused again for what it is (still malformed), not for who sent it: the partner user travelled with it
    wait_until(lambda: a.metric("federationd_rejected_records_total", site=b.id, reason="foreign_origin") == 2, 30,
               what="the redriven copy refused again for its content")
    assert a.metric("federationd_rejected_records_total", site=b.id, reason="user_id_mismatch", default=0) == 0
    wait_until(lambda: dead_letters(a, b.id) == 1, 30, what="back in the dead-letter queue")
    assert a.cli("redrive", "nobody", check=False).returncode != 0


def _broker_bounds_are_set(a: Site, b: Site) -> None:
    """The broker enforces the bounds: policies on A's vhost apply to B's queues, B's user has limits."""
    q = urllib.parse.quote
    vhost = q(a.id, safe="")
    wait_until(lambda: {p["name"] for p in a.broker.api("GET", f"/api/policies/{vhost}")}
               >= {"federationd-inbound", "federationd-dead"}, 90, what="the policies on A's vhost")

    def queue(name: str) -> Any:
        return a.broker.api("GET", f"/api/queues/{vhost}/{q(name, safe='')}")

    # the management API shows a queue's policy with its next statistics update
    wait_until(lambda: queue(f"federation.inbound.{b.id}").get("policy") == "federationd-inbound"
               and queue(f"federation.dead.{b.id}").get("policy") == "federationd-dead", 30,
               what="the policies applied to B's queues")
    inbound = queue(f"federation.inbound.{b.id}")
    assert inbound["effective_policy_definition"]["overflow"] == "reject-publish"
    assert inbound["arguments"].get("x-single-active-consumer") is True
    limits = a.broker.api("GET", f"/api/user-limits/{q(f'fed.{a.id}.{b.id}', safe='')}")
    assert limits and limits[0]["value"]["max-connections"] == PARTNER_MAX_CONNECTIONS


def test_an_active_daemon_that_loses_its_lock_session_fences_itself(make_site, backend):
    if backend != "postgresql":
        pytest.skip("a SQLite flock cannot be lost while its process lives")
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    standby = twin(a)
    try:
        standby.start()
        wait_until(lambda: "standby" in standby.log_text(), 60, what="the second daemon is a standby")
        assert a.pg_name is not None
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = %s", (a.pg_name,)).fetchall()
        assert killed == [(True,)]
        wait_until(lambda: "lost the site's active lock" in a.log_text(), 60, what="A fences itself")
        wait_until(lambda: a.metric("federationd_active") + standby.metric("federationd_active") == 1, 60,
                   what="exactly one daemon active again")
        holds_for(lambda: a.metric("federationd_active") + standby.metric("federationd_active") == 1, 3,
                  what="exactly one daemon active")
        b.put("employee", "after-fencing", {"name": "Sent after the lock moved"})
        wait_until(lambda: "after-fencing" in names(a, b.id), 60, what="received by whichever daemon is active")
        assert dead_letters(a, b.id) == 0
    finally:
        standby.stop()


def test_a_send_that_waits_on_our_database_past_the_heartbeat_reconnects_without_blaming_the_partner(
        make_site, backend):
    """Our snapshot's start waits 20 s on a lock (its epoch bump, an update of `site_state`) with the partner's
    broker connection open, the relink control already published: no heartbeat goes out meanwhile, so that broker
    drops the connection. The send notices before it publishes, reconnects and
    goes on: no failed attempt, no backoff, no warning naming the partner's broker (it was never at fault)."""
    if backend != "postgresql":
        pytest.skip("a table lock held from outside the daemon is PostgreSQL's")
    a = make_site("alpha", transport={"heartbeat": "5s"})
    b = make_site("beta")
    a.put("employee", "e1", {"name": "First"})
    link(a, b)
    # e1 arrives in a data part; the empty final part that completes the snapshot comes after it: wait for
    # that, so that the completion counted below as new can only be the relink's
    first = wait_until(lambda: completed_snapshots(b, a.id), 60, what="A's first snapshot complete at B")
    with psycopg.connect(ADMIN_DSN.rsplit("/", 1)[0] + f"/{a.pg_name}") as holder:
        holder.execute("LOCK TABLE site_state IN EXCLUSIVE MODE")  # reads go on, updates wait
        a.cli("relink", b.id, "--now")
        holds_for(lambda: a.proc is not None and a.proc.poll() is None, 20, what="A alive while its send waits")
        holder.rollback()
    wait_until(lambda: completed_snapshots(b, a.id) - first, 60, what="A's new snapshot complete at B")
    log = a.log_text()
    assert f"send to {b.id} failed" not in log and "cannot reach broker" not in log, log[-2000:]
    assert f"{b.id}: the connection to its broker closed while" in log, log[-2000:]


def completed_snapshots(site: Site, origin: str) -> set[str]:
    """The ids of `origin`'s snapshots `site` says it completed ("ORIGIN: received ..., snapshot ID complete")."""
    return set(re.findall(rf"{re.escape(origin)}: received .*, snapshot (\S+) complete", site.log_text()))


def test_heartbeats_flow_during_a_long_apply(make_site, backend):
    """The apply waits 20 s on a table lock (4 heartbeat intervals): the I/O thread keeps the connection alive,
    so the broker never drops it and the message is acked once, not redelivered."""
    if backend != "postgresql":
        pytest.skip("a table lock held from outside the daemon is PostgreSQL's")
    a = make_site("alpha", transport={"heartbeat": "5s"})
    b = make_site("beta")
    link(a, b)
    assert a.pg_name is not None
    before = a.log_text().count("consuming from our own broker")
    with psycopg.connect(ADMIN_DSN.rsplit("/", 1)[0] + f"/{a.pg_name}") as holder:
        holder.execute("LOCK TABLE records IN ACCESS EXCLUSIVE MODE")
        b.put("employee", "slow", {"name": "Applied after a long wait"})
        holds_for(lambda: a.proc is not None and a.proc.poll() is None, 20, what="A alive while its apply waits")
        holder.rollback()
    wait_until(lambda: "slow" in names(a, b.id), 30, what="the record applied once the lock is gone")
    log = a.log_text()
    assert log.count("consuming from our own broker") == before, "the consumer reconnected: heartbeats stopped"
    assert "our own broker is unavailable" not in log, log[-2000:]  # the consumer's outage line
    # A's own send may have waited on the lock too: it reconnects quietly (the test above), never a failure
    assert f"send to {b.id} failed" not in log, log[-2000:]
