"""Issue 15, behaviours the reference manual asks for, across two linked sites on the real TLS broker."""

from __future__ import annotations

import signal
import time

import pytest
from sqlalchemy import delete, insert

from federationd import controls
from federationd.schema import bulk_lock
from federationd.store import reading
from tests.support.sites import link
from tests.support.waiting import holds_for, wait_until

pytestmark = pytest.mark.integration


def _ids(site, category, origin=None):
    return {r["id"] for r in site.records(category, origin=origin)}


def _hold_bulk_lock(site):
    with site.engine() as engine, engine.begin() as conn:
        conn.execute(insert(bulk_lock).values(name="bulk", holder="a test import", acquired_at=time.time()))


def _release_bulk_lock(site):
    with site.engine() as engine, engine.begin() as conn:
        conn.execute(delete(bulk_lock))


def test_a_due_snapshot_waits_for_the_bulk_lock_an_operator_relink_does_not(make_site):
    """「CSV読み込み等の処理が実行されていた場合には再度15分待機」: the first snapshot of a new link, due while a
    CSV import holds the lock, waits busy_retry like any send; the operator's explicit `relink` goes at once."""
    a = make_site("alpha")
    b = make_site("beta")
    a.put("employee", "e-1", {"name": "Before the link"})
    _hold_bulk_lock(a)
    link(a, b)
    # the proof that the due snapshot was tried: the daemon says it waits for the lock (5 s of nothing at B
    # proved nothing on a machine where the first try can come later than that)
    wait_until(lambda: f"send to {b.id} waits: a bulk job holds the lock" in a.log_text(), 60,
               what="A's first snapshot deferred for the bulk lock")
    holds_for(lambda: "e-1" not in _ids(b, "employee", a.id), 3, "the first snapshot waiting for the bulk lock")
    a.cli("relink", b.id)
    wait_until(lambda: "e-1" in _ids(b, "employee", a.id), 60, what="the operator's relink despite the lock")
    _release_bulk_lock(a)
    a.put("employee", "e-2", {"name": "After the import"})
    wait_until(lambda: "e-2" in _ids(b, "employee", a.id), 60, what="the next send after the lock is released")


ACCEPT = {"default": {"role": "read"}, "rules": [
    {"position": "manager", "role": "edit"},
    {"department": "sales", "role": "read", "products": ["schedule", "presence"]},
    {"department": "sales-east", "role": "edit", "restrictions": ["no-export"]},
    {"department": "sales", "position": "manager", "role": "admin"},
    {"employee": "e-17", "role": "none"},
    {"department": "support", "role": "edit", "networks": [{"cidr": "192.0.2.0/24", "role": "read"}]},
]}


def _grant(role, products=None, restrictions=(), networks=()):
    return {"role": role, "products": products, "restrictions": list(restrictions), "networks": list(networks)}


# B's accept rules for A's employees, highest priority first: employee, department + position, the lower
# department before the upper one (sales-east is under sales at A), position; the site-wide default apart.
ACCEPT_TABLE = {"default": _grant("read"), "rules": [
    {"level": "employee", "match": "employee e-17", **_grant("none")},
    {"level": "department+position", "match": "department sales + position manager", **_grant("admin")},
    {"level": "department", "match": "department sales-east", **_grant("edit", restrictions=["no-export"])},
    {"level": "department", "match": "department sales", **_grant("read", products=["schedule", "presence"])},
    {"level": "department", "match": "department support",
     **_grant("edit", networks=[{"cidr": "192.0.2.0/24", "role": "read"}])},
    {"level": "position", "match": "position manager", **_grant("edit")},
]}
VISIT = {"employees": [], "departments": ["sales"], "groups": ["visitors"], "positions": []}


@pytest.fixture
def rules_pair(make_site):
    a = make_site("alpha", start=False)
    b = make_site("beta", start=False)
    a.cfg["links"] = {b.id: {"visit": {"departments": ["sales"], "groups": ["visitors"]}}}
    b.cfg["links"] = {a.id: {"accept": ACCEPT}}
    a.write_config()
    b.write_config()
    a.start()
    b.start()
    link(a, b)
    a.put("department", "sales", {"name": "Sales"})
    a.put("department", "sales-east", {"name": "Sales East", "parent": "sales"})
    wait_until(lambda: _ids(b, "department", a.id) == {"sales", "sales-east"}, 60, what="A's departments at B")
    return a, b


