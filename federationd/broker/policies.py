"""Broker-side bounds, as policies on our own vhost (applied by the daemon at start through the management API).

Policies, not queue arguments: a policy applies to queues that exist already (declared by an older version)
without re-declaring them, and changing a bound never needs a queue deleted. RabbitMQ applies one policy per
queue (the highest priority), so each pattern carries every key its queues need.

- Inbound and handshake queues: at most `INBOUND_MAX_BYTES`; past it the broker refuses (nacks) new publishes
  (`overflow: reject-publish`): the sender's publish fails, it keeps the batch pending and retries with backoff,
  nothing is lost. A `delivery-limit` our own behaviour never reaches (we never spin a message through requeues:
  a message comes back only when a connection drops or our database fails, a few times per outage), so only a
  message that crashes the daemon over and over ends in the dead-letter queue.
- Dead-letter queues: at most `DEAD_MAX_BYTES`; the oldest dead letters are dropped first (`drop-head`).
- On a cluster, a new queue's leader goes to the node that leads the fewest (`queue-leader-locator: balanced`,
  RabbitMQ 3.10 and later) rather than to the node our connection happens to be on, so that the inbound queues
  of many partners (and of many sites on one provider's cluster) spread their leaders over the nodes. A single
  node ignores it.
"""

from __future__ import annotations

from typing import Any, Protocol

from federationd.broker.topology import DEAD_PREFIX, HANDSHAKE_DEAD, HANDSHAKE_QUEUE, INBOUND_PREFIX

INBOUND_MAX_BYTES = 256 * 1024 * 1024
DEAD_MAX_BYTES = 64 * 1024 * 1024
DELIVERY_LIMIT = 1000
LEADER_LOCATOR = "balanced"
PRIORITY = 10  # above an operator's catch-all policy at 0; an operator who wants other bounds uses a higher one


class PolicyAPI(Protocol):
    def put_policy(self, name: str, pattern: str, definition: dict[str, Any], priority: int) -> None: ...


def _literal(name: str) -> str:
    return name.replace(".", r"\.")


POLICIES: dict[str, tuple[str, dict[str, Any]]] = {
    "federationd-inbound": (
        f"^({_literal(INBOUND_PREFIX)}[^.]+|{_literal(HANDSHAKE_QUEUE)})$",
        {"max-length-bytes": INBOUND_MAX_BYTES, "overflow": "reject-publish", "delivery-limit": DELIVERY_LIMIT,
         "queue-leader-locator": LEADER_LOCATOR}),
    "federationd-dead": (
        f"^({_literal(DEAD_PREFIX)}[^.]+|{_literal(HANDSHAKE_DEAD)})$",
        {"max-length-bytes": DEAD_MAX_BYTES, "overflow": "drop-head", "queue-leader-locator": LEADER_LOCATOR}),
}


def apply(api: PolicyAPI) -> None:
    """Create or update every policy (idempotent); raises TransportError if the management API refuses."""
    for name, (pattern, definition) in POLICIES.items():
        api.put_policy(name, pattern, definition, PRIORITY)
