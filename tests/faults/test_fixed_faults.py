"""Faults once known and now fixed, kept as regression tests on the real broker: snapshot parts out of order, and
the consumer after a database outage outside the apply. A fault found but not fixed yet goes here first, marked
`xfail(strict=True)` with its name, so that the fix turns the suite red until the marker goes."""

from __future__ import annotations

import pytest

from federationd import wire
from tests.faults.common import (
    change,
    confirming_channel,
    connect_as,
    count_records,
    credential_of,
    epoch_of,
    link,
    publish,
    raw,
)
from tests.support.pg import allow_connections
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def test_snapshot_parts_out_of_order_are_applied(make_site, broker):
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    wait_until(lambda: count_records(a, b.id, "company") == 1, 60, what="B's snapshot at A")
    user, password = credential_of(b, a.id)
    epoch = epoch_of(b) + 1  # a newer snapshot of B's, as B's next relink would send
    header = {"id": "out-of-order", "categories": ["employee"]}
    part2 = wire.changes_body(b.id, epoch, [change(b.id, "late-part", 2)],
                              {**header, "part": 2, "final": True, "counts": {"employee": 2}})
    part1 = wire.changes_body(b.id, epoch, [change(b.id, "first-part", 1)], {**header, "part": 1, "final": False})
    connection = connect_as(broker, a.id, user, password)
    try:
        channel = confirming_channel(connection)
        publish(channel, b.id, raw(part2), kind="snapshot", user_id=user)  # the broker hands them over reversed
        publish(channel, b.id, raw(part1), kind="snapshot", user_id=user)
    finally:
        connection.close()
    wait_until(lambda: {r["id"] for r in a.records("employee", origin=b.id)} == {"first-part", "late-part"}, 60,
               what="both parts of B's snapshot applied at A")
    wait_until(lambda: broker.api("GET", f"/api/queues/{a.id}/federation.dead.{b.id}").get("messages") == 0, 60,
               what="the dead-letter queue's figures, showing it empty")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_consuming_resumes_after_the_database_was_away(make_site):
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    b.put("employee", "before", {"name": "Before the outage"})
    wait_until(lambda: count_records(a, b.id, "employee") == 1, 60, what="B's change at A")
    seen = len(a.log_text())
    allow_connections(a.pg_name, False)  # A's database goes away (the server stays up), then comes back
    try:  # long enough for the consumer's once-a-second look at the links: PostgreSQL's refusal logged 3 times
        wait_until(lambda: "our database" in a.log_text()[seen:] and "unavailable" in a.log_text()[seen:], 90,
                   what="A's daemon meeting its database away (an outage is logged once, then once a minute)")
    finally:
        allow_connections(a.pg_name, True)
    assert a.proc.poll() is None, "A's daemon exited"
    b.put("employee", "after", {"name": "After the outage"})
    wait_until(lambda: count_records(a, b.id, "employee") == 2, 90, what="A consuming again after the outage")
