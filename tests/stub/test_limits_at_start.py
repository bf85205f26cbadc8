"""A start that arrives past the acceptor's maximum (its `limits:` lowered since it accepted): the acceptor goes
`stopped` and releases the link, telling the requester why (federationd/handlers/control.py on_start)."""

from __future__ import annotations

from pathlib import Path

from federationd import links
from federationd.config import LimitsSection
from tests.support.stub import StubNetwork

A, B, C = "site-a", "site-b", "site-c"


def test_a_start_past_the_maximum_is_released_with_the_reason(tmp_path: Path) -> None:
    net = StubNetwork(tmp_path)
    a, b, _c = net.add_site(A), net.add_site(B), net.add_site(C)
    net.link(A, B, state_b=links.AWAITING_START)  # B accepted A's token ...
    net.link(C, B)  # ... and is linked with C
    b.rt.config = b.rt.config.model_copy(update={"limits": LimitsSection(max_sites=1, recommended_sites=1)})
    net.deliver(B, [net.control(A, B, "start", user="fed.site-a.site-b", password="pw")])
    assert b.scalar("SELECT state FROM links WHERE site = :s", s=A) == links.STOPPED
    reason = b.scalar("SELECT stop_reason FROM links WHERE site = :s", s=A)
    assert "limits.max_sites allows 1" in reason, reason
    net.send(B, A)  # the queued release, with the credential A's start carried
    net.deliver_all(A)
    assert a.scalar("SELECT state FROM links WHERE site = :s", s=B) == links.STOPPED
    told = a.scalar("SELECT stop_reason FROM links WHERE site = :s", s=B)
    assert told.startswith("released by the partner: ") and "limits.max_sites" in told, told
    net.close()
