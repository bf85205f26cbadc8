"""The broker objects a site declares on its own broker (SPEC 5), over AMQP with the site's own user.

Topic exchange `federation`; per partner P a quorum queue `federation.inbound.P` bound with routing key P,
dead-lettering through exchange `federation.dead` to quorum queue `federation.dead.P`; and the handshake queue
where link acceptances arrive (routing keys `handshake.<token id>`).
"""

from __future__ import annotations

from pika.adapters.blocking_connection import BlockingChannel

EXCHANGE = "federation"
DEAD_EXCHANGE = "federation.dead"
HANDSHAKE_QUEUE = "federation.handshake"
HANDSHAKE_DEAD = "federation.handshake.dead"
QUORUM = {"x-queue-type": "quorum"}


def inbound_queue(partner: str) -> str:
    return f"federation.inbound.{partner}"


def dead_queue(partner: str) -> str:
    return f"federation.dead.{partner}"


def handshake_key(token_id: str) -> str:
    return f"handshake.{token_id}"


def declare_home(channel: BlockingChannel) -> None:
    channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    channel.exchange_declare(DEAD_EXCHANGE, exchange_type="direct", durable=True)
    # The dotted dead-letter key cannot collide with a partner's key: site ids have no dots.
    channel.queue_declare(HANDSHAKE_QUEUE, durable=True, arguments={
        **QUORUM, "x-dead-letter-exchange": DEAD_EXCHANGE, "x-dead-letter-routing-key": HANDSHAKE_DEAD})
    channel.queue_bind(HANDSHAKE_QUEUE, EXCHANGE, routing_key="handshake.*")
    channel.queue_declare(HANDSHAKE_DEAD, durable=True, arguments=QUORUM)
    channel.queue_bind(HANDSHAKE_DEAD, DEAD_EXCHANGE, routing_key=HANDSHAKE_DEAD)


def declare_partner(channel: BlockingChannel, partner: str) -> None:
    declare_home(channel)
    channel.queue_declare(dead_queue(partner), durable=True, arguments=QUORUM)
    channel.queue_bind(dead_queue(partner), DEAD_EXCHANGE, routing_key=partner)
    channel.queue_declare(inbound_queue(partner), durable=True, arguments={
        **QUORUM, "x-dead-letter-exchange": DEAD_EXCHANGE, "x-dead-letter-routing-key": partner})
    channel.queue_bind(inbound_queue(partner), EXCHANGE, routing_key=partner)
