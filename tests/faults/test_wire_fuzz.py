"""Bad input 6, fuzzed (pure, no broker): the wire decoder and the origin check, the link token and sign-in ticket
parsers. tests/unit/test_wire.py fuzzes arbitrary bytes and JSON; these start from valid messages and damage them
byte by byte, check the origin rule against an oracle, and pin the decoder to what a database can store."""

from __future__ import annotations

import gzip
import json
import string
import time
from typing import Any
from unittest import mock

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federationd import tickets, wire
from federationd.errors import AccessDenied, LinkError, RejectedChange
from federationd.tokens import LinkToken
from federationd.tokens import decode as decode_token
from federationd.wire import ChangesBody, ControlBody
from tests.faults.common import FIGURES, FUZZED, TRUNCATED

REASONS = {"bad_type", "bad_encoding", "oversized", "bad_json", "unknown_schema", "invalid"}
SITES = ["site-a", "site-b", "site-c"]
HOME, PARTNER = "site-a", "site-b"

ids = st.text(string.ascii_letters + string.digits + "-_.:/@あ社", min_size=1, max_size=40)
json_leaf = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=30)
data = st.dictionaries(st.text(string.ascii_lowercase + "_", min_size=1, max_size=12),
                       st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6),
                       max_size=5)


@st.composite
def wire_changes(draw: Any, origin: str = PARTNER) -> dict[str, Any]:
    return {"category": draw(st.sampled_from(["employee", "department", "schedule", "presence", "group"])),
            "id": draw(ids), "origin": origin, "version": draw(st.integers(1, 2**62)),
            "deleted": draw(st.booleans()), "data": draw(data)}


@st.composite
def valid_messages(draw: Any) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(wire.KINDS))
    if kind == "control":
        fields = draw(st.dictionaries(st.sampled_from(["public_url", "epoch", "seq", "token_id"]), json_leaf,
                                      max_size=3))
        return kind, wire.control_body(PARTNER, draw(st.sampled_from(["relink", "watermark", "change_url"])),
                                       **fields)
    changes = draw(st.lists(wire_changes(), max_size=30))
    snapshot = None
    if kind == "snapshot":
        final = draw(st.booleans())
        snapshot = {"id": draw(st.text(string.hexdigits, min_size=1, max_size=32)), "part": draw(st.integers(1, 99)),
                    "final": final, "categories": ["employee", "department"]}
        if final:
            snapshot["counts"] = {"employee": draw(st.integers(0, 10**6))}
    return kind, wire.changes_body(PARTNER, draw(st.integers(0, 2**62)), changes, snapshot)


def _outcome(kind: str | None, encoding: str | None, body: bytes) -> ChangesBody | ControlBody | None:
    FIGURES[FUZZED] += 1
    try:
        return wire.decode(kind, encoding, body)
    except RejectedChange as exc:
        assert exc.reason in REASONS, exc.reason
        assert str(exc) and "\n" not in str(exc)
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=valid_messages())
def test_valid_messages_round_trip(message: tuple[str, dict[str, Any]]) -> None:
    kind, body = message
    out = wire.encode(kind, body)
    decoded = _outcome(out.kind, out.content_encoding, out.body)
    assert decoded is not None
    assert decoded.as_document() == {k: v for k, v in body.items() if v is not None}


MUTATIONS = st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=valid_messages(), gzipped=st.booleans(), picks=st.data())
def test_byte_damaged_messages_decode_or_are_refused_with_a_reason(message: tuple[str, dict[str, Any]],
                                                                   gzipped: bool, picks: st.DataObject) -> None:
    kind, body = message
    raw = json.dumps(body).encode()
    blob = bytearray(gzip.compress(raw, mtime=0) if gzipped else raw)
    for _ in range(picks.draw(st.integers(1, 4))):
        if not blob:
            break
        at = picks.draw(st.integers(0, len(blob) - 1))
        how = picks.draw(MUTATIONS)
        if how == "flip":
            blob[at] ^= 1 << picks.draw(st.integers(0, 7))
        elif how == "set":
            blob[at] = picks.draw(st.integers(0, 255))
        elif how == "insert":
            blob.insert(at, picks.draw(st.integers(0, 255)))
        elif how == "delete":
            del blob[at]
        elif how == "truncate":
            del blob[at:]
        else:
            blob[at:at] = blob[at:at + picks.draw(st.integers(1, 16))]
    decoded = _outcome(kind, "gzip" if gzipped else None, bytes(blob))
    if decoded is not None:  # whatever survived the damage is still a well-typed v1 body
        assert decoded.as_document()["schema"] == 1 and isinstance(decoded.origin, str)
        if isinstance(decoded, ChangesBody):
            assert all(isinstance(c.version, int) and c.version >= 1 for c in decoded.changes)


