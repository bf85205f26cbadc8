"""Issue 4, points 5 and 7: `status`, `log`, `history` (SPEC 6, 10) and the metrics of SPEC 8, through the CLI and
the metrics endpoint, against the real TLS broker."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, insert, select

from federationd import linklog, links
from federationd.categories import CATEGORIES
from federationd.schema import link_log
from federationd.store import reading
from tests.support.sites import Site, access_synced, link
from tests.support.waiting import never, wait_until

pytestmark = pytest.mark.integration

LOG_KEYS = {"at", "site", "direction", "category", "message"}
# SPEC 8: the metrics labelled `site` = the partner (and only that); the record counters also carry `category`
PER_LINK = ("federationd_outbox_pending_records", "federationd_outbox_lag_seconds",
            "federationd_inbound_queue_messages", "federationd_last_send_timestamp_seconds",
            "federationd_next_send_timestamp_seconds", "federationd_send_errors_total", "federationd_link_up")
NO_LABELS: frozenset[tuple[str, str]] = frozenset()

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def when(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def has_record(site: Site, category: str, record_id: str, origin: str) -> bool:
    return record_id in {r["id"] for r in site.records(category, origin=origin)}


def samples(site: Site) -> Samples:
    """Every sample of one scrape, by (name, labels)."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(site.metrics()) for s in family.samples}


def site_label(site: Site, **more: str) -> frozenset[tuple[str, str]]:
    return frozenset({"site": site.id, **more}.items())


def log_rows(site: Site) -> int:
    with site.engine() as engine, reading(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(link_log)).scalar_one())


# -- one linked pair for status, metrics, log and history (a pair costs ~6 s to set up) ----------------------------
def test_status_metrics_log_and_history(make_site):
    # A waits an hour after its last change; B keeps the suite's 1 s quiet period
    a = make_site("alpha", schedule={"quiet_period": "1h", "max_delay": "2h", "busy_retry": "2s"})
    b = make_site("beta")
    link(a, b)
    b.put("department", "b-sales", {"name": "Sales", "parent": None, "order": 1})
    wait_until(lambda: has_record(a, "department", "b-sales", b.id), 60, what="B's department at A")
    # before anything reads the schedule or the link log: the policy controls are due at once and their rows
    # land in the log in the background
    wait_until(lambda: access_synced(a, b), 60, what="both sides' access settings synced")

    put_at = _changes_wait_for_the_quiet_period_until_send_now(a, b)
    _every_pinned_metric_by_partner(a, b, put_at)
    rows = _log_filters_and_formats(a, b)
    _history(a, b)
    _log_cap(a, b, rows)


def _changes_wait_for_the_quiet_period_until_send_now(a: Site, b: Site) -> float:
    # A's snapshot, and what A owes B after receiving (a watermark control), go first: they go at once, and would
    # carry the changes below with them
    wait_until(lambda: a.link_row(b.id)["next_send_at"] is None, 30, what="A with nothing due")
    put_at = time.time()
    a.put("employee", "e0", {"name": "Employee 0"})
    a.put("employee", "e1", {"name": "Employee 1"})
    a.put("department", "d0", {"name": "Dept 0", "parent": None, "order": 0})
    row = a.link_row(b.id)
    assert row["pending_records"] == 3 and row["lag_seconds"] > 0
    assert row["categories"] == ["department", "employee"]
    assert abs(when(row["next_send_at"]) - (time.time() + 3600)) < 60
    assert a.metric("federationd_outbox_pending_records", site=b.id) == 3
    assert a.metric("federationd_outbox_lag_seconds", site=b.id) > 0
    assert a.metric("federationd_next_send_timestamp_seconds", site=b.id) > time.time() + 3000
    assert not has_record(b, "employee", "e0", a.id)

    assert b.id in a.cli("send-now", b.id).stdout
    wait_until(lambda: has_record(b, "department", "d0", a.id), 30, what="A's changes at B after send-now")
    row = wait_until(lambda: (r := a.link_row(b.id))["pending_records"] == 0 and r, 60, what="nothing pending")
    assert row["lag_seconds"] == 0 and row["next_send_at"] is None and when(row["last_send_at"]) >= put_at - 1
    assert {r["id"] for r in b.records("employee", origin=a.id)} == {"e0", "e1"}
    return put_at


