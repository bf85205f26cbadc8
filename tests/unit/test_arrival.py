"""Values from partners, validated on arrival; relink requests rate-limited; what pauses a link."""

from __future__ import annotations

import base64
import math

import pytest

from federationd import arrival, relinks

NOW = 1_794_992_400.0
HOUR = 3600.0


@pytest.mark.parametrize("value", ["site-b\n", "Site-b", "-b", "", "b" * 64, "a.b", 7, None, "site b"])
def test_site_ids_by_full_match(value):
    with pytest.raises(ValueError, match="site id"):
        arrival.site_id(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e20, -1, True, "1", None])
def test_times_must_be_finite_and_sane(value):
    with pytest.raises(ValueError):
        arrival.moment(value, "expiry")


def test_a_sane_time_passes():
    assert arrival.moment(NOW, "expiry") == NOW


@pytest.mark.parametrize(("value", "says"), [
    (base64.b64encode(b"k" * 31).decode(), "31 bytes"), (base64.b64encode(b"k" * 33).decode(), "33 bytes"),
    ("not base64!", "base64"), ("", "0 bytes"), (None, "base64"), ("A" * 100, "base64")])
def test_signing_keys_are_exactly_32_bytes(value, says):
    with pytest.raises(ValueError, match=says):
        arrival.signing_key(value)


@pytest.mark.parametrize("value", ["amqps://[broken", "amqp://h:5672/v", "amqps://h:0/v", "amqps://h:70000/v",
                                   "amqps://u:p@h/v", "amqps:///v", "amqps://h", "amqps://h/v\n", 7,
                                   "amqps://h/" + "v" * 1100])
def test_urls_follow_the_config_rules(value):
    with pytest.raises(ValueError, match="public URL"):
        arrival.public_url(value)


def test_a_good_url_is_normalised():
    assert arrival.public_url("amqps://mq.example/fed") == "amqps://mq.example:5671/fed"


@pytest.mark.parametrize("value", ["", " ", "x" * 256, "a\nb", "a\x00b", 5])
def test_names_are_bounded(value):
    with pytest.raises(ValueError):
        arrival.name(value, "company name")


def test_epochs_may_not_run_ahead_beyond_the_skew():
    assert arrival.epoch(int(NOW) + arrival.EPOCH_SKEW_SECONDS, NOW) == int(NOW) + arrival.EPOCH_SKEW_SECONDS
    with pytest.raises(ValueError, match="future"):
        arrival.epoch(int(NOW) + arrival.EPOCH_SKEW_SECONDS + 1, NOW)


@pytest.mark.parametrize(("last", "pending", "due", "locked", "expected"), [
    (None, None, False, False, (True, None)),  # the first request: a snapshot now
    (NOW - 2 * HOUR, None, False, False, (True, None)),  # the interval has passed
    (NOW - 60, None, False, False, (False, NOW - 60 + HOUR)),  # coalesced to the end of the interval
    (NOW - 60, NOW + 10, False, False, (False, NOW + 10)),  # already coalesced: unchanged
    (None, None, True, False, (False, None)),  # a snapshot is due anyway: rides with it
    (None, None, False, True, (False, NOW)),  # the bulk lock: waits for housekeeping
])
def test_relink_requests_are_coalesced_and_rate_limited(last, pending, due, locked, expected):
    assert relinks.decide(last, pending, due, locked, HOUR, NOW) == expected


def test_a_hundred_requests_give_one_snapshot():
    last, pending, snapshots = None, None, 0
    for i in range(100):
        now = NOW + i * 0.1
        go, pending = relinks.decide(last, pending, snapshots > 0 and last is None, False, HOUR, now)
        if go:
            snapshots += 1
            last = now
    assert snapshots == 1 and pending == NOW + HOUR
