"""An in-process transport between in-process sites: every ordering a real broker can produce, as a fast test.

Modelled on dramatiq's StubBroker. Each `StubSite` is a real store (a SQLite file, migrated and initialised the
way `federationd init` does it) with a real `Runtime`; sending runs the real `outbox.sender.send`, whose
publisher here appends the encoded message to the receiving site's in-flight list instead of a broker queue;
receiving drives the real `Inbound.handle(Delivery) -> Outcome`. Between the two, a test can deliver the
in-flight messages in any order, deliver one twice, hold one back, or drop it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from federationd import links, sealing, wire
from federationd.broker.cancel import Cancel
from federationd.broker.confirms import ConfirmingPublisher, Window
from federationd.broker.delivery import Delivery, Outcome
from federationd.broker.endpoints import Endpoints
from federationd.broker.provisioning import partner_user
from federationd.config import Config
from federationd.errors import TransportError
from federationd.handlers.dispatch import Inbound
from federationd.outbox import capture, sender
from federationd.runtime import Runtime
from federationd.schema import records
from federationd.store import ensure_site_state, migrate, reading


class Clock:
    """Injected time: starts at a fixed moment and moves only when told."""

    def __init__(self, start: float = 1_790_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class StubPublisher(ConfirmingPublisher):
    """Stands where `broker.publisher.Publisher` does, with the same window of confirms: every publish is
    'confirmed' at once, unless the network has a `broker` (a `StubBroker`) that answers when the send waits."""

    def __init__(self, network: StubNetwork, sender: str, receiver: str) -> None:
        super().__init__()
        self.network = network
        self.sender = sender
        self.site = self.receiver = receiver
        self.cancel: Cancel | None = None

    @property
    def window(self) -> Window:
        return self._window

    def watch(self, cancel: Cancel) -> StubPublisher:
        """As the real publisher: a `clear` from another thread ends the send at its next publish."""
        self.cancel = cancel
        return self

    def __enter__(self) -> StubPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _may_publish(self) -> None:
        if self.cancel is not None:
            self.cancel.check(self.receiver)

    def _where(self) -> str:
        return f"mq.{self.receiver}.test"

    def _send(self, message: wire.Outgoing, routing_key: str, tag: int) -> None:
        for hook in self.network.on_publish:
            hook(self.sender, self.receiver, message)
        if self.cancel is not None:  # cancelled while "waiting for the confirm": the send is abandoned
            self.cancel.check(self.receiver)
        self.network.in_flight[self.receiver].append(Delivery(
            partner=self.sender, routing_key=routing_key, kind=message.kind,
            content_encoding=message.content_encoding, user_id=partner_user(self.receiver, self.sender),
            body=message.body))
        if self.network.broker is None:
            self._window.ack(tag, False)
        else:
            self.network.broker.published(self._window)

    def _pump(self) -> None:
        broker = self.network.broker
        if broker is None:
            raise AssertionError("the stub confirms every publish at once: nothing to wait for")
        before = (self._window.outstanding(), self._window.failure)
        broker.answer(self._window)
        if (self._window.outstanding(), self._window.failure) == before:
            raise AssertionError("the stub broker answered nothing while the send waited for it")


@dataclass
class StubBroker:
    """Plays the broker's publisher confirms: holds them until the send waits, then acks the waiting messages
    in order, all of them or (`one_at_a_time`) only the oldest. `answers` overrides the answer for a delivery
    tag (numbered from 1 in each send): "nack", "return" (unroutable: returned, then acked as a broker does),
    or "lose" (the connection drops before that message is answered). `most_unconfirmed` records the largest
    number of messages that awaited their confirm at once."""

    answers: dict[int, str] = field(default_factory=dict)
    one_at_a_time: bool = False
    most_unconfirmed: int = 0

    def published(self, window: Window) -> None:
        self.most_unconfirmed = max(self.most_unconfirmed, window.unconfirmed)

    def answer(self, window: Window) -> None:
        tags = window.outstanding()
        for tag in tags[:1] if self.one_at_a_time else tags:
            answer = self.answers.get(tag, "ack")
            if answer == "lose":
                window.lost(TransportError(f"connection to the stub broker lost at message {tag}"))
                return
            if answer == "nack":
                window.nack(tag, False)
                continue
            if answer == "return":
                returned = window.message(tag)
                window.returned(returned.message_id if returned is not None else None)
            window.ack(tag, False)


class StubRuntime(Runtime):
    network: StubNetwork

    def publisher(self, endpoint: Endpoints, site: str) -> Any:
        return StubPublisher(self.network, self.home, site)


@dataclass
class StubSite:
    id: str
    path: Path
    rt: StubRuntime
    inbound: Inbound

    def put(self, category: str, record_id: str, data: dict[str, Any]) -> None:
        with self.rt.engine.begin() as conn:
            capture.put(conn, category, record_id, data, now=self.rt.now())

    def delete(self, category: str, record_id: str) -> None:
        with self.rt.engine.begin() as conn:
            capture.delete(conn, category, record_id, now=self.rt.now())

    def records_of(self, origin: str, *, live_only: bool = True) -> dict[tuple[str, str], tuple[int, Any]]:
        """{(category, id): (version, data)} of `origin`'s records held here (live ones unless told)."""
        query = select(records.c.category, records.c.id, records.c.version, records.c.data, records.c.deleted) \
            .where(records.c.origin == origin)
        with reading(self.rt.engine) as conn:
            rows = conn.execute(query).all()
        return {(row.category, row.id): (row.version, row.data) for row in rows if not (live_only and row.deleted)}

    def log_messages(self, site: str) -> list[str]:
        with reading(self.rt.engine) as conn:
            return list(conn.execute(text("SELECT message FROM link_log WHERE site = :s ORDER BY id"),
                                     {"s": site}).scalars())

    def scalar(self, sql: str, **params: Any) -> Any:
        with reading(self.rt.engine) as conn:
            return conn.execute(text(sql), params).scalar()

    def close(self) -> None:
        self.rt.dispose()