def _every_pinned_metric_by_partner(a: Site, b: Site, put_at: float) -> None:
    partner = site_label(b)
    wanted = [(name, partner) for name in PER_LINK] + [
        ("federationd_sent_records_total", site_label(b, category="employee")),
        ("federationd_sent_records_total", site_label(b, category="department")),
        ("federationd_sent_records_total", site_label(b, category="company")),  # the initial snapshot
        ("federationd_received_records_total", site_label(b, category="department")),
        ("federationd_received_records_total", site_label(b, category="company"))]

    def all_there() -> Samples:
        got = samples(a)
        missing = [key for key in wanted if key not in got]
        assert not missing, f"missing: {missing}"
        # B's watermark for A's changes passes through A's inbound queue, whose depth the daemon reads from the
        # management API now and then; the sent counters move when the send returns, after `pending_records`
        settled = {"inbound": got[("federationd_inbound_queue_messages", partner)],
                   "sent employees": got[("federationd_sent_records_total", site_label(b, category="employee"))]}
        assert settled == {"inbound": 0, "sent employees": 2}, settled
        return got

    got = wait_until(all_there, 60, what="every pinned metric at A, settled")
    assert got[("federationd_outbox_pending_records", partner)] == 0
    assert got[("federationd_outbox_lag_seconds", partner)] == 0
    assert got[("federationd_next_send_timestamp_seconds", partner)] == 0
    assert got[("federationd_last_send_timestamp_seconds", partner)] >= put_at - 1
    assert got[("federationd_inbound_queue_messages", partner)] == 0
    assert got[("federationd_send_errors_total", partner)] == 0
    assert got[("federationd_link_up", partner)] == 1
    assert got[("federationd_sent_records_total", site_label(b, category="employee"))] == 2
    assert got[("federationd_sent_records_total", site_label(b, category="department"))] == 1
    assert got[("federationd_received_records_total", site_label(b, category="department"))] == 1
    assert got[("federationd_config_last_reload_successful", NO_LABELS)] == 1
    assert got[("federationd_quiet_period_seconds", NO_LABELS)] == 3600
    assert got[("federationd_max_delay_seconds", NO_LABELS)] == 7200
    assert got[("federationd_paused", NO_LABELS)] == 0
    for name, labels in got:
        if name in PER_LINK:
            assert dict(labels) == {"site": b.id}, (name, labels)

    at_b = samples(b)  # the suite's schedule: 1 s quiet period, 30 s max delay
    assert at_b[("federationd_quiet_period_seconds", NO_LABELS)] == 1
    assert at_b[("federationd_max_delay_seconds", NO_LABELS)] == 30
    assert at_b[("federationd_config_last_reload_successful", NO_LABELS)] == 1
    assert at_b[("federationd_received_records_total", site_label(a, category="employee"))] == 2
    assert at_b[("federationd_link_up", site_label(a))] == 1


def _log_filters_and_formats(a: Site, b: Site) -> list[dict[str, str | None]]:
    sent = wait_until(lambda: (rows := a.json("log", "--direction", "send"))
                      and {"employee", "department"} <= {r["category"] for r in rows} and rows,
                      30, what="A's send log rows")
    rows = a.json("log")
    assert rows and all(set(row) == LOG_KEYS for row in rows)
    times = [when(row["at"]) for row in rows]
    assert times == sorted(times, reverse=True), "newest first"
    assert {row["site"] for row in rows} == {b.id}
    assert {row["direction"] for row in sent} == {"send"}
    assert any(row["message"] == "sent 2 employee record(s)" for row in sent)
    received = a.json("log", "--direction", "receive", "--site", b.id)
    assert received and {row["direction"] for row in received} == {"receive"}
    assert len(sent) + len(received) == len(rows)
    assert any(row["category"] == "department" and "received 1 department record(s)" in row["message"]
               for row in received)
    employees = a.json("log", "--category", "employee")
    assert employees == [row for row in rows if row["category"] == "employee"] and employees
    assert a.json("log", "--since", "1h") == rows
    assert a.json("log", "--until", "2000-01-01T00:00:00Z") == []

    limited = a.cli("log", "--limit", "2", "--json")
    assert json.loads(limited.stdout) == rows[:2]
    assert f"newest 2 of {len(rows)} matching rows" in limited.stderr

    out = a.cli("log", "--csv").stdout
    assert out.splitlines()[0] == "at,site,direction,category,message"
    assert list(csv.DictReader(io.StringIO(out))) == [{**row, "category": row["category"] or ""} for row in rows]

    bad = a.cli("log", "--since", "yesterday-ish", check=False)
    assert bad.returncode != 0 and "--since" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    return rows


def _history(a: Site, b: Site) -> None:
    """B sent its company record (in the initial snapshot) and a department, nothing else."""
    history = a.json("history", b.id)
    assert [row["category"] for row in history] == list(CATEGORIES)
    assert all(set(row) == {"category", "last_received_at"} for row in history)
    got = {row["category"]: row["last_received_at"] for row in history}
    for category in ("company", "department"):
        assert time.time() - 300 < when(got[category]) <= time.time() + 5, got
    assert when(got["department"]) >= when(got["company"])
    assert all(got[category] is None for category in CATEGORIES if category not in ("company", "department"))

    text = a.cli("history", b.id).stdout
    assert text.count("never received") == len(CATEGORIES) - 2
    assert re.search(r"^employee\s+never received$", text, re.MULTILINE)

    unknown = a.cli("history", "nobody", check=False)
    assert unknown.returncode == 1
    assert len(unknown.stderr.strip().splitlines()) == 1 and "unknown partner" in unknown.stderr


