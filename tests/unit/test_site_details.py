"""The pure rules of site_details: what a `site_details` control may carry, and when the config's public URL
still differs from the one `link change-url` set."""

from __future__ import annotations

import pytest

from federationd import linkstate
from federationd.site_details import check_details, configured_url, url_mismatch


def test_details_are_validated_as_the_handshake_validates_names():
    assert check_details({"company": "Renamed Co.", "name": "Osaka"}) == ("Renamed Co.", "Osaka")
    assert check_details({"company": "Renamed Co."}) == ("Renamed Co.", "")  # no site name: the company is shown
    assert check_details({"company": "Renamed Co.", "name": ""}) == ("Renamed Co.", "")


@pytest.mark.parametrize(("control", "message"), [
    ({}, "invalid company name: text of 1 to 255 characters"),
    ({"company": "  "}, "invalid company name: text of 1 to 255 characters"),
    ({"company": "x" * 256}, "invalid company name: text of 1 to 255 characters"),
    ({"company": 7}, "invalid company name"),
    ({"company": "Co.", "name": "n" * 256}, "invalid site name: text of 1 to 255 characters"),
    ({"company": "Co.", "name": "bell\x07"}, "invalid site name: control characters are not allowed"),
])
def test_bad_details_are_refused_naming_the_field_and_bound(control, message):
    with pytest.raises(ValueError, match=message):
        check_details(control)


def test_the_url_warning_holds_until_the_config_says_the_same():
    new = "amqps://mq2.example:5671/federation"
    assert url_mismatch(None, "amqps://mq.example:5671/federation") is None
    warning = url_mismatch([new], "amqps://mq.example:5671/federation")
    assert warning is not None and new in warning and "broker.public_url" in warning
    assert url_mismatch([new], "amqps://mq2.example/federation") is None  # the same endpoint, default port
    assert url_mismatch([new], [new]) is None  # a list in the config (the nodes of a cluster)
    assert configured_url(["amqps://a.example/v", "amqps://b.example:5672/v"]) == [
        "amqps://a.example:5671/v", "amqps://b.example:5672/v"]


@pytest.mark.parametrize("event", ["change_url", "site_details"])
@pytest.mark.parametrize("role", linkstate.ROLES)
def test_a_moved_or_renamed_partner_is_heard_while_the_link_awaits_its_start(event, role):
    assert linkstate.decide(linkstate.AWAITING_START, role, event).state == linkstate.AWAITING_START
    assert linkstate.decide(linkstate.LINKED, role, event).state == linkstate.LINKED
    assert not linkstate.decide(linkstate.STOPPED, role, event).allowed
