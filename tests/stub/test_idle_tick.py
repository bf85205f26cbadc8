"""The send loop skips re-reading every link while nothing changed, and still starts each send when it falls due:
after a local write (once its quiet period passed), a `send-now`, a waiting control message, a pause lifted."""

from __future__ import annotations

from pathlib import Path

import pytest

from federationd import controls, links, sendloop
from federationd.metrics import Metrics
from tests.support.stub import StubNetwork
from tests.support.waiting import wait_until

A, B = "site-a", "site-b"


@pytest.fixture
def net(tmp_path: Path) -> StubNetwork:
    network = StubNetwork(tmp_path)
    network.add_site(A)
    network.add_site(B)
    network.link(A, B)
    return network


def test_idle_ticks_read_nothing_more_and_every_change_still_goes(net: StubNetwork,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    a = net.sites[A]
    reads: list[float] = []
    figures = sendloop.figures
    monkeypatch.setattr(sendloop, "figures", lambda conn, config, now: reads.append(now) or figures(conn, config, now))
    loop = sendloop.SendLoop(a.rt, Metrics(), workers=1)

    def tick(times: int = 1) -> None:
        for _ in range(times):
            loop.tick()
            wait_until(loop.idle, timeout=30, what="the send loop's sends to finish")

    def sent() -> int:
        return len(net.take(B)) if net.in_flight.get(B) else 0

    try:
        tick(3)  # whatever the link had to say when it was made goes; then it is idle
        net.in_flight[B] = []
        before = len(reads)
        tick(5)
        assert len(reads) == before, "idle ticks re-read the figures"
        assert sent() == 0

        a.put("employee", "e-1", {"name": "Sato"})
        tick()  # a local write: read again, but not due yet (quiet period)
        assert len(reads) == before + 1 and sent() == 0
        tick(3)
        assert len(reads) == before + 1, "nothing changed and nothing fell due: no read"
        net.clock.advance(3600)  # the time it falls due, with no change in the database
        tick()
        assert sent() == 1

        a.put("employee", "e-2", {"name": "Ito"})
        with a.rt.engine.begin() as conn:  # what `federationd send-now` writes
            links.change(conn, B, send_now=True)
        tick()
        assert sent() == 1

        with a.rt.engine.begin() as conn:
            links.change(conn, B, paused=True)
        a.put("employee", "e-3", {"name": "Kato"})
        net.clock.advance(3600)
        tick(2)
        assert sent() == 0  # paused
        with a.rt.engine.begin() as conn:
            links.change(conn, B, paused=False)
        tick()
        assert sent() == 1

        tick(2)
        with a.rt.engine.begin() as conn:  # a control message waiting (the data is not due): it goes at once
            controls.queue(conn, B, "hello", a.rt.now())
        tick()
        assert [d.kind for d in net.take(B)] == ["control"]
    finally:
        loop.shutdown()
