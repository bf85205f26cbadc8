"""The link state machine, pair by pair: every (state, role, event) either moves to a known state or is refused
with a reason; the handshake's paths end where the manual says."""

from __future__ import annotations

import itertools

import pytest

from federationd import linkstate as ls

EXPECTED = {
    (ls.NONE, ls.REQUESTER, "accepted"): ls.AWAITING_START,
    (ls.NONE, ls.ACCEPTOR, "accept"): ls.AWAITING_START,
    (ls.STOPPED, ls.REQUESTER, "accepted"): ls.AWAITING_START,
    (ls.STOPPED, ls.ACCEPTOR, "accept"): ls.AWAITING_START,
    (ls.AWAITING_START, ls.REQUESTER, "start"): ls.LINKED,
    (ls.AWAITING_START, ls.REQUESTER, "reject"): ls.STOPPED,
    (ls.AWAITING_START, ls.ACCEPTOR, "release"): ls.STOPPED,
    (ls.AWAITING_START, ls.ACCEPTOR, "started"): ls.LINKED,
    (ls.LINKED, ls.ACCEPTOR, "started"): ls.LINKED,
    (ls.AWAITING_START, ls.ACCEPTOR, "rejected"): ls.STOPPED,
    (ls.AWAITING_START, ls.REQUESTER, "released"): ls.STOPPED,
    (ls.AWAITING_START, ls.REQUESTER, "expired"): ls.STOPPED,
    (ls.AWAITING_START, ls.ACCEPTOR, "expired"): ls.STOPPED,
    (ls.LINKED, ls.REQUESTER, "release"): ls.STOPPED,
    (ls.LINKED, ls.ACCEPTOR, "released"): ls.STOPPED,
    (ls.LINKED, ls.ACCEPTOR, "relink_requested"): ls.LINKED,
}
REFUSED = {
    (ls.AWAITING_START, ls.REQUESTER, "release"): "link reject",
    (ls.AWAITING_START, ls.ACCEPTOR, "start"): "only it starts",
    (ls.LINKED, ls.REQUESTER, "accepted"): "already exists",
    (ls.AWAITING_START, ls.ACCEPTOR, "accept"): "already exists",
    (ls.STOPPED, ls.REQUESTER, "start"): "stopped",
    (ls.LINKED, ls.REQUESTER, "started"): "linked",  # only the acceptor is started by its partner
    (ls.STOPPED, ls.ACCEPTOR, "relink_requested"): "stopped",
    (ls.NONE, ls.REQUESTER, "release"): "no link",
}

PAIRS = list(itertools.product(ls.STATES, ls.ROLES, ls.EVENTS))


@pytest.mark.parametrize(("state", "role", "event"), PAIRS)
def test_every_pair_is_decided(state, role, event):
    step = ls.decide(state, role, event)
    if step.allowed:
        assert step.state in ls.STATES and step.state != ls.NONE and step.refusal is None
    else:
        assert step.state is None and step.refusal
    if (state, role, event) in EXPECTED:
        assert step.state == EXPECTED[(state, role, event)]
    if (state, role, event) in REFUSED:
        assert not step.allowed and REFUSED[(state, role, event)] in step.refusal


@pytest.mark.parametrize(("state", "role", "event"), PAIRS)
def test_nothing_but_a_handshake_leaves_none_or_stopped(state, role, event):
    step = ls.decide(state, role, event)
    if state in (ls.NONE, ls.STOPPED) and step.allowed:
        assert event in ("accept", "accepted") and step.state == ls.AWAITING_START


def test_a_stopped_link_never_blocks_a_new_handshake():
    for role in ls.ROLES:
        assert ls.decide(ls.STOPPED, role, "accept").state == ls.AWAITING_START
        assert ls.decide(ls.STOPPED, role, "accepted").state == ls.AWAITING_START


def test_unknown_names_are_programming_errors():
    with pytest.raises(ValueError, match="unknown"):
        ls.decide("linked", "requester", "dance")
