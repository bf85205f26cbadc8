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
from typing import Any
from urllib.parse import quote

from federationd.broker.endpoints import Endpoint
from federationd.broker.topology import EXCHANGE
from federationd.errors import TransportError

log = logging.getLogger(__name__)

HTTP_TIMEOUT_SECONDS = 15.0


def partner_user(home: str, partner: str) -> str:
    return f"fed.{home}.{partner}"


def token_user(home: str, token_id: str) -> str:
    return f"fed.{home}.token.{token_id}"


def new_password() -> str:
    return secrets.token_urlsafe(32)


class ManagementAPI:
    """The few management API calls federationd needs, as our own broker user (`broker.url`'s credentials)."""

    def __init__(self, base_url: str, own: Endpoint, context: ssl.SSLContext) -> None:
        self._base = base_url.rstrip("/")
        self._vhost = own.vhost
        self._auth = "Basic " + base64.b64encode(f"{own.user}:{own.password}".encode()).decode()
        self._context = context

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              missing_ok: bool = False) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        # The base URL is validated as https:// by the config model (S310: no file: or other schemes).
        headers = {"Authorization": self._auth, "Content-Type": "application/json"}
        request = urllib.request.Request(  # noqa: S310
            f"{self._base}/api/{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS,  # noqa: S310
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
        log.info("provisioned broker user %s (publish %s only)", user, routing_key)

    def delete_user(self, user: str) -> None:
        """Revoke `user`: delete it and close its live connections. Deleting a missing user is not an error."""
        self._call("DELETE", f"users/{quote(user, safe='')}", missing_ok=True)
        self.close_connections(user)
        log.info("revoked broker user %s", user)

    def close_connections(self, user: str) -> None:
        connections = self._call("GET", f"vhosts/{self._v()}/connections", missing_ok=True) or []
        for connection in connections:
            if connection.get("user") == user:
                self._call("DELETE", f"connections/{quote(connection['name'], safe='')}", missing_ok=True)

    def queue_depths(self) -> dict[str, int]:
        """Messages (ready + unacked) in each partner's inbound queue, by partner: one call for all of them."""
        queues = self._call("GET", f"queues/{self._v()}?columns=name,messages", missing_ok=True) or []
        prefix = "federation.inbound."
        return {q["name"][len(prefix):]: int(q.get("messages") or 0) for q in queues
                if q.get("name", "").startswith(prefix)}