def test_access_list_shows_the_effective_accept_table_and_the_visit_rules(rules_pair):
    """「一覧タブをクリックすると、設定している内容を一覧から確認できます」, in the order of
    「設定は以下の優先度で適用されます」."""
    a, b = rules_pair
    listed = b.json("access", "list", a.id)
    assert set(listed) == {"visit", "accept", "partner_accept"}
    assert listed["accept"] == ACCEPT_TABLE
    assert listed["visit"] is None  # B says nothing about which of its employees may visit A: everybody
    assert a.json("access", "list", b.id)["visit"] == VISIT
    text = b.cli("access", "list", a.id).stdout
    lines = [line for line in text.splitlines() if "employee e-17" in line or "sales-east" in line
             or "position manager" in line]
    assert ["e-17" in lines[0], "sales + position manager" in lines[1], "sales-east" in lines[2]] == [True] * 3
    assert "no-export" in text and "192.0.2.0/24" in text and "visit" in text
    missing = b.cli("access", "list", "nosuchsite", check=False)
    assert missing.returncode == 1 and "'nosuchsite'" in missing.stderr and len(missing.stderr.splitlines()) == 1


def test_accept_rules_are_synced_to_the_partner_on_start_and_on_reload(rules_pair):
    """「『訪問』『受入』の設定を保存すると、連携先のサイトと設定の同期」: B tells A its accept rules for A's
    employees; A keeps them and shows them; B's link log and status note say when the sync was confirmed."""
    a, b = rules_pair
    wait_until(lambda: a.json("access", "list", b.id)["partner_accept"] == ACCEPT_TABLE, 60,
               what="B's accept rules for A's employees, at A")
    assert a.json("link", "show", b.id)["partner_accept"] == ACCEPT_TABLE
    # the other direction travels on its own: A's visit rules reach B in A's own send
    wait_until(lambda: b.json("link", "show", a.id)["partner_visit"] == VISIT, 60, what="A's visit rules at B")
    wait_until(lambda: "access settings" in (note := b.link_row(a.id)["note"] or "") and "confirmed" in note, 60,
               what="the sync noted at B as confirmed")
    sent = [row["message"] for row in b.json("log", "--site", a.id, "--direction", "send")]
    assert any("access settings" in message and "confirmed" in message for message in sent), sent
    received = [row["message"] for row in a.json("log", "--site", b.id, "--direction", "receive")]
    assert any("accept rules" in message for message in received), received

    # B changes its accept rules and reloads: A learns it
    b.cfg["links"][a.id]["accept"] = {"default": {"role": "none"}}
    b.write_config()
    b.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: a.json("access", "list", b.id)["partner_accept"] == {"default": _grant("none"), "rules": []},
               60, what="B's changed accept rules at A")


def _controls_waiting(site, partner):
    with site.engine() as engine, reading(engine) as conn:
        return controls.waiting(conn, partner)


def test_fetch_asks_the_partner_to_send_now_rate_limited_and_its_pause_wins(make_site):
    """「登録後すぐにデータ連携したい場合は、手動で取得」: B fetches; A sends what it has pending at once (its quiet
    period is an hour), not while A pauses the link, and at most once per relink interval."""
    a = make_site("alpha", schedule={"quiet_period": "1h", "max_delay": "2h", "busy_retry": "2s"})
    b = make_site("beta")
    link(a, b)
    a.cli("pause", b.id)
    a.put("employee", "e-1", {"name": "Registered just now"})
    assert b.json("fetch", a.id) == {"ok": True, "site": a.id}
    # the path ran: B's fetch is in A's broker (B's broker confirmed it, so it no longer waits at B); A, pausing
    # the link, does not take it in until the resume
    wait_until(lambda: not _controls_waiting(b, a.id), 60, what="B's fetch delivered to A's broker")
    holds_for(lambda: "e-1" not in _ids(b, "employee", a.id), 5, "nothing sent while A pauses the link")
    a.cli("resume", b.id)
    wait_until(lambda: "e-1" in _ids(b, "employee", a.id), 60, what="A's pending change fetched by B")
    granted = [row["message"] for row in a.json("log", "--site", b.id, "--direction", "receive")]
    assert any("asked us to send now: sending" in message for message in granted), granted

    a.put("employee", "e-2", {"name": "Too soon"})
    b.cli("fetch", a.id)
    wait_until(lambda: any("declined" in row["message"] for row in a.json("log", "--site", b.id)), 60,
               what="the second fetch within the interval declined at A")
    holds_for(lambda: "e-2" not in _ids(b, "employee", a.id), 3, "the declined fetch sending nothing")
    refused = b.cli("fetch", "nosuchsite", check=False)
    assert refused.returncode == 1 and "'nosuchsite'" in refused.stderr and len(refused.stderr.splitlines()) == 1
