"""Issue 15, items 4 and 6: a renamed site reaches its partners (on reload and on start), and `link change-url`
completes the job (new tokens advertise the new URL; partners still awaiting the start are told too)."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from federationd import linklog, links
from federationd.store import reading
from tests.support.sites import Site, link
from tests.support.waiting import never, wait_until

pytestmark = pytest.mark.integration

ANNOUNCED = "site details changed"  # the daemon's log line when it tells its partners
PURGED = "purged 1 link log row(s)"  # housekeeping, at the end of the daemon's first round


def _details(site: Site, partner: str) -> tuple[str, str]:
    shown = site.json("link", "show", partner)
    return shown["company"], shown["name"]


def _company_record(site: Site, origin: str) -> dict[str, Any] | None:
    rows = [r for r in site.records("company", origin=origin) if r["id"] == origin]
    return rows[0]["data"] if rows else None


def _partner_url(site: Site, partner: str) -> str:
    with site.engine() as engine, reading(engine) as conn:
        return links.require(conn, partner).public_url


@pytest.mark.timeout(600)  # two restarts of a linked site on a loaded machine
def test_a_rename_reaches_the_partner_on_reload_and_on_start(make_site):
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    assert _details(b, a.id) == (f"{a.id.upper()} Co., Ltd.", f"{a.id} HQ")

    # Reload with a new company and site name: B's link details and A's company record at B follow
    a.cfg["site"] = {**a.cfg["site"], "company": "Renamed Holdings", "name": "Osaka Office"}
    a.write_config()
    assert a.proc is not None
    a.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: _details(b, a.id) == ("Renamed Holdings", "Osaka Office"), 60, what="B shows A's new names")
    wait_until(lambda: _company_record(b, a.id) == {"company": "Renamed Holdings", "name": "Osaka Office"}, 60,
               what="A's company record at B renamed")
    assert a.json("records", "get", "company", a.id)["data"]["company"] == "Renamed Holdings"
    # logged after the commit that queued the announcement: on a loaded machine B may apply it first
    wait_until(lambda: a.log_text().count(ANNOUNCED) >= 1, 30, what="A saying it announced its new names")
    assert a.log_text().count(ANNOUNCED) == 1

    # A restart with the same values sends nothing new. The proof that the first round after the start ran (its
    # announcement step comes before its housekeeping): housekeeping purging a link-log row put there expired.
    a.stop()
    purged = a.log_text().count(PURGED)
    with a.engine() as engine, engine.begin() as conn:
        linklog.write(conn, 1.0, "nobody", "send", "a row from 1970, past any retention")
    a.start()
    wait_until(lambda: a.log_text().count(PURGED) > purged, 60, what="A's first round after the restart")
    never(lambda: a.log_text().count(ANNOUNCED) > 1, 3, what="A announcing unchanged details again")

    # A restart with changed values does send
    a.stop()
    a.cfg["site"] = {**a.cfg["site"], "name": "Kyoto Office"}
    a.write_config()
    a.start()
    wait_until(lambda: _details(b, a.id) == ("Renamed Holdings", "Kyoto Office"), 60,
               what="B shows A's name changed while A was down")
    wait_until(lambda: a.log_text().count(ANNOUNCED) >= 2, 30, what="A saying it announced the changed name")
    assert a.log_text().count(ANNOUNCED) == 2


@pytest.mark.timeout(600)  # three sites and two handshakes on a loaded machine
def test_change_url_is_advertised_and_reaches_awaiting_partners(make_site, broker):
    a, b, c = make_site("alpha"), make_site("beta"), make_site("gamma")
    link(a, b)
    # C accepted A's token: A (the requester) awaits its own start, and holds C's credential
    issued = a.json("link", "request")
    c.json("link", "accept", issued["token"], "--code", issued["code"])
    wait_until(lambda: a.link_state(c.id) == "awaiting_start", 60, what="A sees C accepted")

    new_url = f"amqps://127.0.0.1:{broker.amqps_port}/{a.id}"  # the certificate also names 127.0.0.1
    old_url = a.cfg["broker"]["public_url"]
    told = a.json("link", "change-url", new_url)["told"]
    assert sorted(told) == sorted([b.id, c.id])
    wait_until(lambda: _partner_url(b, a.id) == new_url, 60, what="B (linked) uses A's new endpoint")
    wait_until(lambda: _partner_url(c, a.id) == new_url, 60, what="C (awaiting the start) uses A's new endpoint")

    # New tokens advertise the new URL although the YAML still says the old one; everything warns about it
    token = a.json("link", "request")["token"]
    assert a.json("link", "inspect", token)["public_url"] == new_url
    checked = a.json("check-config")
    assert any("broker.public_url" in warning and new_url in warning for warning in checked["warnings"])
    assert "broker.public_url" in a.cli("status").stdout
    assert a.proc is not None
    a.proc.send_signal(signal.SIGHUP)  # a reload that leaves the YAML's URL as it was: the daemon says so
    wait_until(lambda: "broker.public_url in the config file still says" in a.log_text(), 30,
               what="the daemon warns about the YAML")

    # The YAML catches up: the warnings stop
    a.cfg["broker"] = {**a.cfg["broker"], "public_url": new_url}
    a.write_config()
    assert not [w for w in a.json("check-config")["warnings"] if "broker.public_url" in w]
    assert "broker.public_url" not in a.cli("status").stdout
    assert old_url != new_url
