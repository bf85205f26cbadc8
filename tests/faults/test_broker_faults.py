"""Faults 2 and 3: the broker restarts, raises a memory alarm, or the partner's broker is away for a while.

Each test owns a private broker (module-scoped; the session broker other tests share is never touched). No
daemon may exit; both reconnect with backoff; nothing pending is lost: the partner's copy ends equal to the
origin's, record by record.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import update

from federationd import controls
from federationd.outbox import capture
from federationd.records import list_records
from federationd.schema import links as link_rows
from federationd.store import load_site_state, reading
from tests.faults.common import (
    ALARMS,
    BROKER_RESTARTS,
    COMPARED,
    FIGURES,
    OUTAGES,
    converge,
    count_records,
    link,
    link_row,
    quick_diff,
)
from tests.support.sites import Site
from tests.support.waiting import holds_for, wait_until

pytestmark = pytest.mark.integration

CATS = ("company", "employee", "department")
# Heartbeats short enough that a broker going away is noticed in seconds, and a backoff cap that keeps the
# "partner returns" wait short; both are tuning keys of transport: (docs/operations.md).
TRANSPORT = {"heartbeat": "5s", "retry_max": "4s"}


def _burst(site: Site, category: str, prefix: str, count: int, rev: int = 0) -> None:
    rows = [(f"{prefix}{n}", {"name": f"{prefix}{n}", "rev": rev}) for n in range(count)]
    with site.engine() as engine, engine.begin() as conn:
        capture.put_many(conn, category, rows)


def _alive(*sites: Site) -> bool:
    return all(site.proc is not None and site.proc.poll() is None for site in sites)


def _assert_converged(a: Site, b: Site, through_cli: bool = True) -> None:
    """Both copies equal their origin; compared through the CLI, or in-process between the phases of a test."""
    for origin, partner in ((a, b), (b, a)):
        if through_cli:
            diff = converge(origin, partner, 120, CATS)
        else:
            wait_until(lambda: quick_diff(origin, partner, CATS).clean, 120, interval=0.25,  # noqa: B023
                       what=f"{partner.id}'s copy of {origin.id} equal to the origin's")
            diff = quick_diff(origin, partner, CATS)
            FIGURES[COMPARED] += diff.compared
        assert diff.clean, f"{partner.id}'s copy of {origin.id}: {diff}"


@pytest.fixture(autouse=True)
def _broker_back_to_normal(private_broker):
    """Whatever a failed test left behind, the next one gets a running broker without an alarm."""
    yield
    try:
        private_broker.api("GET", "/api/overview", timeout=5)
    except Exception:
        private_broker.start_app()
    private_broker.set_memory_watermark(0.4)
    private_broker.set_disk_free_limit("50MB")


@contextlib.contextmanager
def _apply_held_back(site: Site, partner: str) -> Iterator[None]:
    """Hold a lock that the site's next apply of `partner`'s batch must wait for: on PostgreSQL the partner's links
    row (the apply updates it just before committing: the apply is then blocked mid-transaction), on SQLite the
    database's write lock (the apply's BEGIN IMMEDIATE waits, up to the 30 s busy timeout)."""
    with site.engine() as engine, engine.begin() as conn:
        conn.execute(update(link_rows).where(link_rows.c.site == partner).values(site=partner))
        yield


LOST = "our own broker is unavailable"  # the consumer's outage line, once per outage
APPLY_RETRIED = "message from {partner}, will retry"  # an apply that failed on our database (here: a lock wait)
SESSION = "consuming from our own broker"  # the consumer's line at the start of each session


def _lost_count(*sites: Site) -> dict[str, int]:
    return {site.id: site.log_text().count(LOST) for site in sites}


def _wait_lost(before: dict[str, int], *sites: Site) -> None:
    """Each daemon's consumer saw its broker go (the positive proof that the outage reached them)."""
    for site in sites:
        wait_until(lambda: site.log_text().count(LOST) > before[site.id], 60,  # noqa: B023
                   what=f"{site.id}'s consumer noticing the broker went away")


