"""Unit tests for federationd.tokens: the link token ("link URL") A mails to B (SPEC 3.2), encoded and decoded.

`link inspect --json` shows exactly `{site, company, name, public_url, requested_at, requested_by, expires_at,
code}` and never the one-time credential; every value is validated when the token arrives.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federationd.errors import LinkError
from federationd.tokens import LIFETIME_SECONDS, PREFIX, LinkToken, decode, iso

REQUESTED_AT = 1_794_992_400.0  # 2026-11-18T09:00:00Z


def make_token(**overrides: Any) -> LinkToken:
    fields: dict[str, Any] = {
        "token_id": "tok-0123456789abcdef", "site": "site-a", "company": "Example Co., Ltd.", "name": "Example HQ",
        "public_url": "amqps://mq.site-a.example:5671/federation", "requested_by": "admin@site-a",
        "requested_at": REQUESTED_AT, "expires_at": REQUESTED_AT + LIFETIME_SECONDS,
        "key": base64.b64encode(bytes(range(32))).decode(), "user": "fed.site-a.accept.tok-0123",
        "password": "pw-SECRET-1"}
    fields.update(overrides)
    return LinkToken(**fields)


def payload(document: Any) -> str:
    return PREFIX + base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


def test_round_trip() -> None:
    token = make_token()
    text = token.encode()
    assert text.startswith(PREFIX)
    assert "=" not in text and "\n" not in text and " " not in text  # one copy-pasteable word
    assert decode(text) == token


def test_round_trip_with_unicode_and_surrounding_whitespace() -> None:
    token = make_token(company="株式会社サンプル", name="本社")
    assert decode(f"\n  {token.encode()}  \n") == token


NAMES = st.text(st.characters(min_codepoint=32, exclude_characters="\x7f", exclude_categories=("Cs",)),
                min_size=1, max_size=40).filter(str.strip)


@settings(max_examples=100)
@given(company=NAMES, name=NAMES, requested_by=NAMES,
       password=st.text(min_size=1, max_size=40), requested_at=st.floats(0, 4e9))
def test_round_trip_property(company: str, name: str, requested_by: str, password: str, requested_at: float) -> None:
    token = make_token(company=company, name=name, requested_by=requested_by, password=password,
                       requested_at=requested_at, expires_at=requested_at + LIFETIME_SECONDS)
    assert decode(token.encode()) == token


def _damaged() -> list[tuple[str, str]]:
    text = make_token().encode()
    body = text[len(PREFIX):]
    document = dataclasses.asdict(make_token())
    return [
        ("truncated", text[: len(text) // 2]),
        ("last-character-dropped", text[:-3]),
        ("not-base64", PREFIX + "!!!***!!!"),
        ("empty-payload", PREFIX),
        ("not-json", PREFIX + base64.urlsafe_b64encode(b"hello world").decode()),
        ("not-utf8", PREFIX + base64.urlsafe_b64encode(b"\xff\xfe\xfa").decode()),
        ("json-array", payload([1, 2, 3])),
        ("json-string", payload("fedlink")),
        ("json-number", payload(7)),
        ("missing-password", payload({k: v for k, v in document.items() if k != "password"})),
        ("missing-site", payload({k: v for k, v in document.items() if k != "site"})),
        ("non-ascii-payload", PREFIX + "トークン" + body),
    ]


@pytest.mark.parametrize("text", [t for _, t in _damaged()], ids=[i for i, _ in _damaged()])
def test_damaged_token(text: str) -> None:
    with pytest.raises(LinkError, match="damaged"):
        decode(text)


@pytest.mark.parametrize("text", ["", "fedlink2." + make_token().encode()[len(PREFIX):],
                                  make_token().encode()[len(PREFIX):], "https://site-a.example/link?t=abc",
                                  "FEDLINK1." + make_token().encode()[len(PREFIX):]],
                         ids=["empty", "other-version", "no-prefix", "a-url", "upper-case-prefix"])
def test_wrong_prefix(text: str) -> None:
    with pytest.raises(LinkError, match="fedlink1"):
        decode(text)


def test_extra_fields_from_a_newer_version_are_ignored() -> None:
    document = {**dataclasses.asdict(make_token()), "added_later": True}
    assert decode(payload(document)) == make_token()


def test_public_has_exactly_the_inspect_keys_and_no_credential() -> None:
    token = make_token()
    public = token.public()
    assert set(public) == {"site", "company", "name", "public_url", "requested_at", "requested_by", "expires_at",
                           "code"}
    assert public.pop("code") == token.code
    assert public == {"site": "site-a", "company": "Example Co., Ltd.", "name": "Example HQ",
                      "public_url": "amqps://mq.site-a.example:5671/federation",
                      "requested_at": "2026-11-18T09:00:00Z", "requested_by": "admin@site-a",
                      "expires_at": "2026-11-19T09:00:00Z"}
    dumped = json.dumps(public)
    for secret in (token.password, token.user, token.token_id, token.key):
        assert secret not in dumped


def test_repr_hides_the_password() -> None:
    assert "pw-SECRET-1" not in repr(make_token())


def test_a_token_expires_at_its_expiry_and_not_a_second_before() -> None:
    token = make_token()
    assert not token.expired(REQUESTED_AT + 24 * 3600 - 1)
    assert token.expired(REQUESTED_AT + 24 * 3600)


@pytest.mark.parametrize(("now", "expired"), [
    (REQUESTED_AT, False),
    (REQUESTED_AT + LIFETIME_SECONDS - 1, False),
    (REQUESTED_AT + LIFETIME_SECONDS, True),  # at the expiry instant it no longer works
    (REQUESTED_AT + LIFETIME_SECONDS + 1, True),
])
def test_expired(now: float, expired: bool) -> None:
    assert make_token().expired(now) is expired


@pytest.mark.parametrize(("moment", "expected"), [
    (0, "1970-01-01T00:00:00Z"),
    (0.999, "1970-01-01T00:00:00Z"),           # whole seconds
    (REQUESTED_AT, "2026-11-18T09:00:00Z"),
    (None, None),
])
def test_iso(moment: float | None, expected: str | None) -> None:
    assert iso(moment) == expected


@settings(max_examples=100)
@given(moment=st.floats(0, 4e9))
def test_iso_is_utc_with_z(moment: float) -> None:
    text = iso(moment)
    assert text is not None
    assert text.endswith("Z") and "+" not in text
    assert len(text) == len("2026-11-18T09:00:00Z")


@pytest.mark.parametrize(("field", "value"), [("expires_at", "tomorrow"), ("requested_at", None), ("site", 7)])
def test_wrongly_typed_fields_are_a_damaged_token(field: str, value: Any) -> None:
    document = {**dataclasses.asdict(make_token()), field: value}
    with pytest.raises(LinkError, match="damaged"):
        token = decode(payload(document))
        token.public()
        token.expired(REQUESTED_AT)
        assert isinstance(token.site, str)


@pytest.mark.parametrize(("field", "value", "says"), [
    ("site", "site-a\n", "site id"),  # full match: no trailing newline
    ("site", "Site-A", "site id"),
    ("for_site", "b\n", "site id"),
    ("expires_at", float("nan"), "finite"),
    ("expires_at", float("inf"), "finite"),
    ("requested_at", 1e20, "finite"),
    ("requested_at", -1.0, "finite"),
    ("expires_at", REQUESTED_AT + 10 * LIFETIME_SECONDS, "validity"),
    ("key", base64.b64encode(b"x" * 31).decode(), "32"),
    ("key", "not base64!", "base64"),
    ("public_url", "amqps://[bad", "public URL"),
    ("public_url", "amqp://mq.example:5672/v", "amqps"),
    ("public_url", "amqps://mq.example:99999/v", "port"),
    ("public_url", "amqps://user:pw@mq.example/v", "credentials"),
    ("company", "x" * 256, "255"),
    ("name", "line\nbreak", "control"),
])
def test_values_are_validated_on_arrival(field: str, value: Any, says: str) -> None:
    raw = json.dumps({**dataclasses.asdict(make_token()), field: value}).encode()  # NaN/Infinity as JSON allows
    with pytest.raises(LinkError, match="damaged") as refused:
        decode(PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("="))
    assert says in str(refused.value)


def test_iso_of_nonsense_is_none_never_a_traceback() -> None:
    assert iso(1e20) is None and iso(float("nan")) is None
