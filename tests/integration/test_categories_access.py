"""Issue 5 across two linked sites: category rules, CSV import under the bulk lock, visit/accept, tickets."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import delete, insert

from federationd import tickets
from federationd.identity import signing_key
from federationd.schema import bulk_lock
from tests.support.sites import link
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

DEPARTMENTS = """id,name,parent,order
sales,Sales,,1
sales-east,Sales East,sales,2
support,Support,,3
"""
EMPLOYEES = """id,name,main_department,position,groups,email
e-1,Aiko,sales-east,manager,[],aiko@a.example
e-2,Bunta,support,staff,[],bunta@a.example
e-3,Chie,support,staff,"[""visitors""]",chie@a.example
e-17,Daichi,sales,manager,[],daichi@a.example
"""


def _ids(site, category, origin=None):
    return {r["id"] for r in site.records(category, origin=origin)}


def _count_all(site):
    return sum(len(site.records(c, include_deleted=True)) for c in ("employee", "department"))


@pytest.fixture
def pair(make_site, tmp_path):
    a = make_site("alpha", start=False)
    b = make_site("beta", start=False)
    a.cfg["links"] = {b.id: {"visit": {"departments": ["sales"], "groups": ["visitors"]}}}
    b.cfg["links"] = {a.id: {"accept": {"default": {"role": "read"}, "rules": [
        {"position": "manager", "role": "edit"},
        {"department": "sales", "role": "read", "products": ["schedule", "presence"]},
        {"department": "sales", "position": "manager", "role": "admin"},
        {"employee": "e-17", "role": "none"},
        {"department": "support", "role": "edit", "networks": [{"cidr": "192.0.2.0/24", "role": "read"}]},
    ]}}}
    a.write_config()
    b.write_config()
    a.start()
    b.start()
    link(a, b)
    (tmp_path / "departments.csv").write_text(DEPARTMENTS)
    (tmp_path / "employees.csv").write_text(EMPLOYEES)
    a.cli("import", "department", str(tmp_path / "departments.csv"))
    a.cli("import", "employee", str(tmp_path / "employees.csv"))
    wait_until(lambda: len(_ids(b, "employee", a.id)) == 4 and len(_ids(b, "department", a.id)) == 3, 60,
               what="A's imported people and departments at B")
    return a, b


def test_csv_import_and_bad_files_write_nothing(pair, tmp_path):
    a, b = pair
    employee = b.json("records", "get", "employee", "e-3", "--origin", a.id)
    assert employee["data"]["groups"] == ["visitors"] and employee["data"]["main_department"] == "support"
    before = _count_all(a)
    bad = {
        "noid.csv": ("name\nX\n", "no `id` column"),
        "dup.csv": ("id,name\nx1,A\nx2,B\nx1,C\n", "line 4: id 'x1' again (first on line 2)"),
        "short.csv": ("id,name,email\nx1,A,a@x\nx2,B\n", "line 3: 2 fields"),
        "json.csv": ("id,name,groups\nx1,A,[broken\n", "line 2, column 3 ('groups')"),
        "secret.csv": ("id,name,Password\nx1,A,hunter2\n", "column 3 ('Password')"),
        "empty.csv": ("", "empty"),
    }
    for name, (content, _expected) in bad.items():
        (tmp_path / name).write_text(content)
    (tmp_path / "latin1.csv").write_bytes("id,name\nx1,A\nx2,Jos\u00e9\n".encode("latin-1"))
    bad["latin1.csv"] = ("", "line 3: not UTF-8")
    for name, (_content, expected) in bad.items():
        result = a.cli("import", "employee", str(tmp_path / name), check=False)
        assert result.returncode == 1, (name, result.stderr)
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, (name, result.stderr)
    assert _count_all(a) == before


def test_bulk_lock_holds_a_due_send_back(pair):
    a, b = pair
    with a.engine() as engine, engine.begin() as conn:
        conn.execute(insert(bulk_lock).values(name="bulk", holder="a test", acquired_at=time.time()))
    deferrals = a.log_text().count(f"send to {b.id} waits: a bulk job holds the lock")
    a.put("employee", "e-9", {"name": "Waits for the lock"})
    # the send fell due and was deferred because of the lock (the daemon says so), and twice in a row: it was
    # retried after busy_retry and deferred again while the lock stays
    wait_until(lambda: a.log_text().count(f"send to {b.id} waits: a bulk job holds the lock") >= deferrals + 2,
               60, what="A deferring its due send twice for the bulk lock")
    assert "e-9" not in _ids(b, "employee", a.id)
    assert a.link_row(b.id)["pending_records"] == 1
    with a.engine() as engine, engine.begin() as conn:
        conn.execute(delete(bulk_lock))
    wait_until(lambda: "e-9" in _ids(b, "employee", a.id), 60, what="the send after the lock is released")


def test_accept_priority_visit_rules_and_networks(pair):
    a, b = pair
    wait_until(lambda: b.json("access", "check", a.id, "e-1")["role"] == "admin", 60,
               what="A's visit rules known at B")
    check = b.json("access", "check", a.id, "e-1")
    assert check == {"allowed": True, "role": "admin", "products": None, "restrictions": [],
                     "rule": "department sales + position manager"}
    assert b.json("access", "check", a.id, "e-17")["allowed"] is False  # employee rule: none
    refused = b.json("access", "check", a.id, "e-2")  # support is outside A's visit rules
    assert refused["allowed"] is False and "visit rules" in refused["rule"]
    assert b.json("access", "check", a.id, "e-3")["role"] == "edit"  # the visitors group may visit
    assert b.json("access", "check", a.id, "e-3", "--from-ip", "192.0.2.9")["role"] == "read"
    assert b.json("access", "check", a.id, "nobody")["allowed"] is False

    # A widens its visit rules and reloads: B learns it
    a.cfg["links"][b.id]["visit"]["departments"].append("support")
    a.write_config()
    a.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: b.json("access", "check", a.id, "e-2")["allowed"], 60, what="the widened visit rules at B")


def test_sign_in_tickets(pair):
    a, b = pair
    wait_until(lambda: b.json("access", "check", a.id, "e-1")["allowed"], 60, what="A's policy at B")
    ticket = a.cli("access", "ticket", b.id, "e-1").stdout.strip()
    answer = b.json("access", "redeem", ticket)
    assert answer == {"allowed": True, "role": "admin", "products": None, "restrictions": [],
                      "rule": "department sales + position manager", "employee": "e-1", "origin": a.id}

    replay = b.cli("access", "redeem", ticket, check=False)
    assert replay.returncode == 1 and "already used" in replay.stderr
    refused = a.cli("access", "ticket", b.id, "e-2", check=False)
    assert refused.returncode == 1 and "visit rules" in refused.stderr

    key = signing_key(a.dir / "state")
    now = time.time()
    cases = {
        "expired": tickets.issue(key, a.id, b.id, "e-1", now - 120),
        "another site": tickets.issue(key, a.id, "site-zz", "e-1", now),
        "a stranger": tickets.issue(signing_key(a.dir / "stranger", create=True), "site-zz", b.id, "e-1", now),
        "forged": ticket[:-6] + ("AAAAAA" if not ticket.endswith("AAAAAA") else "BBBBBB"),
        "damaged": "fedticket1.???.???",
    }
    reasons = {"expired": "expired", "another site": "not this site", "a stranger": "not a linked partner",
               "forged": "forged", "damaged": "damaged"}
    for name, text in cases.items():
        result = b.cli("access", "redeem", text, check=False)
        assert result.returncode == 1 and reasons[name] in result.stderr, (name, result.stderr)


def test_category_rules_at_the_sender(pair):
    a, b = pair
    today = datetime.now(UTC).date()
    start = datetime.combine(today, datetime.min.time(), UTC) + timedelta(hours=9)
    a.put("schedule", "weekly", {"title": "Standup", "place": "Room 1", "start": start.isoformat(),
                                 "end": (start + timedelta(minutes=30)).isoformat(),
                                 "recurrence": "FREQ=WEEKLY;BYDAY=MO"})
    a.put("schedule", "secret", {"title": "Interview", "place": "HQ", "attendees": ["e-1"], "restricted": True,
                                 "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()})
    a.put("presence", "e-1", {"date": today.isoformat(), "status": "out", "return_at": "15:00",
                              "remarks": "client visit", "diary": "private notes"})
    wait_until(lambda: _ids(b, "schedule", a.id) == {"weekly", "secret"} and _ids(b, "presence", a.id), 60,
               what="schedules and presence at B")

    weekly = b.json("records", "get", "schedule", "weekly", "--origin", a.id)["data"]
    horizon = (today + timedelta(days=370)).isoformat()
    assert 50 <= len(weekly["occurrences"]) <= 60
    assert all(o["start"][:10] <= horizon for o in weekly["occurrences"])
    assert all(date.fromisoformat(o["start"][:10]).weekday() == 0 for o in weekly["occurrences"])
    secret = b.json("records", "get", "schedule", "secret", "--origin", a.id)["data"]
    assert secret == {"title": "Private", "start": start.isoformat(),
                      "end": (start + timedelta(hours=1)).isoformat()}
    presence = b.json("records", "get", "presence", "e-1", "--origin", a.id)["data"]
    assert set(presence) == {"date", "status", "return_at", "remarks"}

    before = _count_all(a)
    refused = a.cli("records", "put", "employee", "e-99", "--data",
                    json.dumps({"name": "X", "auth": {"TOTP_seed": "123"}}), check=False)
    assert refused.returncode == 1 and "auth.TOTP_seed" in refused.stderr
    assert _count_all(a) == before
