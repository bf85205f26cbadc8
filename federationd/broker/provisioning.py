"""Partner users on our own broker, through the RabbitMQ management HTTP API over TLS.

A partner P gets user `fed.H.P` on home site H's broker: no configure, no read, write only to exchange
`federation`, and a topic permission to publish only routing key P. A link token's one-time user may publish
only `handshake.<token id>`. Passwords are random per user and never stored by us.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from federationd.broker.endpoints import Endpoints
from federationd.broker.topology import DEAD_PREFIX, EXCHANGE, INBOUND_PREFIX, partner_user, token_user
from federationd.errors import TransportError

log = logging.getLogger(__name__)

HTTP_TIMEOUT_SECONDS = 15.0
DEPTHS_TIMEOUT_SECONDS = 5.0  # read by the daemon's main loop: a hung API must not hold it long


__all__ = ["ManagementAPI", "QueueDepths", "new_password", "partner_user", "token_user"]  # names: topology.py

# A partner's user publishes from one connection at a time (one send per partner), plus its operator's `link`
# verbs; spare ones for a reconnect racing the broker's notice of the old one, and for a closed connection the
# broker has not let go of yet (on a loaded machine, closed publisher connections were seen held for up to a
# heartbeat interval, 30 s: with 3 allowed, the fourth send within that time was refused). One channel each.
PARTNER_MAX_CONNECTIONS = 6
PARTNER_MAX_CHANNELS = 12


def new_password() -> str:
    return secrets.token_urlsafe(32)


class ManagementAPI:
    """The few management API calls federationd needs, as management_url's user (else `broker.url`'s)."""

    def __init__(self, base_url: str, own: Endpoints, context: ssl.SSLContext) -> None:
        # Provisioning has its own credentials (user:password@ in management_url); url's only when none given.
        parts = urlsplit(base_url)
        user, password = (unquote(parts.username), unquote(parts.password or "")) if parts.username \
            else (own.user, own.password)
        self._base = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl().rstrip("/")
        self._vhost = own.vhost
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._context = context

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              missing_ok: bool = False, timeout: float = HTTP_TIMEOUT_SECONDS) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        # The base URL is validated as https:// by the config model (S310: no file: or other schemes).
        headers = {"Authorization": self._auth, "Content-Type": "application/json"}
        request = urllib.request.Request(  # noqa: S310
            f"{self._base}/api/{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout,  # noqa: S310
                                        context=self._context) as reply:
                payload = reply.read()
        except urllib.error.HTTPError as exc:
            if missing_ok and exc.code == 404:
                return None
            raise TransportError(f"our broker's management API refused {method} /api/{path.split('/', maxsplit=1)[0]}: "
                                 f"HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransportError(f"cannot reach our broker's management API at {self._base}: {reason}") from None
        return json.loads(payload) if payload else None

    def _v(self) -> str:
        return quote(self._vhost, safe="")

    def create_publisher(self, user: str, password: str, routing_key: str) -> None:
        """Create (or reset) `user`: write-only to `federation`, publishing only `routing_key`."""
        name = quote(user, safe="")
        self._call("PUT", f"users/{name}", {"password": password, "tags": ""})
        self._call("PUT", f"permissions/{self._v()}/{name}",
                   {"configure": "^$", "write": f"^{re.escape(EXCHANGE)}$", "read": "^$"})
        self._call("PUT", f"topic-permissions/{self._v()}/{name}",
                   {"exchange": EXCHANGE, "write": f"^{re.escape(routing_key)}$", "read": "^$"})
        for limit, value in (("max-connections", PARTNER_MAX_CONNECTIONS), ("max-channels", PARTNER_MAX_CHANNELS)):
            self._call("PUT", f"user-limits/{name}/{limit}", {"value": value})
        log.info("provisioned broker user %s (publish %s only, at most %d connections)", user, routing_key,
                 PARTNER_MAX_CONNECTIONS)

    def delete_user(self, user: str) -> None:
        """Revoke `user`: delete it and close its live connections. Deleting a missing user is not an error."""
        self._call("DELETE", f"users/{quote(user, safe='')}", missing_ok=True)
        self.close_connections(user)
        log.info("revoked broker user %s", user)

    def users(self) -> list[str]:
        """Every user name on our broker (the caller filters ours)."""
        return [str(user["name"]) for user in self._call("GET", "users?columns=name") or []]

    def purge_queue(self, partner: str) -> None:
        """Drop the ready messages of `partner`'s inbound queue (a missing queue is not an error)."""
        queue = quote(f"federation.inbound.{partner}", safe="")
        self._call("DELETE", f"queues/{self._v()}/{queue}/contents", missing_ok=True)

    def close_connections(self, user: str) -> None:
        connections = self._call("GET", f"vhosts/{self._v()}/connections", missing_ok=True) or []
        for connection in connections:
            if connection.get("user") == user:
                self._call("DELETE", f"connections/{quote(connection['name'], safe='')}", missing_ok=True)

    def queue_depths(self) -> QueueDepths:
        """Messages (ready + unacked) in each partner's inbound and dead-letter queue, by partner: one call."""
        queues = self._call("GET", f"queues/{self._v()}?columns=name,messages", missing_ok=True,
                            timeout=DEPTHS_TIMEOUT_SECONDS) or []
        depths = QueueDepths()
        for queue in queues:
            name, count = str(queue.get("name", "")), int(queue.get("messages") or 0)
            if name.startswith(INBOUND_PREFIX):
                depths.inbound[name[len(INBOUND_PREFIX):]] = count
            elif name.startswith(DEAD_PREFIX):
                depths.dead[name[len(DEAD_PREFIX):]] = count
        return depths

    def put_policy(self, name: str, pattern: str, definition: dict[str, Any], priority: int) -> None:
        """Create or replace queue policy `name` on our vhost (it applies to existing queues at once)."""
        self._call("PUT", f"policies/{self._v()}/{quote(name, safe='')}",
                   {"pattern": pattern, "definition": definition, "priority": priority, "apply-to": "queues"})


@dataclass
class QueueDepths:
    """Messages waiting per partner: in its inbound queue and in its dead-letter queue."""

    inbound: dict[str, int] = field(default_factory=dict)
    dead: dict[str, int] = field(default_factory=dict)
