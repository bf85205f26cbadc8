"""Broker endpoints: parsing amqps:// URLs, adding partner credentials, and showing them without secrets."""

from __future__ import annotations

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


def redact(url: str) -> str:
    """An amqps:// or https:// URL with its password replaced, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username}:***@{netloc}").geturl()
