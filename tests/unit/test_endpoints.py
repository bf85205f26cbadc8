"""Unit tests for federationd.broker.endpoints: amqps:// URLs parsed, and shown without their password."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federationd.broker.endpoints import AMQPS_PORT, Endpoint, redact

PARSE = [
    # (url, host, port, vhost, user, password)
    ("amqps://federationd:SECRET@mq.site-a.example:5671/federation", "mq.site-a.example", 5671, "federation",
     "federationd", "SECRET"),
    ("amqps://mq.site-a.example/federation", "mq.site-a.example", AMQPS_PORT, "federation", "", ""),
    ("amqps://mq.site-a.example:15671/federation", "mq.site-a.example", 15671, "federation", "", ""),
    ("amqps://MQ.Site-A.Example/federation", "mq.site-a.example", 5671, "federation", "", ""),
    ("amqps://mq.example/%2F", "mq.example", 5671, "/", "", ""),
    ("amqps://mq.example/site%2Fa%20b", "mq.example", 5671, "site/a b", "", ""),
    ("amqps://mq.example", "mq.example", 5671, "/", "", ""),
    ("amqps://mq.example/", "mq.example", 5671, "/", "", ""),
    ("amqps://fed.site-a.site-b:p%40ss%3Aw%2Ford@mq.example/federation", "mq.example", 5671, "federation",
     "fed.site-a.site-b", "p@ss:w/ord"),
    ("amqps://u%40x:pw@10.0.0.5:5671/v", "10.0.0.5", 5671, "v", "u@x", "pw"),
    ("amqps://u:pw@[2001:db8::1]:5671/v", "2001:db8::1", 5671, "v", "u", "pw"),
]


@pytest.mark.parametrize(("url", "host", "port", "vhost", "user", "password"), PARSE, ids=[p[0] for p in PARSE])
def test_parse(url: str, host: str, port: int, vhost: str, user: str, password: str) -> None:
    endpoint = Endpoint.parse(url)
    assert (endpoint.host, endpoint.port, endpoint.vhost, endpoint.user, endpoint.password) == (
        host, port, vhost, user, password)


@pytest.mark.parametrize("url", [p[0] for p in PARSE if p[5]])
def test_password_never_shown(url: str) -> None:
    endpoint = Endpoint.parse(url)
    for shown in (endpoint.public_url, str(endpoint), repr(endpoint), f"{endpoint}"):
        assert endpoint.password not in shown
        assert "@" not in shown.replace(endpoint.user, "") or not endpoint.user


def test_public_url_form() -> None:
    endpoint = Endpoint.parse("amqps://federationd:SECRET@mq.site-a.example/federation")
    assert endpoint.public_url == "amqps://mq.site-a.example:5671/federation"
    assert str(endpoint) == endpoint.public_url
    assert Endpoint.parse("amqps://mq.example/%2F").public_url == "amqps://mq.example:5671/%2F"
    assert Endpoint.parse("amqps://mq.example/a%20b").public_url == "amqps://mq.example:5671/a%20b"


@pytest.mark.parametrize("url", [p[0] for p in PARSE if ":" not in p[1]])
def test_public_url_parses_back_to_the_same_place(url: str) -> None:
    endpoint = Endpoint.parse(url)
    again = Endpoint.parse(endpoint.public_url)
    assert (again.host, again.port, again.vhost, again.user, again.password) == (
        endpoint.host, endpoint.port, endpoint.vhost, "", "")


@settings(max_examples=100)
@given(vhost=st.text(min_size=1, max_size=20).filter(lambda v: v != "/"))
def test_vhost_round_trips_through_public_url(vhost: str) -> None:
    endpoint = Endpoint("mq.example", 5671, vhost)
    assert Endpoint.parse(endpoint.public_url).vhost == vhost


def test_with_credentials() -> None:
    base = Endpoint.parse("amqps://mq.site-b.example:5671/federation")
    partner = base.with_credentials("fed.site-b.site-a", "pw-SECRET")
    assert (partner.host, partner.port, partner.vhost) == (base.host, base.port, base.vhost)
    assert (partner.user, partner.password) == ("fed.site-b.site-a", "pw-SECRET")
    assert (base.user, base.password) == ("", "")  # frozen: the original is untouched
    assert "pw-SECRET" not in str(partner) + repr(partner)


def test_public_url_of_an_ipv6_host() -> None:
    endpoint = Endpoint.parse("amqps://u:pw@[2001:db8::1]:5671/v")
    assert endpoint.public_url == "amqps://[2001:db8::1]:5671/v"


REDACT = [
    ("amqps://federationd:SECRET@mq.site-a.example:5671/federation",
     "amqps://federationd:***@mq.site-a.example:5671/federation"),
    ("https://federationd:SECRET@mq.site-a.example:15671/api/users",
     "https://federationd:***@mq.site-a.example:15671/api/users"),
    ("amqps://u:p%40SECRET@mq.example/v", "amqps://u:***@mq.example/v"),
    ("amqps://u:pa@SECRET@mq.example/v", "amqps://u:***@mq.example/v"),  # an unencoded '@' in the password
    ("amqps://u:@mq.example/v", "amqps://u:***@mq.example/v"),
    ("amqps://mq.example:5671/v", "amqps://mq.example:5671/v"),
    ("amqps://justuser@mq.example/v", "amqps://justuser@mq.example/v"),
    ("https://mq.example:15671", "https://mq.example:15671"),
]


@pytest.mark.parametrize(("url", "expected"), REDACT, ids=[r[0] for r in REDACT])
def test_redact(url: str, expected: str) -> None:
    assert redact(url) == expected
    assert "SECRET" not in redact(url)
