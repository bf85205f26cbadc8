"""A site with more than one partner: its changes reach every partner, it never relays one partner's records to
another, and its outbox keeps every change until every live partner was sent it (housekeeping, docs/design.md)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from federationd import linklog
from federationd.schema import outbox, records
from federationd.store import reading
from tests.support.sites import Site, link
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def _ids(site: Site, category: str, origin: str, include_deleted: bool = False) -> set[str]:
    return {r["id"] for r in site.records(category, origin=origin, include_deleted=include_deleted)}


def _all_of(site: Site, origin: str) -> set[tuple[str, str]]:
    """Every record of `origin` the site holds, tombstones included, read from its database."""
    with site.engine() as engine, reading(engine) as conn:
        return {(row.category, row.id) for row in conn.execute(
            select(records.c.category, records.c.id).where(records.c.origin == origin))}


def test_a_hub_sends_to_both_partners_and_never_relays_one_to_the_other(make_site):
    a, b, c = make_site("alpha"), make_site("beta"), make_site("gamma")
    link(a, b)
    a.put("employee", "a1", {"name": "A's employee"})
    a.put("department", "a-sales", {"name": "A's sales"})
    wait_until(lambda: _ids(b, "employee", a.id) == {"a1"} and _ids(b, "department", a.id) == {"a-sales"}, 60,
               what="A's records at B")
    link(b, c)  # B's initial snapshot to C is made while B holds A's records
    b.put("employee", "b1", {"name": "B's employee"})
    a.put("employee", "a2", {"name": "A's second employee"})  # while B has two partners
    wait_until(lambda: _ids(a, "employee", b.id) == {"b1"} and _ids(c, "employee", b.id) == {"b1"}
               and "a2" in _ids(b, "employee", a.id), 60, what="B's change at both partners, A's second at B")
    b.put("employee", "b2", {"name": "B's second employee"})  # sent to C after B applied A's a2
    wait_until(lambda: _ids(c, "employee", b.id) == {"b1", "b2"}, 60, what="B's second change at C")

    # C holds nothing of A's: not as records, not as tombstones, and B never tried (C refused nothing of B's)
    assert _all_of(c, a.id) == set()
    assert c.metric("federationd_rejected_records_total", site=b.id, reason="foreign_origin", default=None) is None
    assert c.metric("federationd_rejected_records_total", site=b.id, reason="origin_mismatch", default=None) is None
    # and C counted only B's own records from B: its company record (the snapshot) and b1, b2
    received = {cat: c.metric("federationd_received_records_total", site=b.id, category=cat, default=0.0)
                for cat in ("company", "employee", "department")}
    assert received == {"company": 1.0, "employee": 2.0, "department": 0.0}, received
    assert _ids(a, "employee", b.id) == {"b1", "b2"} and _all_of(a, c.id) == set()


def _outbox_ids(site: Site) -> set[str]:
    with site.engine() as engine, reading(engine) as conn:
        return set(conn.execute(select(outbox.c.record_id)).scalars())


def _housekeeping_once_more(site: Site) -> None:
    """Restart the daemon (housekeeping runs on its first tick) with an expired link-log row in the database: the
    log line that says it was purged proves the housekeeping pass started. The outbox clean-up is the next step of
    that pass, so a caller waits for its outcome rather than reading the outbox at once."""
    site.stop()
    runs = site.log_text().count("purged 1 link log row(s)")
    with site.engine() as engine, engine.begin() as conn:
        linklog.write(conn, 1.0, "nobody", "send", "a row from 1970, past any retention")
    site.start()
    wait_until(lambda: site.log_text().count("purged 1 link log row(s)") > runs, 60,
               what=f"{site.id}'s housekeeping pass")


def test_outbox_clean_up_keeps_what_a_live_partner_was_not_sent(make_site):
    a, b, c = make_site("alpha"), make_site("beta"), make_site("gamma")
    link(a, b)
    link(a, c)
    a.put("employee", "x1", {"name": "Sent to both"})
    wait_until(lambda: "x1" in _ids(b, "employee", a.id) and "x1" in _ids(c, "employee", a.id), 60,
               what="x1 at B and C")
    a.cli("pause", c.id)  # A sends nothing to C for now
    for n in (2, 3, 4):
        a.put("employee", f"x{n}", {"name": "Sent to B only"})
    wait_until(lambda: {"x2", "x3", "x4"} <= _ids(b, "employee", a.id), 60, what="x2..x4 at B")
    assert a.link_row(c.id)["pending_records"] == 3

    _housekeeping_once_more(a)
    wait_until(lambda: "x1" not in _outbox_ids(a), 30, what="x1 trimmed from A's outbox (both were sent it)")
    assert _outbox_ids(a) == {"x2", "x3", "x4"}  # the same pass kept what C was not sent yet

    a.cli("resume", c.id)
    wait_until(lambda: {"x2", "x3", "x4"} <= _ids(c, "employee", a.id), 60, what="x2..x4 at C after resume")
    wait_until(lambda: a.link_row(c.id)["pending_records"] == 0, 30, what="nothing pending for C")
    _housekeeping_once_more(a)
    wait_until(lambda: _outbox_ids(a) == set(), 30, what="A's outbox empty once both partners were sent it all")