def _log_cap(a: Site, b: Site, rows: list[dict[str, str | None]]) -> None:
    """At most 10,000 rows per call, and stderr says how many matched."""
    old = time.time() - 7200
    filler = [{"at": old - i, "site": b.id, "direction": "send", "category": None, "message": f"filler {i}"}
              for i in range(10_050)]
    with a.engine() as engine, engine.begin() as conn:
        conn.execute(insert(link_log), filler)
    total = log_rows(a)
    assert total == len(rows) + 10_050
    capped = a.cli("log", "--json")
    shown = json.loads(capped.stdout)
    assert len(shown) == 10_000 and shown[:len(rows)] == rows
    assert f"newest 10000 of {total} matching rows" in capped.stderr
    too_many = a.cli("log", "--limit", "10001", check=False)
    assert too_many.returncode == 64 and "10001" in too_many.stderr


# -- purge ---------------------------------------------------------------------------------------------------------
def test_log_is_purged_past_retention(make_site):
    a = make_site("alpha", start=False, log={"retention": "1s"})
    with a.engine() as engine, engine.begin() as conn:
        for i in range(5):
            linklog.write(conn, time.time(), "ghost", "send", f"row {i}")

    def aged() -> bool:
        with a.engine() as engine, reading(engine) as conn:
            newest = conn.execute(select(func.max(link_log.c.at))).scalar_one()
        return bool(newest < time.time() - 1)

    wait_until(aged, 30, what="every row older than the 1 s retention")
    a.start()
    wait_until(lambda: log_rows(a) == 0, 60, what="the rows purged at start")
    # logged once the purge's transaction committed: the rows can be gone a moment before the line is written
    wait_until(lambda: "purged 5 link log row(s)" in a.log_text(), 30, what="the purge in the daemon's log")

    # only what is older than the retention goes
    assert a.stop() == 0
    a.cfg["log"] = {"retention": "1h"}
    a.write_config()
    with a.engine() as engine, engine.begin() as conn:
        linklog.write(conn, time.time() - 7200, "ghost", "send", "two hours old")
        linklog.write(conn, time.time() - 400 * 86400, "ghost", "receive", "last year")
        linklog.write(conn, time.time() - 60, "ghost", "send", "a minute old")
    a.start()
    wait_until(lambda: log_rows(a) == 1, 60, what="the two old rows purged")
    assert [row["message"] for row in a.json("log")] == ["a minute old"]


# -- bugs found ----------------------------------------------------------------------------------------------------
def test_log_until_includes_the_second_it_names(make_site):
    a = make_site("alpha", start=False)
    second = float(int(time.time()) - 60)
    with a.engine() as engine, engine.begin() as conn:
        linklog.write(conn, second + 0.7, "ghost", "send", "shown at that second")
    (row,) = a.json("log")
    assert row["at"] == datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert a.json("log", "--since", row["at"]) == [row]
    assert a.json("log", "--until", row["at"]) == [row]


def test_send_errors_counter_exists_from_the_first_scrape(make_site):
    a = make_site("alpha")
    with a.engine() as engine, engine.begin() as conn:  # a link that appears while the daemon runs
        links.create(conn, time.time(), site="ghost", state=links.AWAITING_START, role=links.REQUESTER)
    first = samples(a)
    assert ("federationd_link_up", frozenset({("site", "ghost")})) in first
    assert ("federationd_send_errors_total", frozenset({("site", "ghost")})) in first



def test_quiet_period_holds_while_the_partner_sends(make_site):
    a = make_site("alpha", schedule={"quiet_period": "1h", "max_delay": "2h", "busy_retry": "2s"})
    b = make_site("beta")
    link(a, b)
    wait_until(lambda: access_synced(a, b), 60, what="both sides' access settings synced (sent at once)")
    wait_until(lambda: a.link_row(b.id)["next_send_at"] is None, 30, what="A with nothing due")
    a.put("employee", "quiet", {"name": "Waits an hour"})
    b.put("department", "b-sales", {"name": "Sales", "parent": None, "order": 1})
    wait_until(lambda: has_record(a, "department", "b-sales", b.id), 30, what="B's department at A")
    # the path ran: A's daemon scheduled the change (about an hour from now) and is running while we watch
    row = a.link_row(b.id)
    assert row["pending_records"] == 1 and when(row["next_send_at"]) > time.time() + 3000, row
    never(lambda: has_record(b, "employee", "quiet", a.id), 4, "A's change at B inside A's one-hour quiet period")
    assert a.link_row(b.id)["pending_records"] == 1 and a.proc.poll() is None


def test_next_send_after_send_now_is_now(make_site):
    a = make_site("alpha", start=False)
    with a.engine() as engine, engine.begin() as conn:  # a linked partner with nothing pending (no daemon runs)
        links.create(conn, time.time(), site="ghost", state=links.LINKED, role=links.REQUESTER,
                     public_url="amqps://localhost:5671/ghost", sent_seq=10**6)
    a.cli("send-now", "ghost")
    row = a.link_row("ghost")
    assert row["next_send_at"] is not None
    assert abs(when(row["next_send_at"]) - time.time()) < 300, row
