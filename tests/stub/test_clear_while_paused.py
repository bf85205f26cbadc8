"""`clear` reaches a send in flight even while the whole site is paused (the send loop then starts nothing, but
still hears the clear): the send is abandoned, nothing unconfirmed is marked sent, the change stays pending."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from federationd import lifecycle, links, sendloop
from federationd.metrics import Metrics
from federationd.store import reading
from tests.support.stub import StubNetwork
from tests.support.waiting import wait_until

A, B = "site-a", "site-b"


def test_clear_during_a_site_pause_abandons_the_send_in_flight(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    net = StubNetwork(tmp_path)
    net.add_site(A)
    net.add_site(B)
    net.link(A, B)
    a = net.sites[A]
    loop = sendloop.SendLoop(a.rt, Metrics(), workers=1)
    publishing, release = threading.Event(), threading.Event()

    def hang(sender: str, receiver: str, message: object) -> None:  # the partner never confirms, until released
        if sender == A:
            publishing.set()
            release.wait(30)

    try:
        for _ in range(3):  # whatever the new link had to say goes first
            loop.tick()
            wait_until(loop.idle, timeout=30, what="the link's first sends")
        with reading(a.rt.engine) as conn:
            sent_before = links.require(conn, B).sent_seq
        net.on_publish.append(hang)
        a.put("employee", "e-1", {"name": "Sato"})
        net.clock.advance(3600)
        loop.tick()
        wait_until(publishing.is_set, timeout=30, what="the send hanging in its publish")

        lifecycle.clear(a.rt, B)  # the operator clears; meanwhile the whole site is paused
        with caplog.at_level(logging.WARNING, logger="federationd.sendloop"):
            loop.tick(paused=True)
            release.set()
            wait_until(loop.idle, timeout=30, what="the abandoned send to end")
        assert "abandoning the send in flight to site-b" in caplog.text
        with reading(a.rt.engine) as conn:
            assert links.require(conn, B).sent_seq == sent_before, "an unconfirmed send was marked sent"
    finally:
        release.set()
        loop.shutdown()