@dataclass
class StubNetwork:
    """Sites and the messages in flight to each (the 'queues'); nothing moves unless a test says so."""

    root: Path
    clock: Clock = field(default_factory=Clock)
    sites: dict[str, StubSite] = field(default_factory=dict)
    in_flight: dict[str, list[Delivery]] = field(default_factory=dict)
    outcomes: list[tuple[str, Delivery, Outcome]] = field(default_factory=list)
    # Called before each publish with (sender, receiver, message): to make something happen mid-send.
    on_publish: list[Callable[[str, str, wire.Outgoing], None]] = field(default_factory=list)
    # Plays the partner's broker's confirms (StubBroker); None confirms every publish at once.
    broker: StubBroker | None = None

    def add_site(self, site_id: str, *, batch_records: int = 1000, path: Path | None = None) -> StubSite:
        """A site with a fresh database (or the copy at `path`, see `clone`)."""
        fresh = path is None
        db = path or self.root / f"{site_id}.db"
        config = Config.model_validate({
            "site": {"id": site_id, "company": f"{site_id} Co.", "name": site_id},
            "state_dir": str(self.root / f"{site_id}-state"),
            "database": {"url": f"sqlite:///{db}"},
            "broker": {"url": f"amqps://federationd:x@mq.{site_id}.test:5671/federation",
                       "management_url": f"https://mq.{site_id}.test:15671",
                       "public_url": f"amqps://mq.{site_id}.test:5671/federation"},
            "transport": {"batch_records": batch_records},
        })
        config.state_dir.mkdir(parents=True, exist_ok=True)
        sealing.load_key(config.state_dir, create=True)  # as `init` does: partner credentials are sealed at rest
        rt = StubRuntime(config, self.clock)
        rt.network = self
        if fresh:
            migrate(rt.engine)
            with rt.engine.begin() as conn:
                ensure_site_state(conn, site_id, f"install-{site_id}", now=self.clock())
        site = StubSite(site_id, db, rt, Inbound(rt))
        self.sites[site_id] = site
        self.in_flight.setdefault(site_id, [])
        return site

    def clone(self, site: StubSite, new_path: Path) -> StubSite:
        """A copy of `site`'s database as another instance of the same site (the original stays usable)."""
        site.rt.engine.dispose()
        with sqlite3.connect(site.path) as source, sqlite3.connect(new_path) as target:
            source.backup(target)
        copy = StubNetwork(self.root, self.clock, dict(self.sites), {k: list(v) for k, v in self.in_flight.items()})
        return copy.add_site(site.id, path=new_path)

    def link(self, a: str, b: str, *, state_b: str = links.LINKED) -> None:
        """Link `a` (requester) and `b` (acceptor) as a finished handshake leaves them; `state_b` lets the
        acceptor still await the requester's start."""
        now = self.clock()
        for home, partner, role, state in ((a, b, links.REQUESTER, links.LINKED),
                                           (b, a, links.ACCEPTOR, state_b)):
            with self.sites[home].rt.engine.begin() as conn:
                creds = {"remote_user": partner_user(partner, home), "remote_password": "pw"} \
                    if state == links.LINKED else {}
                links.create(conn, now, site=partner, state=state, role=role, company=partner, name=partner,
                             public_url=f"amqps://mq.{partner}.test:5671/federation",
                             local_user=partner_user(home, partner), **creds)

    def send(self, a: str, b: str) -> sender.SendReport:
        """One real send from `a` to `b`: the messages land in `b`'s in-flight list, in publish order."""
        return sender.send(self.sites[a].rt, b)

    def request_snapshot(self, a: str, b: str) -> None:
        with self.sites[a].rt.engine.begin() as conn:
            links.change(conn, b, snapshot_due=True)

    def take(self, site: str) -> list[Delivery]:
        """Remove and return everything in flight to `site` (to deliver in an order of the test's choosing)."""
        taken, self.in_flight[site] = self.in_flight[site], []
        return taken

    def deliver(self, site: str, messages: Sequence[Delivery]) -> list[Outcome]:
        """Hand `messages`, in this order, to `site`'s real inbound entry point."""
        results = []
        for delivery in messages:
            outcome = self.sites[site].inbound.handle(delivery)
            self.outcomes.append((site, delivery, outcome))
            results.append(outcome)
        return results

    def deliver_all(self, site: str) -> list[Outcome]:
        return self.deliver(site, self.take(site))

    def control(self, origin: str, to: str, kind: str, **fields: Any) -> Delivery:
        """A control message from `origin` as its own code would encode it."""
        message = wire.encode("control", wire.control_body(origin, kind, **fields))
        return Delivery(partner=origin, routing_key=origin, kind="control", content_encoding=None,
                        user_id=partner_user(to, origin), body=message.body)

    def close(self) -> None:
        for site in self.sites.values():
            site.close()


@contextmanager
def network(root: Path) -> Iterator[StubNetwork]:
    net = StubNetwork(root)
    try:
        yield net
    finally:
        net.close()
