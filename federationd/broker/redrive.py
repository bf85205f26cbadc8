"""Moving dead letters back: `federationd redrive SITE` takes the messages waiting in `federation.dead.SITE`
and publishes each to the partner's inbound queue again, then acks the dead copy (publisher confirms first: a
message is never in neither queue; a crash in between leaves it in both, and the receiver skips the duplicate).

The copy is published by our own user through the `federation` exchange with the partner's routing key. The
broker checks `user_id` against the publishing user, so the copy carries ours, and the partner user that the
broker validated at the first publish travels in a header the consumer trusts only on messages from our own
user (topology.REDRIVEN_USER_HEADER). Only as many messages as the queue held at the start are moved: a message
that is dead-lettered again meanwhile waits for the next redrive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from federationd.broker import topology
from federationd.errors import TransportError


@dataclass
class Redriven:
    site: str
    waiting: int  # dead letters found
    moved: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # why they were dead-lettered (x-death reason)

    def as_json(self, dry_run: bool) -> dict[str, Any]:
        return {"ok": True, "site": self.site, "dead_letters": self.waiting, "moved": self.moved,
                "dry_run": dry_run, "reasons": self.reasons}


def redrive(channel: BlockingChannel, site: str, *, own_user: str, dry_run: bool) -> Redriven:
    """Move `site`'s dead letters back (`own_user`: the user `channel` is authenticated as)."""
    queue = topology.dead_queue(site)
    waiting = channel.queue_declare(queue, passive=True).method.message_count
    result = Redriven(site, waiting)
    if dry_run or not waiting:
        return result
    channel.confirm_delivery()
    for _ in range(waiting):
        method, properties, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            break
        headers = dict(properties.headers or {})
        reason = _reason(headers)
        result.reasons[reason] = result.reasons.get(reason, 0) + 1
        if properties.user_id and topology.REDRIVEN_USER_HEADER not in headers:
            headers[topology.REDRIVEN_USER_HEADER] = properties.user_id
        copy = pika.BasicProperties(
            content_type=properties.content_type, content_encoding=properties.content_encoding,
            delivery_mode=2, type=properties.type, message_id=properties.message_id, app_id=properties.app_id,
            timestamp=properties.timestamp, headers=headers, user_id=own_user)
        try:
            channel.basic_publish(topology.EXCHANGE, site, body, copy, mandatory=True)
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
            channel.basic_nack(method.delivery_tag, requeue=True)
            raise TransportError(f"redrive {site}: our broker refused the copy ({type(exc).__name__}); "
                                 f"{result.moved} moved, the rest stays in {queue}") from None
        channel.basic_ack(method.delivery_tag)
        result.moved += 1
    return result


def _reason(headers: dict[str, Any]) -> str:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        reason = deaths[0].get("reason", "unknown")
        return reason.decode() if isinstance(reason, bytes) else str(reason)
    return "unknown"
