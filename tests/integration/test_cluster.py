"""Both sites on a three-node RabbitMQ cluster (quorum queues replicated on every node): A streams changes to B,
the node that leads B's inbound queue stops mid-stream, sends go on through the other nodes and nothing is lost
or applied out of order; the node starts again and rejoins.

The cluster is booted once for this module (tests/support/broker.py TestCluster): only these tests pay for it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from federationd.broker.topology import dead_queue, inbound_queue
from federationd.outbox import capture
from tests.faults.common import converge
from tests.support.broker import BrokerUnavailable, TestCluster, ensure_broker_binary
from tests.support.pg import pg_reachable
from tests.support.pki import PKI
from tests.support.sites import Site, link, site_maker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

# Sends resume through the surviving nodes within this bound after a node stops (election of a new queue leader,
# reconnection to the next node, the sender's first backoff); the figure measured is in docs/scaling.md.
RESUME_SECONDS = 90
# Sends about once a second while A keeps writing (max_delay caps the quiet period under constant churn).
STREAMING = {"schedule": {"quiet_period": "1s", "max_delay": "1s", "busy_retry": "1s"}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, pki: PKI) -> Iterator[TestCluster]:
    try:
        ensure_broker_binary()
    except BrokerUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no rabbitmq-server: {exc} (required in CI)")
        pytest.skip(f"no rabbitmq-server: {exc}")
    nodes = TestCluster(tmp_path_factory.mktemp("cluster"), pki, size=3)
    nodes.start()
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def on_cluster(tmp_path: Path, cluster: TestCluster) -> Iterator[Callable[..., Site]]:
    """`on_cluster(name, backend, start=True, **config)`: a site whose broker.url and public_url list the three
    nodes. One scenario covers both backends (A on SQLite, B on PostgreSQL) rather than being parametrized: two
    parametrized runs could land on two xdist workers, each booting a cluster of its own."""
    if not pg_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (required in CI)")
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    with contextlib.ExitStack() as stack:
        makers = {backend: stack.enter_context(site_maker(tmp_path / backend, backend))
                  for backend in ("sqlite", "postgresql")}

        def make(name: str, backend: str, **config: object) -> Site:
            return makers[backend](cluster, name, **config)
        yield make


def _received(b: Site, origin: str) -> float:
    return float(b.metric("federationd_received_records_total", site=origin, category="employee", default=0.0))


class _Stream(threading.Thread):
    """Host-API writes at A, a burst every 0.2 s: new employees, and new versions of earlier ones (so that a
    batch applied twice, or an older one after a newer, would leave a stale record at B)."""

    def __init__(self, site: Site) -> None:
        super().__init__(name="stream", daemon=True)
        self.site, self.halt, self.error, self.ticks = site, threading.Event(), None, 0

    def run(self) -> None:
        try:
            with self.site.engine() as engine:
                while not self.halt.wait(0.2):
                    self.ticks += 1
                    rows = [(f"e{(self.ticks * 7 + k) % (self.ticks * 3 + 10)}", {"name": f"E {k}", "rev": self.ticks})
                            for k in range(10)]
                    with engine.begin() as conn:
                        capture.put_many(conn, "employee", list(dict(rows).items()))
        except Exception as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> None:
        self.halt.set()
        self.join(60)
        assert self.error is None, f"the stream failed: {self.error!r}"


@pytest.mark.timeout(900)  # a three-node boot takes a minute on a quiet machine, several on a loaded one
def test_a_node_stop_mid_stream_loses_nothing_and_the_node_rejoins(cluster, on_cluster):
    a, b = on_cluster("ca", "sqlite", **STREAMING), on_cluster("cb", "postgresql", **STREAMING)
    link(a, b)

    # Each side advertised every node of its cluster, and the partner stored the list.
    assert a.json("link", "show", b.id)["public_url"] == cluster.public_url(b.id)
    assert b.json("link", "show", a.id)["public_url"] == cluster.public_url(a.id)
    queue = inbound_queue(a.id)
    everyone = sorted(node.node for node in cluster.nodes)
    assert cluster.queue_members(b.id, queue) == everyone  # replicated on every node

    writer = _Stream(a)
    writer.start()
    try:
        wait_until(lambda: _received(b, a.id) >= 100, 120, what="A's stream arriving at B")
        leader = cluster.queue_leader(b.id, queue)
        leader.stop()
        survivors = [node for node in cluster.nodes if node is not leader]
        cluster.wait_running(survivors)
        after_stop = _received(b, a.id)
        # Sends go on through the other two nodes: B applies more of A's stream, from a newly elected leader.
        wait_until(lambda: _received(b, a.id) >= after_stop + 100, RESUME_SECONDS,
                   what="A's stream at B again with the leader node stopped")
        assert cluster.queue_leader(b.id, queue) in survivors
    finally:
        writer.stop()

    leader.start()
    cluster.wait_running(cluster.nodes)  # it rejoined the cluster
    wait_until(lambda: sorted(cluster.api("GET", f"/api/queues/{b.id}/{queue}").get("online", [])) == everyone, 60,
               what=f"{leader.node} back as a member of {queue}")

    # `link change-url` with several URLs: B stores the new list of A's nodes (here: the same nodes, reordered).
    moved = list(reversed(cluster.public_url(a.id)))
    assert a.json("link", "change-url", *moved)["public_url"] == moved
    wait_until(lambda: b.json("link", "show", a.id)["public_url"] == moved, 60, what="A's new node list at B")

    # Record by record: nothing lost, nothing stale (an older version applied over a newer one), nothing extra.
    diff = converge(a, b, timeout=180, categories=("employee",))
    assert diff.clean, diff
    assert diff.compared > 0
    assert cluster.api("GET", f"/api/queues/{b.id}/{dead_queue(a.id)}").get("messages", 0) == 0  # nothing refused
