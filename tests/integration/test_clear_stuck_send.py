"""`federationd clear` frees a send stuck inside the running daemon (the manual's 「送信中のまま…クリア」).

The partner's endpoint is a port that completes TCP in the kernel's backlog and then never answers, so our TLS
handshake waits; with a long `connect_timeout` nothing but `clear` ends that wait soon. After the clear the send
worker is free (a send to the same partner, its endpoint fixed, proceeds at once) and nothing was lost or marked
sent that the partner's broker had not confirmed.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from federationd.schema import links as link_rows
from federationd.schema import outbox, records
from tests.support.sites import Site, link
from tests.support.waiting import holds_for, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]  # a link and two waits, on a loaded machine


def _link_column(site: Site, partner: str, column: str) -> object:
    with site.engine() as engine, engine.connect() as conn:
        return conn.execute(select(link_rows.c[column]).where(link_rows.c.site == partner)).scalar_one()


def _sending(site: Site, partner: str) -> bool:
    """The mark `status` shows as "sending" (read in-process: a loaded machine makes CLI polling slow)."""
    return _link_column(site, partner, "sending_since") is not None


def _newest_change(site: Site) -> int:
    with site.engine() as engine, engine.connect() as conn:
        return int(conn.execute(select(func.max(outbox.c.seq))).scalar_one() or 0)


def _set_endpoint(site: Site, partner: str, url: str) -> None:
    """What `link change-url` at the partner would tell us: where its broker is."""
    with site.engine() as engine, engine.begin() as conn:
        conn.execute(update(link_rows).where(link_rows.c.site == partner).values(public_url=url))


def _at_b(b: Site, origin: str) -> set[str]:
    """The live employees of `origin` that B holds (in-process: CLI polling is slow on a loaded machine)."""
    with b.engine() as engine, engine.connect() as conn:
        return set(conn.execute(select(records.c.id).where(
            records.c.origin == origin, records.c.category == "employee", records.c.deleted.is_(False))).scalars())


def test_clear_abandons_a_send_hung_in_the_tls_handshake(make_site, blackhole):
    # One send worker and a connect timeout far beyond the test: only the clear can free the worker.
    a = make_site("alpha", transport={"connect_timeout": "30m", "send_workers": 1})
    b = make_site("beta")
    link(a, b)
    good_url = str(_link_column(a, b.id, "public_url"))
    wait_until(lambda: not _sending(a, b.id) and int(str(_link_column(a, b.id, "sent_seq"))) >= _newest_change(a),
               60, what="the link's first sends done")
    sent_before = _link_column(a, b.id, "sent_seq")

    _set_endpoint(a, b.id, f"amqps://127.0.0.1:{blackhole}/{b.id}")
    a.put("employee", "stuck-1", {"name": "Sent after the clear", "email": "stuck-1@a.example"})
    a.cli("send-now", b.id)
    wait_until(lambda: _sending(a, b.id), 60, what="the send to the blackholed endpoint started")
    holds_for(lambda: _sending(a, b.id), 3, what="the send hanging in the TLS handshake")
    assert a.link_row(b.id)["sending"] is True  # what the operator sees

    # The partner fixes its endpoint; the stuck send still holds the only worker until the operator clears it.
    _set_endpoint(a, b.id, good_url)
    cleared = a.json("clear", b.id)
    assert cleared["sites"] == [b.id], cleared
    wait_until(lambda: "abandoned" in a.log_text(), 60, what="the daemon abandoning the stuck send")
    assert _link_column(a, b.id, "sent_seq") == sent_before, "nothing unconfirmed may be marked sent"
    assert "stuck-1" not in _at_b(b, a.id)

    # The pending change goes at the next send, through the freed worker.
    a.cli("send-now", b.id)
    wait_until(lambda: "stuck-1" in _at_b(b, a.id), 90, what="the change pending at the clear reaching the partner")
    # the watermark moves when the broker confirms; the send's mark is cleared after the send returns
    wait_until(lambda: int(str(_link_column(a, b.id, "sent_seq"))) >= _newest_change(a) and not _sending(a, b.id),
               60, what="alpha's watermark for beta past the change, the send over")
    row = a.link_row(b.id)
    assert row["pending_records"] == 0 and row["sending"] is False, row
    assert _link_column(a, b.id, "failures") == 0 and _link_column(a, b.id, "last_error") is None  # no backoff
    assert f"send to {b.id} failed unexpectedly" not in a.log_text()
