"""Link tokens (the manual's "link URL"): what A mails to B to start a link. Pure encode/decode.

A token carries A's site id, company and site name, public endpoint, who requested it and when, its expiry, A's
public signing key, and a one-time broker credential that may publish exactly one acceptance to A's broker.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from federationd.config import SITE_ID
from federationd.errors import LinkError

PREFIX = "fedlink1."
LIFETIME_SECONDS = 24 * 3600


@dataclass(frozen=True)
class LinkToken:
    token_id: str
    site: str
    company: str
    name: str
    public_url: str
    requested_by: str
    requested_at: float
    expires_at: float
    key: str
    user: str
    password: str = field(repr=False)

    def encode(self) -> str:
        raw = json.dumps(asdict(self), separators=(",", ":")).encode()
        return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    def public(self) -> dict[str, Any]:
        """What `link inspect --json` shows: no credential."""
        return {"site": self.site, "company": self.company, "name": self.name, "public_url": self.public_url,
                "requested_at": iso(self.requested_at), "requested_by": self.requested_by,
                "expires_at": iso(self.expires_at)}


def decode(text: str) -> LinkToken:
    text = text.strip()
    if not text.startswith(PREFIX):
        raise LinkError("not a federationd link token (it should start with 'fedlink1.')")
    payload = text[len(PREFIX):]
    damaged = LinkError("the link token is damaged (copy it again, whole, from the requesting site)")
    try:
        raw = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        values = {name: raw[name] for name in LinkToken.__dataclass_fields__}
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise damaged from None
    for name, value in values.items():
        wanted: tuple[type, ...] = (int, float) if name in _TIMES else (str,)
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise damaged
    if not SITE_ID.match(values["site"]) or not values["public_url"].startswith("amqps://"):
        raise damaged  # the site id becomes part of broker user names and routing keys: never trust it blindly
    return LinkToken(**values)


_TIMES = ("requested_at", "expires_at")


def iso(moment: float | None) -> str | None:
    """ISO 8601 UTC (`2026-11-25T19:00:00Z`), or None."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
