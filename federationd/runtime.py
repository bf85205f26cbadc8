"""The objects every verb and the daemon work with, built from one config: database, TLS, brokers.

Building a Runtime opens nothing: the engine connects lazily, brokers are reached only when an operation asks.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from sqlalchemy import Engine, text

from federationd import sealing
from federationd.broker import topology
from federationd.broker.connection import connect, transport_error
from federationd.broker.endpoints import Endpoints
from federationd.broker.provisioning import ManagementAPI
from federationd.broker.publisher import Publisher
from federationd.broker.tls import client_context
from federationd.config import Config
from federationd.identity import public_key_b64, signing_key
from federationd.store import make_engine


@dataclass
class Runtime:
    config: Config
    clock: object = field(default=time.time)
    # Asked before every publish to a partner: the daemon sets it to "do I still hold the active lock?" (fencing).
    may_send: Callable[[], bool] | None = None

    @property
    def home(self) -> str:
        return self.config.site.id

    def now(self) -> float:
        return float(self.clock())  # type: ignore[operator]

    @cached_property
    def engine(self) -> Engine:
        engine = make_engine(self.config.database.url)
        sealing.attach(engine, sealing.load_key(self.config.state_dir))
        return engine

    @cached_property
    def tls(self) -> ssl.SSLContext:
        return client_context(self.config.tls)

    @cached_property
    def own(self) -> Endpoints:
        """Our own broker: one node, or the nodes of its cluster."""
        return Endpoints.parse(self.config.broker.urls)

    @cached_property
    def management(self) -> ManagementAPI:
        return ManagementAPI(self.config.broker.management_url, self.own, self.tls)

    @cached_property
    def public_key(self) -> str:
        return public_key_b64(signing_key(self.config.state_dir))

    def publisher(self, endpoint: Endpoints, site: str) -> Publisher:
        transport = self.config.transport
        return Publisher(endpoint, self.tls, site=site, heartbeat=transport.heartbeat,
                         timeout=transport.connect_timeout, name=f"federationd {self.home} -> {site}",
                         allowed=self.may_send)

    def consumer_connection(self) -> pika.BlockingConnection:
        """A new connection to our own broker for the consumer (its connection factory)."""
        transport = self.config.transport
        return connect(self.own, self.tls, heartbeat=transport.heartbeat, timeout=transport.connect_timeout,
                       name=f"federationd {self.home} consumer", site=f"{self.home} (our own broker)")

    def probe_database(self) -> None:
        """A cheap round trip to our database; raises SQLAlchemyError while it does not answer."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    @contextmanager
    def own_channel(self) -> Iterator[BlockingChannel]:
        """A channel on our own broker (as `broker.url`'s user), for declaring our topology."""
        transport = self.config.transport
        connection = connect(self.own, self.tls, heartbeat=transport.heartbeat, timeout=transport.connect_timeout,
                             name=f"federationd {self.home} admin", site=f"{self.home} (our own broker)")
        try:
            try:
                yield connection.channel()
            except pika.exceptions.AMQPError as exc:
                raise transport_error(exc, f"{self.home} (our own broker)", self.own) from None
        finally:
            if connection.is_open:
                connection.close()

    def declare_partner_queues(self, partner: str) -> None:
        with self.own_channel() as channel:
            topology.declare_partner(channel, partner, self.config.broker.quorum_group_size)

    def declare_home(self) -> None:
        with self.own_channel() as channel:
            topology.declare_home(channel, self.config.broker.quorum_group_size)

    def dispose(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
