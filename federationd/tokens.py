"""Link tokens (the manual's "link URL"): what A mails to B to start a link. Pure encode/decode.

A token carries A's site id, company and site name, public endpoint, who requested it and when, its expiry,
optionally the site it is for, A's public signing key, and a one-time broker credential that may publish exactly
one acceptance to A's broker. Nothing in it is signed: its verification code (`codes.token_code`), read over the
phone, is what catches an edit on its way.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from federationd import arrival, codes
from federationd.errors import LinkError

PREFIX = "fedlink1."
LIFETIME_SECONDS = 24 * 3600
MAX_TOKEN_CHARS = 8192


@dataclass(frozen=True)
class LinkToken:
    token_id: str
    site: str
    company: str
    name: str
    public_url: str | list[str]  # one URL, or the public nodes of the requester's cluster
    requested_by: str
    requested_at: float
    expires_at: float
    key: str
    user: str
    password: str = field(repr=False)
    for_site: str | None = None  # `link request --for SITE`: an acceptance from another site id is refused

    def encode(self) -> str:
        raw = json.dumps(asdict(self), separators=(",", ":")).encode()
        return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    @property
    def code(self) -> str:
        return codes.token_code(self.encode())

    def public(self, code: str | None = None) -> dict[str, Any]:
        """What `link inspect --json` shows: no credential; `code` computed from the text as received."""
        return {"site": self.site, "company": self.company, "name": self.name, "public_url": self.public_url,
                "requested_at": iso(self.requested_at), "requested_by": self.requested_by,
                "expires_at": iso(self.expires_at), "code": code or self.code}


_REQUIRED = ("token_id", "site", "company", "name", "public_url", "requested_by", "requested_at", "expires_at",
             "key", "user", "password")


def decode(text: str) -> LinkToken:
    """Parse and validate a token; raise LinkError naming what is wrong (never a traceback)."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise LinkError("not a federationd link token (it should start with 'fedlink1.')")
    if len(text) > MAX_TOKEN_CHARS:
        raise LinkError(f"the link token is damaged (longer than {MAX_TOKEN_CHARS} characters)")
    payload = text[len(PREFIX):]
    damaged = LinkError("the link token is damaged (copy it again, whole, from the requesting site)")
    try:
        raw = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        values = {name: raw[name] for name in _REQUIRED}
        values["for_site"] = raw.get("for_site")
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):
        raise damaged from None
    for name in ("token_id", "user", "password"):
        if not isinstance(values[name], str) or not 0 < len(values[name]) <= 255:
            raise damaged
    try:
        _validate(values)
    except ValueError as exc:
        raise LinkError(f"the link token is damaged: {exc}") from None
    return LinkToken(**values)


def _validate(values: dict[str, Any]) -> None:
    # The site id becomes part of broker user names and routing keys, the URL is where we connect, the key
    # verifies sign-in tickets: never trust them blindly.
    arrival.site_id(values["site"])
    if values["for_site"] is not None:
        arrival.site_id(values["for_site"], "site id the token is for")
    for name, what in (("company", "company name"), ("name", "site name"), ("requested_by", "requester")):
        arrival.name(values[name], what)
    arrival.public_url(values["public_url"])
    arrival.signing_key(values["key"])
    requested = arrival.moment(values["requested_at"], "request time")
    expires = arrival.moment(values["expires_at"], "expiry")
    if expires - requested > LIFETIME_SECONDS + 60:
        raise ValueError(f"it claims a validity of more than {LIFETIME_SECONDS // 3600} hours")


def iso(moment: float | None) -> str | None:
    """ISO 8601 UTC (`2026-11-25T19:00:00Z`), or None."""
    if moment is None:
        return None
    try:
        return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return None  # stored before times were validated on arrival: shown as unknown, never a traceback