@settings(max_examples=60, deadline=None)
@given(message=valid_messages())
def test_every_truncation_of_a_gzip_message_is_refused(message: tuple[str, dict[str, Any]]) -> None:
    kind, body = message
    compressed = gzip.compress(json.dumps(body).encode(), mtime=0)
    FIGURES[FUZZED] += 1
    for end in range(0, len(compressed), max(1, len(compressed) // 40)):
        FIGURES[TRUNCATED] += 1
        with pytest.raises(RejectedChange) as refused:
            wire.decode(kind, "gzip", compressed[:end])
        assert refused.value.reason == "bad_encoding"


@settings(max_examples=40, deadline=None)
@given(limit=st.integers(1024, 64 * 1024), over=st.integers(-64, 4096))
def test_inflated_size_limit_is_exact(limit: int, over: int) -> None:
    document = json.dumps(wire.changes_body(PARTNER, 1, [])).encode()
    body = document[:-1] + b',"pad":"' + b"x" * max(0, limit + over - len(document) - 9) + b'"}'
    with mock.patch.object(wire, "MAX_BODY_BYTES", limit):
        decoded = _outcome("changes", "gzip", gzip.compress(body))
    assert (decoded is not None) == (len(body) <= limit)


@settings(max_examples=300, deadline=None)
@given(partner=st.sampled_from(SITES), home=st.sampled_from(SITES), origin=st.sampled_from(SITES),
       change_origins=st.lists(st.sampled_from(SITES), max_size=4), control=st.booleans(),
       user=st.sampled_from([None, "", "fed.site-a.site-b", "fed.site-a.site-c", "fed.site-b.site-a", "guest"]))
def test_check_origin_agrees_with_the_rule(partner: str, home: str, origin: str, change_origins: list[str],
                                           control: bool, user: str | None) -> None:
    """Accepted exactly when the queue's partner, the user_id, the body's origin and every change's origin agree,
    and none of them is this site."""
    FIGURES[FUZZED] += 1
    if control:
        decoded = wire.decode("control", None, json.dumps(wire.control_body(origin, "relink")).encode())
        change_origins = []
    else:
        body = wire.changes_body(origin, 1, [{"category": "employee", "id": f"e{n}", "origin": o, "version": n + 1,
                                               "deleted": False, "data": {}} for n, o in enumerate(change_origins)])
        decoded = wire.decode("changes", None, json.dumps(body).encode())
    expected_user = f"fed.{home}.{partner}"
    allowed = (user == expected_user and origin == partner and partner != home
               and all(o == partner for o in change_origins))
    try:
        wire.check_origin(decoded, partner, user, expected_user, home)
    except RejectedChange as exc:
        assert not allowed, exc
        assert exc.reason in {"user_id_mismatch", "origin_mismatch", "foreign_origin"}
    else:
        assert allowed


def _one_change(**override: Any) -> dict[str, Any]:
    change = {"category": "employee", "id": "e-1", "origin": PARTNER, "version": 5, "deleted": False,
              "data": {"name": "x"}}
    return wire.changes_body(PARTNER, 1, [{**change, **override}])


STORE_LIMITS = {  # values a receiver can never store; the decoder should refuse them, not the database
    "epoch over BIGINT": {**_one_change(), "epoch": 2**63},
}
# ... and such values in one change: that change is skipped (counted, logged), not the message (the rest applies)
STORE_LIMITS_IN_A_CHANGE = {
    "version over BIGINT": {**_one_change(version=2**63), "first": 1, "last": 1},
    "id with a NUL byte": _one_change(id="e\x00-1"),
    "data with a lone surrogate": _one_change(data={"name": "\ud800"}),
}


@pytest.mark.parametrize("body", list(STORE_LIMITS.values()), ids=list(STORE_LIMITS))
def test_decoder_refuses_what_no_store_can_hold(body: dict[str, Any]) -> None:
    """Regression (found by this suite, fixed in 72aa6c4): these passed the decoder and failed in the apply
    transaction, on PostgreSQL as a DataError the dispatcher retried forever."""
    with pytest.raises(RejectedChange) as refused:
        wire.decode("changes", None, json.dumps(body).encode())
    assert refused.value.reason == "invalid"


@pytest.mark.parametrize("body", list(STORE_LIMITS_IN_A_CHANGE.values()), ids=list(STORE_LIMITS_IN_A_CHANGE))
def test_decoder_skips_a_change_no_store_can_hold(body: dict[str, Any]) -> None:
    decoded = wire.decode("changes", None, json.dumps(body).encode())
    assert isinstance(decoded, ChangesBody)
    assert decoded.changes == []
    assert [skip.reason for skip in decoded.skipped] == ["invalid"]


def test_decoder_refuses_a_snapshot_window_that_is_not_a_date() -> None:
    header = {"id": "s1", "part": 1, "final": True, "categories": ["schedule"], "counts": {}, "since": "not-a-date"}
    with pytest.raises(RejectedChange) as refused:
        wire.decode("snapshot", None, json.dumps(wire.changes_body(PARTNER, 5, [], header)).encode())
    assert refused.value.reason == "invalid"


# -- link tokens and sign-in tickets ---------------------------------------------------------------------------
TOKEN = LinkToken(token_id="0123456789abcdef", site="site-a", company="Example", name="HQ",
                  public_url="amqps://mq.site-a.example:5671/federation", requested_by="ops@host",
                  requested_at=1.8e9, expires_at=1.8e9 + 86400, key="a" * 44, user="fed.site-a.token.0123456789abcdef",
                  password="p" * 43).encode()


@settings(max_examples=300, deadline=None)
@given(at=st.integers(0, len(TOKEN) - 1), char=st.characters(codec="utf-8"), how=st.sampled_from(["set", "ins", "del"]))
def test_damaged_link_tokens_are_refused_cleanly(at: int, char: str, how: str) -> None:
    text = {"set": TOKEN[:at] + char + TOKEN[at + 1:], "ins": TOKEN[:at] + char + TOKEN[at:],
            "del": TOKEN[:at] + TOKEN[at + 1:]}[how]
    FIGURES[FUZZED] += 1
    try:
        token = decode_token(text)
    except LinkError as exc:
        assert "damaged" in str(exc) or "not a federationd link token" in str(exc)
    else:  # it still parses: then every field has the right type
        assert all(isinstance(getattr(token, f), str) for f in ("site", "public_url", "user", "password"))
        assert isinstance(token.expires_at, int | float)


KEY = Ed25519PrivateKey.generate()


@settings(max_examples=200, deadline=None)
@given(at=st.integers(0, 400), char=st.sampled_from(string.ascii_letters + string.digits + "-_.="))
def test_damaged_tickets_are_refused_with_a_reason(at: int, char: str) -> None:
    now = time.time()
    ticket = tickets.issue(KEY, "site-a", "site-b", "e-1", now)
    at %= len(ticket)
    damaged = ticket[:at] + char + ticket[at + 1:]
    FIGURES[FUZZED] += 1
    try:
        verified = tickets.verify(damaged, {"site-a": KEY.public_key()}, "site-b", now)
    except AccessDenied as exc:
        assert str(exc) and "\n" not in str(exc)
    else:  # only a change that leaves the signed bytes as they were can pass (e.g. the unused low bits of the
        # last base64 character): the payload and the signature decode to exactly the original bytes
        _, payload, signature = tickets.peek(damaged)
        _, original_payload, original_signature = tickets.peek(ticket)
        assert (payload, signature) == (original_payload, original_signature), (ticket, damaged)
        assert verified == tickets.peek(ticket)[0]
