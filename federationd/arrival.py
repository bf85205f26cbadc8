"""Validating what a partner sends before anything is stored (tokens, acceptances, tickets, controls).

Pure: each check raises ValueError naming what is wrong and the bound it broke; callers turn it into their own
error (LinkError for an operator's input, RejectedChange for a message, AccessDenied for a ticket).
"""

from __future__ import annotations

import base64
import binascii
import math
import re

from federationd.broker.endpoints import Endpoints

SITE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
MAX_NAME = 255  # company and site names, who requested or accepted: the database columns' width
MAX_URL = 1024
KEY_BYTES = 32  # a raw Ed25519 public key
LATEST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: any later time is nonsense (and breaks date formatting)
EPOCH_SKEW_SECONDS = 24 * 3600  # a partner's epoch (unix seconds) may run this far ahead of our clock


def site_id(value: object, what: str = "site id") -> str:
    """A site id by full match (no trailing newline): lower-case letters, digits and '-', at most 63."""
    if not isinstance(value, str) or SITE_ID.fullmatch(value) is None:
        raise ValueError(f"invalid {what} {str(value)[:80]!r} (lower-case letters, digits and '-', at most 63)")
    return value


def name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise ValueError(f"invalid {what}: text of 1 to {MAX_NAME} characters expected")
    if any(ord(ch) < 32 or ch == "\x7f" for ch in value):
        raise ValueError(f"invalid {what}: control characters are not allowed")
    return value


def public_url(value: object) -> str:
    """A partner's public endpoint, by the config's rules: amqps://HOST[:PORT]/VHOST, no credentials; or a list of
    such URLs (the nodes of one cluster, same vhost). Returns it as stored: the URL, or the JSON list of URLs."""
    from federationd.config import MAX_BROKER_NODES, same_cluster  # noqa: PLC0415 - the config's own rule

    given: list[object] = list(value) if isinstance(value, list) else [value]
    if not given:
        raise ValueError("invalid public URL: an empty list (one amqps:// URL or a list of the cluster's nodes)")
    if len(given) > MAX_BROKER_NODES:
        raise ValueError(f"invalid public URL: {len(given)} nodes, at most {MAX_BROKER_NODES} per cluster")
    urls = [url for url in given if isinstance(url, str) and len(url) <= MAX_URL and all(ord(ch) > 32 for ch in url)]
    if len(urls) < len(given):
        raise ValueError(f"invalid public URL: an amqps:// URL of at most {MAX_URL} characters expected")
    try:
        same_cluster(tuple(urls), credentials=False)
        stored = Endpoints.parse(urls).stored()
    except ValueError as exc:
        raise ValueError(f"invalid public URL {str(value)[:120]!r}: {exc}") from None
    if len(stored) > MAX_URL:
        raise ValueError(f"invalid public URL: the list of {len(urls)} nodes is longer than {MAX_URL} characters")
    return stored


def signing_key(value: object) -> str:
    """A partner's Ed25519 public key: base64 of exactly 32 raw bytes."""
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError(f"invalid signing key: base64 of {KEY_BYTES} bytes expected")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"invalid signing key: base64 of {KEY_BYTES} bytes expected") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"invalid signing key: {len(raw)} bytes, an Ed25519 key is {KEY_BYTES}")
    return value


def moment(value: object, what: str) -> float:
    """A unix time: a finite number between 0 and the year 9999 (NaN, infinities and 1e20 are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"invalid {what}: a number of unix seconds expected")
    if not math.isfinite(value) or not 0 <= value <= LATEST_TIME:
        raise ValueError(f"invalid {what} {value!r}: must be finite, between 0 and {LATEST_TIME:.0f} (year 9999)")
    return float(value)


def epoch(value: int, now: float, what: str = "epoch") -> int:
    """A partner's epoch (unix seconds when it started its snapshot): not later than now plus the allowed skew,
    so that one poisoned epoch cannot freeze its records forever."""
    if value > now + EPOCH_SKEW_SECONDS:
        raise ValueError(f"{what} {value} is in the future (more than {EPOCH_SKEW_SECONDS}s after this site's "
                         f"clock {int(now)})")
    return value
