"""Broker endpoints: parsing amqps:// URLs, adding partner credentials, and showing them without secrets.

An `Endpoint` is one node; `Endpoints` the nodes of one cluster (one node for a single broker), tried in turn.
Stored (the links table) and on the wire, one node is its plain URL and several are a JSON list of URLs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

AMQPS_PORT = 5671


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    vhost: str
    user: str = ""
    password: str = field(default="", repr=False)

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        return cls(parts.hostname or "", parts.port or AMQPS_PORT, vhost, unquote(parts.username or ""),
                   unquote(parts.password or ""))

    def with_credentials(self, user: str, password: str) -> Endpoint:
        return Endpoint(self.host, self.port, self.vhost, user, password)

    @property
    def public_url(self) -> str:
        """The URL without credentials: safe for logs, errors and status."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"amqps://{host}:{self.port}/{quote(self.vhost, safe='')}"

    def __str__(self) -> str:
        return self.public_url


@dataclass(frozen=True)
class Endpoints:
    """The nodes of one broker cluster (same vhost, same user), in the order given."""

    nodes: tuple[Endpoint, ...]

    @classmethod
    def parse(cls, value: str | Sequence[str]) -> Endpoints:
        """A URL, a stored JSON list of URLs (`["amqps://...", ...]`), or a list of URLs."""
        if isinstance(value, str):
            urls: Sequence[str] = json.loads(value) if value.lstrip().startswith("[") else [value]
        else:
            urls = value
        if not urls:
            raise ValueError("no broker node given")
        return cls(tuple(Endpoint.parse(url) for url in urls))

    def with_credentials(self, user: str, password: str) -> Endpoints:
        return Endpoints(tuple(node.with_credentials(user, password) for node in self.nodes))

    @property
    def user(self) -> str:
        return self.nodes[0].user

    @property
    def password(self) -> str:
        return self.nodes[0].password

    @property
    def vhost(self) -> str:
        return self.nodes[0].vhost

    def wire(self) -> str | list[str]:
        """What a handshake or a change_url carries (and `link show` prints): one URL, or the list of them."""
        urls = [node.public_url for node in self.nodes]
        return urls[0] if len(urls) == 1 else urls

    def stored(self) -> str:
        """What the links table holds: one URL, or the JSON list of them."""
        wire = self.wire()
        return wire if isinstance(wire, str) else json.dumps(wire, separators=(",", ":"))

    def __str__(self) -> str:
        return ", ".join(node.public_url for node in self.nodes)


def shown(stored: str) -> str | list[str]:
    """A stored public endpoint as `link show --json` prints it: a string when one node, a list when several."""
    try:
        return Endpoints.parse(stored).wire() if stored else stored
    except ValueError:
        return stored


def redact(url: str) -> str:
    """An amqps:// or https:// URL with its password replaced, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username}:***@{netloc}").geturl()
