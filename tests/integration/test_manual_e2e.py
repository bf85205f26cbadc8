"""The manual's behaviours end to end on the real TLS broker, where they were unit tests only or partly covered:

- `link reject`: both sides `stopped`, the acceptor told, and the pair links again (and then replicates);
- the 7-day rolling job: a recurring schedule's occurrences window moves past 370 days and the partner gets it;
- the relink window: after a relink, schedules dated before the 1st of the previous month stay at the receiver,
  later ones are replaced by the sender's snapshot;
- three sites linked pairwise: no record is relayed from A through B to C.

One pair serves the first three scenarios (it is the pair that was rejected, then linked again).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from federationd.categories import RECURRENCE_WINDOW, window_start
from federationd.outbox import capture
from federationd.schema import records, site_state
from tests.support.broker import TestBroker
from tests.support.sites import Site, link, site_maker
from tests.support.waiting import wait_until

# The pair's setup (two sites, a reject, a link) counts against the first test's budget on a loaded machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

DAY = 86400.0


@dataclass
class Pair:
    a: Site
    b: Site
    make: Callable[..., Site]
    rejected: dict[str, Any]  # `link reject --json` at A
    a_after_reject: str | None  # A's link state right after the reject
    b_told: dict[str, Any]  # B's status row once told


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, broker: TestBroker, backend: str) -> Iterator[Pair]:
    """A and B: B accepted A's token, A rejected it, then the two linked again."""
    with site_maker(Path(tmp_path_factory.mktemp("manual-e2e")), backend) as make:
        a, b = make(broker, "alpha"), make(broker, "beta")
        issued = a.json("link", "request")
        b.json("link", "accept", issued["token"], "--code", issued["code"])
        wait_until(lambda: a.link_state(b.id) == "awaiting_start", 60, what="A sees B's acceptance")
        rejected = a.json("link", "reject", b.id)
        a_after = a.link_state(b.id)
        wait_until(lambda: b.link_state(a.id) == "stopped", 60, what="B told of the rejection")
        told = b.link_row(a.id)
        assert told is not None
        link(a, b)
        yield Pair(a, b, lambda name: make(broker, name), rejected, a_after, told)


def _live(site: Site, category: str, origin: str) -> dict[str, Any]:
    """{id: data} of the live records of `origin` the site holds, read in-process (polling through the CLI costs
    a process start per read, which a loaded machine turns into minutes)."""
    with site.engine() as engine, engine.connect() as conn:
        rows = conn.execute(select(records.c.id, records.c.data).where(
            records.c.origin == origin, records.c.category == category, records.c.deleted.is_(False)))
        return {row.id: json.loads(row.data) for row in rows}


def _today() -> date:
    return datetime.now(UTC).date()


def _at(day: date, hour: int = 10) -> str:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).isoformat()


def _schedule(title: str, day: date) -> dict[str, Any]:
    return {"title": title, "start": _at(day), "end": _at(day, 11)}


# -- link reject ---------------------------------------------------------------------------------------------------
def test_link_reject_stops_both_tells_the_acceptor_and_the_pair_links_again(pair: Pair) -> None:
    a, b = pair.a, pair.b
    assert {key: pair.rejected.get(key) for key in ("ok", "site", "state", "told")} == {
        "ok": True, "site": b.id, "state": "stopped", "told": "the partner was told"}, pair.rejected
    assert pair.a_after_reject == "stopped"
    assert pair.b_told["state"] == "stopped" and "rejected" in (pair.b_told["note"] or ""), pair.b_told
    # linked again: both ways
    assert a.link_state(b.id) == "linked" and b.link_state(a.id) == "linked"
    a.put("employee", "after-reject-a", {"name": "From A"})
    b.put("employee", "after-reject-b", {"name": "From B"})
    wait_until(lambda: "after-reject-a" in _live(b, "employee", a.id)
               and "after-reject-b" in _live(a, "employee", b.id), 60, what="records both ways after the relink")
    assert "after-reject-a" in {r["id"] for r in b.records("employee", origin=a.id)}  # as the operator sees it