def _quiet(a: Site, b: Site) -> None:
    """A has no control waiting for B and B's queue of A's messages stays empty (the management figures are a
    second late: two seconds of empty)."""
    def nothing_waiting() -> bool:
        with a.engine() as engine, reading(engine) as conn:
            return not controls.waiting(conn, b.id)

    def queue_empty() -> bool:
        queue = b.broker.api("GET", f"/api/queues/{b.id}/federation.inbound.{a.id}")
        return int(queue.get("messages") or 0) == 0

    wait_until(nothing_waiting, 30, what=f"{a.id}'s controls for {b.id} sent")
    wait_until(lambda: _holds(queue_empty, 2), 30, what=f"{b.id}'s queue of {a.id}'s messages empty")


def _holds(predicate, seconds: float) -> bool:
    try:
        holds_for(predicate, seconds, what="")
    except AssertionError:
        return False
    return True


def _unacked(broker, vhost: str, partner: str) -> int:
    queue = broker.api("GET", f"/api/queues/{vhost}/federation.inbound.{partner}")
    return int(queue.get("messages_unacknowledged") or 0)


@pytest.mark.timeout(900)  # a broker boot, three restarts (one may be tried three times) and an alarm
def test_broker_restarts_and_memory_alarm_lose_nothing(private_broker, site_on):
    """One linked pair on a private broker: a restart while sends are due, a restart while a batch is being
    applied, then a memory alarm. No daemon exits; after each fault both copies equal their origins."""
    broker = private_broker
    a = site_on(broker, "alpha", transport={**TRANSPORT, "batch_records": 50})
    b = site_on(broker, "beta", transport=TRANSPORT)
    link(a, b)

    # 1. changes on both sides, and the broker goes away before their quiet period ends: the sends fall due
    #    while it is down
    _burst(a, "employee", "e", 200)
    _burst(b, "department", "d", 30)
    lost = _lost_count(a, b)
    broker.stop_app()
    FIGURES[BROKER_RESTARTS] += 1
    try:
        _burst(a, "employee", "late", 20)  # the host keeps writing while the broker is away
        _wait_lost(lost, a, b)
        assert _alive(a, b), "a daemon exited while its broker was down"
    finally:
        broker.start_app()
    _assert_converged(a, b, through_cli=False)

    # 2. the broker goes away while B applies A's batch: B commits while the broker is down, its ack is lost,
    #    the batch is redelivered after the restart and skipped as a duplicate. B's apply waits for the held lock
    #    only so long (SQLite's busy timeout, PostgreSQL's lock timeout); on a machine too loaded to stop the broker
    #    within that wait, the apply fails and is retried instead (logged), and the fault is injected again.
    for attempt in range(1, 4):
        timed_out = b.log_text().count(APPLY_RETRIED.format(partner=a.id))
        _quiet(a, b)  # else the delivery held below may be a control A sent late (its watermark), not a batch
        with _apply_held_back(b, a.id):
            _burst(a, "employee", "e", 300, rev=attempt)
            wait_until(lambda: link_row(a, b.id).sent_seq >= _newest(a), 60, what="A's batches in B's broker")
            wait_until(lambda: _unacked(broker, b.id, a.id) > 0, 30, what="B holding a delivery it is applying")
            lost = _lost_count(a, b)
            # counted before the stop: a consumer that reconnected more than once before (load) must not make the
            # wait below true before this restart's reconnect
            sessions = {site.id: site.log_text().count(SESSION) for site in (a, b)}
            broker.stop_app()
            FIGURES[BROKER_RESTARTS] += 1
        try:
            _wait_lost(lost, a, b)
            assert _alive(a, b), "a daemon exited while its broker was down"
        finally:
            broker.start_app()
        _assert_converged(a, b, through_cli=False)
        for site in (a, b):  # both consumers come back on their own
            wait_until(lambda: site.log_text().count(SESSION) > sessions[site.id], 60,  # noqa: B023
                       what=f"{site.id}'s consumer reconnected after the restart")
        if b.log_text().count(APPLY_RETRIED.format(partner=a.id)) == timed_out:
            break  # the apply outlasted the outage: the case this phase is about
    else:
        pytest.fail("three times, B's apply gave up waiting for the held lock before the broker had stopped")
    # the consumer says it is back before the redelivered batch is applied: wait for the apply's line
    wait_until(lambda: re.search(rf"{re.escape(a.id)}: received 50 record\(s\), applied 0, skipped 50 duplicate",
                                 b.log_text()), 60,
               what="the batch applied before the restart redelivered and skipped as a duplicate")

    # 3. a memory alarm: publishing blocks, nothing is lost, it resumes
    held = count_records(b, a.id, "employee")
    broker.set_memory_watermark(0)
    FIGURES[ALARMS] += 1
    try:
        wait_until(lambda: any(node.get("mem_alarm") for node in broker.api("GET", "/api/nodes")), 30,
                   what="the broker's memory alarm")
        _burst(a, "employee", "m", 100)
        # the send falls due and starts, but the broker does not take the message: nothing arrives, nothing is
        # marked sent, and the daemons wait instead of failing or exiting
        wait_until(lambda: link_row(a, b.id).sending_since is not None, 90, interval=0.05,
                   what="A's send started (and blocked)")
        # the mark is set before the connection opens; the management API shows the block a few seconds late
        wait_until(lambda: any(c.get("state") in ("blocked", "blocking") for c in broker.connections()), 60,
                   what="A's connection blocked by the alarm")
        holds_for(lambda: _alive(a, b) and count_records(b, a.id, "employee") == held
                  and link_row(a, b.id).sent_seq < _newest(a), 3, "publishing blocked by the alarm")
    finally:
        broker.set_memory_watermark(0.4)
    _assert_converged(a, b)
    wait_until(lambda: link_row(a, b.id).sent_seq >= _newest(a), 30, what="A's batch marked sent")
    assert _alive(a, b)


