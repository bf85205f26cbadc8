"""Issue 3 end to end: two sites, two daemons, one TLS broker, driven through the CLI."""

from __future__ import annotations

import pytest

from tests.support.sites import link
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

STATUS_KEYS = {"site", "state", "paused", "last_send_at", "next_send_at", "pending_records", "lag_seconds",
               "last_receive_at"}


def test_link_and_replicate_both_ways(make_site, broker):
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)

    for row in a.json("status") + b.json("status"):
        assert set(row) >= STATUS_KEYS

    for i in range(20):
        a.put("employee", f"e{i}", {"name": f"Employee {i}", "email": f"e{i}@a.example"})
    for i in range(10):
        b.put("department", f"d{i}", {"name": f"Dept {i}", "parent": None, "order": i})

    wait_until(lambda: len(b.records("employee", origin=a.id)) == 20, 60, what="20 employees of A at B")
    wait_until(lambda: len(a.records("department", origin=b.id)) == 10, 60, what="10 departments of B at A")
    # the initial snapshot carried each site's company record
    assert b.json("records", "get", "company", a.id, "--origin", a.id)["data"]["company"] == a.cfg["site"]["company"]

    # update
    before = b.json("records", "get", "employee", "e3", "--origin", a.id)
    a.put("employee", "e3", {"name": "Renamed", "email": "e3@a.example"})
    wait_until(lambda: b.json("records", "get", "employee", "e3", "--origin", a.id)["data"]["name"] == "Renamed",
               60, what="the update at B")
    after = b.json("records", "get", "employee", "e3", "--origin", a.id)
    assert after["version"] > before["version"]

    # delete: a tombstone at B, hidden from the default list
    a.cli("records", "delete", "employee", "e4")
    wait_until(lambda: b.json("records", "get", "employee", "e4", "--origin", a.id)["deleted"], 60,
               what="the delete at B")
    assert "e4" not in {r["id"] for r in b.records("employee", origin=a.id)}
    assert "e4" in {r["id"] for r in b.records("employee", origin=a.id, include_deleted=True)}

    # each site's own records are untouched by what it received
    assert len(a.records("employee")) == 19 and len(b.records("department")) == 10
    assert a.records("employee", origin=b.id) == []

    # status and metrics reflect the traffic
    row = a.link_row(b.id)
    assert row["state"] == "linked" and row["last_send_at"] and row["last_receive_at"]
    wait_until(lambda: a.link_row(b.id)["pending_records"] == 0, 30, what="nothing pending at A")
    assert b.metric("federationd_received_records_total", site=a.id, category="employee") >= 20
    # counted when the send returns, after the confirms moved the watermark that `pending_records` reads
    wait_until(lambda: a.metric("federationd_sent_records_total", site=b.id, category="employee") >= 20, 30,
               what="A's sent employees counted")
    assert a.metric("federationd_link_up", site=b.id) == 1

    # every connection to the broker is TLS
    connections = broker.connections()
    assert connections and all(c.get("ssl") for c in connections)


def test_change_burst_sends_newest_version_once(make_site):
    """Five changes of one record pending together travel once, as the newest: A counts one position sent, B
    counts one received, and B holds the fifth version."""
    a = make_site("alpha", schedule={"quiet_period": "1h", "max_delay": "2h", "busy_retry": "2s"})
    b = make_site("beta")
    link(a, b)  # the initial snapshot goes at once, whatever the quiet period
    wait_until(lambda: a.link_row(b.id)["pending_records"] == 0 and b.records("company", origin=a.id), 60,
               what="the initial snapshot delivered")
    sent_before = a.metric("federationd_sent_records_total", site=b.id, category="position", default=0.0)
    received_before = b.metric("federationd_received_records_total", site=a.id, category="position", default=0.0)
    for n in range(5):
        a.put("position", "p1", {"name": f"Rank {n}", "rank": n})
    newest = a.json("records", "get", "position", "p1")["version"]
    assert a.link_row(b.id)["pending_records"] == 1  # one record pending, not five changes
    a.cli("send-now", b.id)
    wait_until(lambda: b.json("records", "get", "position", "p1", "--origin", a.id)["data"]["rank"] == 4, 60,
               what="the newest position at B")
    assert b.json("records", "get", "position", "p1", "--origin", a.id)["version"] == newest
    wait_until(lambda: a.link_row(b.id)["pending_records"] == 0, 30, what="A's send marked done")
    # the send counts what it sent when it returns, after the confirms moved the watermark: wait for the count
    wait_until(lambda: a.metric("federationd_sent_records_total", site=b.id, category="position",
                                default=0.0) > sent_before, 30, what="A's send counted")
    assert a.metric("federationd_sent_records_total", site=b.id, category="position") - sent_before == 1
    assert b.metric("federationd_received_records_total", site=a.id, category="position") - received_before == 1
