"""Broker users no live link or token needs are removed after a daemon starts, but never a user that a `link
accept` running in another process has just created and not yet recorded (found when the test harness ran
`link accept` right after a daemon's start: the partner's credential was deleted and `link start` refused)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from federationd import links
from federationd.broker.provisioning import partner_user
from federationd.revocations import ORPHAN_GRACE_SECONDS, OrphanSweep
from tests.support.stub import StubNetwork


class FakeManagement:
    """Our broker's users, as the management API lists and deletes them."""

    def __init__(self, users: set[str]) -> None:
        self.users_now = set(users)
        self.deleted: list[str] = []
        self.on_list: list[Any] = []

    def users(self) -> list[str]:
        listed = sorted(self.users_now)
        for hook in self.on_list:
            hook()
        return listed

    def delete_user(self, user: str) -> None:
        self.deleted.append(user)
        self.users_now.discard(user)


def test_an_orphan_is_removed_once_seen_twice_and_a_user_being_accepted_is_kept(tmp_path: Path) -> None:
    net = StubNetwork(tmp_path)
    site = net.add_site("site-b")
    accepted = partner_user("site-b", "site-a")  # the user `link accept` creates for its requester
    stale = partner_user("site-b", "gone")  # left behind by a crash: no link explains it
    management = FakeManagement({accepted, stale, "admin-site-b"})
    site.rt.__dict__["management"] = management  # the cached_property, replaced for this site
    sweep = OrphanSweep()

    def accept_records_its_link() -> None:  # the accept commits its link while the daemon reads the broker
        with site.rt.engine.begin() as conn:
            links.create(conn, net.clock(), site="site-a", state=links.AWAITING_START, role=links.ACCEPTOR,
                         company="A", name="A", public_url="amqps://mq.site-a.test:5671/federation",
                         local_user=accepted)

    management.on_list.append(accept_records_its_link)
    assert sweep.look(site.rt) == []  # the first look: both unexplained, nothing removed yet
    management.on_list.clear()
    net.clock.advance(ORPHAN_GRACE_SECONDS - 1)
    assert sweep.look(site.rt) == [] and management.deleted == []  # the grace has not passed
    net.clock.advance(1)
    assert sweep.look(site.rt) == [stale]
    assert management.deleted == [stale] and accepted in management.users_now
    assert sweep.done and sweep.look(site.rt) == []
    net.close()