def _newest(site: Site) -> int:
    with site.engine() as engine, reading(engine) as conn:
        return load_site_state(conn).next_seq


def _count_rev(site: Site, origin: str, rev: int) -> int:
    with site.engine() as engine, reading(engine) as conn:
        return sum(r.data.get("rev") == rev for r in list_records(conn, origin, "employee"))


@pytest.mark.timeout(600)  # a broker boot, an outage of several attempts and a convergence
def test_partner_away_for_a_while_backs_off_then_delivers_everything(make_site, private_broker, site_on):
    """A on the shared broker, B on its own broker, which goes away: A's sends fail with a capped, jittered
    backoff (each attempt waits at least what the previous one announced, at most transport.retry_max),
    `federationd_link_up` is 0, the error names B in
    `status`, and everything pending arrives once B's broker is back."""
    a = make_site("alpha", transport=TRANSPORT)
    b = site_on(private_broker, "beta", transport=TRANSPORT)
    link(a, b)
    wait_until(lambda: count_records(b, a.id, "company") == 1, 60, what="the initial snapshot at B")
    assert a.metric("federationd_link_up", site=b.id) == 1

    private_broker.stop_app()
    FIGURES[OUTAGES] += 1
    try:
        _burst(a, "employee", "e", 50)
        a.cli("records", "delete", "employee", "e7")
        wait_until(lambda: a.metric("federationd_link_up", site=b.id) == 0, 30, what="link_up 0 at A")
        failed = re.compile(rf"^(\S+) WARNING \S+: (?:site=\S+ )?send to {re.escape(b.id)} failed \(attempt (\d+)\), "
                            rf"next try in (\d+)s", re.MULTILINE)
        seen = len(failed.findall(a.log_text()))
        attempts = wait_until(lambda: (found := failed.findall(a.log_text())) and len(found) >= seen + 4 and found,
                              120, what="four more failed attempts at A")
        assert _alive(a, b)
        # a capped backoff, not a tight loop: attempts numbered one by one, each announced wait within
        # transport.retry_max, and each next attempt no earlier than the wait it announced (load only delays it)
        numbers = [int(n) for _at, n, _wait in attempts]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
        assert all(int(wait) <= 4 for _at, _n, wait in attempts), f"backoff above transport.retry_max: {attempts}"
        stamps = [datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ") for at, _n, _wait in attempts]
        for (earlier, (_at, _n, wait)), later in zip(zip(stamps, attempts, strict=True), stamps[1:], strict=False):
            assert (later - earlier).total_seconds() >= int(wait) - 1, f"retried before the announced wait: {attempts}"
        # every failed attempt logged is counted, and nothing else (read together: wait for a quiet moment)
        wait_until(lambda: a.metric("federationd_send_errors_total", site=b.id) == len(failed.findall(a.log_text())),
                   30, what="federationd_send_errors_total equal to the failed attempts logged")
        assert a.metric("federationd_outbox_pending_records", site=b.id) == 50

        status = a.cli("status").stdout
        row = next(line for line in status.splitlines() if line.startswith(b.id))
        assert "cannot reach broker" in " ".join(status.split()), status
        assert b.id in row
        logged = a.json("log", "--site", b.id, "--direction", "send")
        assert any("send failed" in r["message"] and b.id in r["message"] for r in logged), logged
    finally:
        private_broker.start_app()

    diff = converge(a, b, 120, CATS)
    assert diff.clean, diff
    wait_until(lambda: a.metric("federationd_link_up", site=b.id) == 1, 60, what="link_up back to 1")
    assert a.link_row(b.id)["pending_records"] == 0


@pytest.mark.timeout(600)
def test_disk_alarm_blocks_sends_until_lifted_and_loses_nothing(private_broker, site_on):
    """A disk alarm on the partner's broker: A's publish blocks; after blocked_connection_timeout (max(60 s,
    2 x heartbeat), broker/connection.py) pika gives up on the blocked connection, the send counts as failed and is
    retried with backoff; nothing is marked sent until confirmed; once the alarm is lifted everything arrives."""
    broker = private_broker
    a = site_on(broker, "alpha", transport=TRANSPORT)
    b = site_on(broker, "beta", transport=TRANSPORT)
    link(a, b)
    wait_until(lambda: count_records(b, a.id, "company") == 1, 60, what="the initial snapshot at B")
    errors_before = a.metric("federationd_send_errors_total", site=b.id)
    broker.set_disk_free_limit("100000GB")
    FIGURES[ALARMS] += 1
    try:
        wait_until(lambda: "disk" in broker.alarms(), 60, what="the broker's disk alarm")
        _burst(a, "employee", "disk", 100)
        wait_until(lambda: link_row(a, b.id).sending_since is not None, 90, interval=0.05,
                   what="A's send started (and blocked)")
        wait_until(lambda: any(c.get("state") in ("blocked", "blocking") for c in broker.connections()), 30,
                   what="A's connection blocked by the alarm")
        # pika gives up on the blocked connection after blocked_connection_timeout: a failed attempt, counted
        wait_until(lambda: a.metric("federationd_send_errors_total", site=b.id) > errors_before, 180,
                   what="A's blocked send given up and counted as failed")
        assert count_records(b, a.id, "employee") == 0 and link_row(a, b.id).sent_seq < _newest(a)
        # counted first, then logged: wait for the line
        wait_until(lambda: re.search(rf"send to {re.escape(b.id)} failed \(attempt \d+\)", a.log_text()), 30,
                   what="A's failed attempt logged")
        assert _alive(a, b)
    finally:
        broker.set_disk_free_limit("50MB")
    wait_until(lambda: "disk" not in broker.alarms(), 60, what="the disk alarm lifted")
    diff = converge(a, b, 120, CATS)
    assert diff.clean, diff
    assert count_records(b, a.id, "employee") == 100
    wait_until(lambda: link_row(a, b.id).sent_seq >= _newest(a), 30, what="A's batch marked sent")
