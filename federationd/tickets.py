"""Sign-in tickets (docs/cli.md, access): the home site vouches for one of its employees to one partner, for 60 seconds.

`fedticket1.<payload>.<signature>`, both base64url; the payload is JSON {iss, aud, sub, iat, exp, jti}; the
signature is Ed25519 by the issuing site's key, whose public half the partner received at the handshake.
Pure: keys and `now` are passed in; single use is the redeemer's database's business.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import asdict, dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from federationd import arrival
from federationd.errors import AccessDenied

PREFIX = "fedticket1."
LIFETIME_SECONDS = 60
CLOCK_SKEW_SECONDS = 30  # a ticket issued up to this far "in the future" (clocks differ) is still accepted


@dataclass(frozen=True)
class Ticket:
    iss: str  # the issuing (home) site
    aud: str  # the site it is for
    sub: str  # the employee
    iat: float
    exp: float
    jti: str  # unique id, for single use


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: Ed25519PrivateKey, issuer: str, audience: str, employee: str, now: float) -> str:
    ticket = Ticket(issuer, audience, employee, now, now + LIFETIME_SECONDS, secrets.token_hex(16))
    payload = json.dumps(asdict(ticket), separators=(",", ":"), sort_keys=True).encode()
    return f"{PREFIX}{_b64(payload)}.{_b64(key.sign(payload))}"


def peek(text: str) -> tuple[Ticket, bytes, bytes]:
    """Parse without verifying (to learn the issuer, whose key verifies it)."""
    text = text.strip()
    if not text.startswith(PREFIX) or text.count(".") != 2:
        raise AccessDenied("not a federationd sign-in ticket")
    payload_b64, signature_b64 = text[len(PREFIX):].split(".")
    try:
        payload, signature = _unb64(payload_b64), _unb64(signature_b64)
        raw = json.loads(payload)
        ticket = Ticket(**{name: raw[name] for name in Ticket.__dataclass_fields__})
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):
        raise AccessDenied("the sign-in ticket is damaged") from None
    text_fields = (ticket.iss, ticket.aud, ticket.sub, ticket.jti)
    if not all(isinstance(v, str) and 0 < len(v) <= 255 for v in text_fields):
        raise AccessDenied("the sign-in ticket is damaged")
    try:  # NaN, infinities and 1e20 would make a ticket valid forever, or break the arithmetic
        arrival.moment(ticket.iat, "ticket issue time")
        arrival.moment(ticket.exp, "ticket expiry")
    except ValueError as exc:
        raise AccessDenied(f"the sign-in ticket is damaged: {exc}") from None
    return ticket, payload, signature


def verify(text: str, keys: dict[str, Ed25519PublicKey], audience: str, now: float) -> Ticket:
    """Check signature, audience and expiry; raise AccessDenied with the reason. `keys`: issuer -> public key."""
    ticket, payload, signature = peek(text)
    key = keys.get(ticket.iss)
    if key is None:
        raise AccessDenied(f"ticket issued by {ticket.iss!r}, which is not a linked partner of this site")
    try:
        key.verify(signature, payload)
    except InvalidSignature:
        raise AccessDenied(f"forged ticket: the signature is not {ticket.iss!r}'s") from None
    if ticket.aud != audience:
        raise AccessDenied(f"ticket for site {ticket.aud!r}, not this site ({audience!r})")
    if now >= ticket.exp:
        raise AccessDenied(f"ticket expired {now - ticket.exp:.0f}s ago (tickets are valid 60 seconds)")
    if ticket.iat > now + CLOCK_SKEW_SECONDS or ticket.exp - ticket.iat > LIFETIME_SECONDS:
        raise AccessDenied("ticket validity does not match its issue time")
    return ticket
