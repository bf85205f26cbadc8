"""The broker naming contract and the objects a site declares on its own broker (docs/protocol.md), over AMQP
with the site's own user.

Names (one place for all of them): topic exchange `federation`; per partner P a quorum queue
`federation.inbound.P` bound with routing key P, dead-lettering through exchange `federation.dead` to quorum queue
`federation.dead.P`; the handshake queue where link acceptances arrive (routing keys `handshake.<token id>`);
partner P's user on home site H's broker `fed.H.P`, a link token's one-time user `fed.H.token.<id>`.

Queues are declared with single active consumer (`x-single-active-consumer`). A queue declared by an older
version without it keeps its arguments (re-declaring with different arguments fails with PRECONDITION_FAILED and
would close the channel): existing queues are only checked passively, never re-declared. The active-daemon lock
keeps a second consumer away either way; see docs/decisions.md. On a cluster, a new quorum queue gets
`group_size` members (`x-quorum-initial-group-size`, from `broker.quorum_group_size`); None leaves it to the
broker (every cluster node, up to its limit). An existing queue keeps its members: growing it is the operator's
`rabbitmq-queues grow` (docs/operations.md). Bounds (byte limits, delivery limit) are broker
policies (broker/policies.py), which apply to existing queues too.
"""

from __future__ import annotations

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

EXCHANGE = "federation"
DEAD_EXCHANGE = "federation.dead"
HANDSHAKE_QUEUE = "federation.handshake"
HANDSHAKE_DEAD = "federation.handshake.dead"
INBOUND_PREFIX = "federation.inbound."
DEAD_PREFIX = "federation.dead."
QUORUM: dict[str, object] = {"x-queue-type": "quorum"}
SINGLE_ACTIVE: dict[str, object] = {"x-single-active-consumer": True}
# A message moved back from a dead-letter queue by `federationd redrive` is published by our own user (the broker
# checks `user_id`), so the partner user the broker validated at the first publish travels in this header.
REDRIVEN_USER_HEADER = "x-federationd-redriven-user"


def inbound_queue(partner: str) -> str:
    return f"{INBOUND_PREFIX}{partner}"


def dead_queue(partner: str) -> str:
    return f"{DEAD_PREFIX}{partner}"


def handshake_key(token_id: str) -> str:
    return f"handshake.{token_id}"


def partner_user(home: str, partner: str) -> str:
    """Partner `partner`'s broker user on home site `home`'s broker."""
    return f"fed.{home}.{partner}"


def token_user(home: str, token_id: str) -> str:
    """The one-time user of link token `token_id` on `home`'s broker (may publish one acceptance)."""
    return f"fed.{home}.token.{token_id}"


def quorum(group_size: int | None = None) -> dict[str, object]:
    """The arguments of a quorum queue with `group_size` members (None: the broker's default)."""
    return QUORUM if group_size is None else {**QUORUM, "x-quorum-initial-group-size": group_size}


def declare_home(channel: BlockingChannel, group_size: int | None = None) -> None:
    channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    channel.exchange_declare(DEAD_EXCHANGE, exchange_type="direct", durable=True)
    # The dotted dead-letter key cannot collide with a partner's key: site ids have no dots.
    _declare(channel, HANDSHAKE_QUEUE, {**quorum(group_size), **SINGLE_ACTIVE,
                                        "x-dead-letter-exchange": DEAD_EXCHANGE,
                                        "x-dead-letter-routing-key": HANDSHAKE_DEAD})
    channel.queue_bind(HANDSHAKE_QUEUE, EXCHANGE, routing_key="handshake.*")
    _declare(channel, HANDSHAKE_DEAD, quorum(group_size))
    channel.queue_bind(HANDSHAKE_DEAD, DEAD_EXCHANGE, routing_key=HANDSHAKE_DEAD)


def declare_partner(channel: BlockingChannel, partner: str, group_size: int | None = None) -> None:
    declare_home(channel, group_size)
    _declare(channel, dead_queue(partner), quorum(group_size))
    channel.queue_bind(dead_queue(partner), DEAD_EXCHANGE, routing_key=partner)
    _declare(channel, inbound_queue(partner), {**quorum(group_size), **SINGLE_ACTIVE,
                                               "x-dead-letter-exchange": DEAD_EXCHANGE,
                                               "x-dead-letter-routing-key": partner})
    channel.queue_bind(inbound_queue(partner), EXCHANGE, routing_key=partner)


def _declare(channel: BlockingChannel, queue: str, arguments: dict[str, object]) -> None:
    """Declare `queue` unless it exists (checked on a throwaway channel: a failed passive declare closes it)."""
    if not _exists(channel, queue):
        channel.queue_declare(queue, durable=True, arguments=arguments)


def _exists(channel: BlockingChannel, queue: str) -> bool:
    probe = channel.connection.channel()
    try:
        probe.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return False
        raise
    else:
        return True
    finally:
        if probe.is_open:
            probe.close()
