"""What the transport hands to the inbound side, and what it gets back.

The transport (`broker/`) owns these two types so that it never imports the handlers: the consumer is given a
`handle(Delivery) -> Outcome` function and acts on the outcome.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.Enum):
    """What the consumer does with a delivery once the handler returned."""

    ACK = "ack"  # applied (or a harmless duplicate): acked after the commit
    REJECT = "reject"  # malformed, forged or against the rules: to the dead-letter queue, never retried by itself
    BACK_OFF = "back_off"  # our own side failed (the database is down): give the message back and stop consuming
    # until the database answers again; never a requeue loop


@dataclass(frozen=True)
class Delivery:
    """One message as received: the queue's partner (None for the handshake queue) and the message itself."""

    partner: str | None
    routing_key: str
    kind: str | None
    content_encoding: str | None
    user_id: str | None
    body: bytes