# -- the rolling job -----------------------------------------------------------------------------------------------
def test_rolling_job_moves_a_recurring_schedule_window_and_the_partner_gets_it(pair: Pair) -> None:
    """The schedule was written eight days ago (the write path's clock injected): its window ends 362 days from
    today. With the last roll eight days ago as well, the daemon's housekeeping rolls it at start."""
    a, b = pair.a, pair.b
    now = datetime.now(UTC).timestamp()
    weekly = {"title": "Weekly meeting", "start": _at(_today() - timedelta(days=14)),
              "end": _at(_today() - timedelta(days=14), 11), "recurrence": "FREQ=DAILY"}
    with a.engine() as engine, engine.begin() as conn:
        capture.put(conn, "schedule", "rolling-weekly", weekly, now=now - 8 * DAY)
        conn.execute(update(site_state).where(site_state.c.id == 1).values(rolled_at=now))  # not due yet
    old_horizon = (_today() - timedelta(days=8) + RECURRENCE_WINDOW).isoformat()

    def last_at_b() -> str:
        occurrences = _live(b, "schedule", a.id).get("rolling-weekly", {}).get("occurrences") or [{"start": ""}]
        return str(max(o["start"] for o in occurrences))[:10]

    wait_until(lambda: last_at_b() == old_horizon, 60, what="B holding the schedule as written 8 days ago")

    a.stop()
    with a.engine() as engine, engine.begin() as conn:
        conn.execute(update(site_state).where(site_state.c.id == 1).values(rolled_at=now - 8 * DAY))
    a.start()  # housekeeping runs on the first tick
    new_horizon = (_today() + RECURRENCE_WINDOW).isoformat()
    wait_until(lambda: last_at_b() == new_horizon, 60, what="the rolled window (370 days from today) at B")
    assert "rolling job: moved the occurrences window of 1 recurring schedule(s)" in a.log_text()
    with a.engine() as engine, engine.connect() as conn:
        rolled_at = conn.execute(select(site_state.c.rolled_at).where(site_state.c.id == 1)).scalar_one()
    assert rolled_at > now - DAY  # the next roll is a week from now


# -- the relink window ---------------------------------------------------------------------------------------------
def test_relink_keeps_schedules_before_the_window_and_replaces_later_ones(pair: Pair) -> None:
    a, b = pair.a, pair.b
    since = window_start(_today())
    old_day, recent_day = since - timedelta(days=20), _today() + timedelta(days=5)
    for record_id, day in (("old-kept", old_day), ("old-gone-at-a", old_day),
                           ("recent-kept", recent_day), ("recent-gone-at-a", recent_day)):
        a.put("schedule", record_id, _schedule(f"{record_id} as sent", day))
    wait_until(lambda: {"old-kept", "old-gone-at-a", "recent-kept", "recent-gone-at-a"}
               <= set(_live(b, "schedule", a.id)), 60, what="the four schedules at B")

    # A's database loses some and holds older content of others, as a restore from an older backup leaves it
    with a.engine() as engine, engine.begin() as conn:
        for record_id in ("old-kept", "recent-kept"):
            data = _schedule(f"{record_id} restored", old_day if record_id.startswith("old") else recent_day)
            conn.execute(update(records).where(records.c.origin == a.id, records.c.category == "schedule",
                                               records.c.id == record_id).values(data=json.dumps(data)))
        conn.execute(delete(records).where(records.c.origin == a.id, records.c.category == "schedule",
                                           records.c.id.in_(["old-gone-at-a", "recent-gone-at-a"])))
    a.cli("relink", b.id)
    # the data parts bring the restored content; the final part completes the snapshot and only then sweeps
    # what A no longer holds: wait for both
    held = wait_until(lambda: (now := _live(b, "schedule", a.id)).get("recent-kept", {}).get("title")
                      == "recent-kept restored" and "recent-gone-at-a" not in now and now, 90,
                      what="the relink's snapshot applied and complete at B")
    # later than the window's start: replaced by what A holds now
    assert "recent-gone-at-a" not in held, held
    # before the 1st of the previous month: never resent, so never replaced nor removed
    assert held["old-kept"]["title"] == "old-kept as sent", held["old-kept"]
    assert held["old-gone-at-a"]["title"] == "old-gone-at-a as sent", held


# -- three sites, pairwise -----------------------------------------------------------------------------------------
def test_three_sites_linked_pairwise_never_relay(pair: Pair) -> None:
    a, b = pair.a, pair.b
    c = pair.make("gamma")
    link(a, c)
    link(b, c)
    a.put("employee", "relay-a", {"name": "A's own"})
    b.put("employee", "relay-b", {"name": "B's own"})
    c.put("employee", "relay-c", {"name": "C's own"})
    wait_until(lambda: "relay-a" in _live(b, "employee", a.id) and "relay-a" in _live(c, "employee", a.id)
               and "relay-b" in _live(a, "employee", b.id) and "relay-b" in _live(c, "employee", b.id)
               and "relay-c" in _live(a, "employee", c.id) and "relay-c" in _live(b, "employee", c.id), 90,
               what="each site's record at both its partners")
    for receiver, sender in ((a, b), (a, c), (b, a), (b, c), (c, a), (c, b)):
        for reason in ("foreign_origin", "origin_mismatch"):
            assert receiver.metric("federationd_rejected_records_total", site=sender.id, reason=reason,
                                   default=None) is None, (receiver.id, sender.id, reason)
    # C received from each partner that partner's own employees only (its initial snapshot and the change),
    # though each partner holds the other's employees too: none came to C through a third site
    for sender, other in ((a, b), (b, a)):
        assert _live(sender, "employee", other.id), f"{sender.id} holds {other.id}'s employees"
        own = set(_live(sender, "employee", sender.id))
        assert set(_live(c, "employee", sender.id)) == own
        received = c.metric("federationd_received_records_total", site=sender.id, category="employee", default=0.0)
        assert received == float(len(own)), (sender.id, received, own)
