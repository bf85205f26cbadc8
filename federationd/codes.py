"""Verification codes: what the two administrators read to each other over the phone (docs/operations.md).

Like an SSH host-key fingerprint, a code is a digest of what one side sent, short enough to read aloud: 15
decimal digits (about 50 bits of SHA-256) in five groups of three, `123-456-789-012-345`. The requester's code
covers the whole link token as mailed; the acceptor's code covers what its acceptance claims. Anyone who edits
either on its way changes the code, and the operator who compares it notices. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from federationd.errors import LinkError

DIGITS = 15
GROUP = 3
_ACCEPTANCE_DOMAIN = b"federationd acceptance v1\n"


def _format(digest: bytes) -> str:
    number = int.from_bytes(digest[:8], "big") % 10**DIGITS
    text = f"{number:0{DIGITS}d}"
    return "-".join(text[i:i + GROUP] for i in range(0, DIGITS, GROUP))


def token_digest(token_text: str) -> str:
    """SHA-256 (hex) of the whole token text, as the acceptance names it."""
    return hashlib.sha256(token_text.strip().encode()).hexdigest()


def token_code(token_text: str) -> str:
    """The requester's code: a digest of the whole token text."""
    return _format(bytes.fromhex(token_digest(token_text)))


def acceptance_claims(*, site: str, public_url: str | list[str], key: str, token_id: str, token_digest: str,
                      accepted_by: str) -> dict[str, Any]:
    return {"site": site, "public_url": public_url, "key": key, "token_id": token_id,
            "token_digest": token_digest, "accepted_by": accepted_by}


def acceptance_code(claims: dict[str, Any]) -> str:
    """The acceptor's code: a digest of what its acceptance claims (site id, public endpoint, signing key, the
    token it answers and its digest, who accepted)."""
    canonical = json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return _format(hashlib.sha256(_ACCEPTANCE_DOMAIN + canonical).digest())


def normalise(code: str) -> str:
    """A code as typed: spaces and dashes are ignored; anything else than 15 digits is refused."""
    digits = "".join(ch for ch in code if ch not in " -\t")
    if len(digits) != DIGITS or not digits.isascii() or not digits.isdigit():
        raise LinkError(f"a verification code is {DIGITS} digits (like 123-456-789-012-345); got {code!r}")
    return digits


def matches(expected: str, given: str) -> bool:
    """Whether the code typed (`given`) is the one computed (`expected`), in constant time."""
    return hmac.compare_digest(normalise(expected), normalise(given))
