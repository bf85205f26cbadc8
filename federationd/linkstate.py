"""The one link state machine (states as in docs/operations.md): `(state, role, event) -> new state | refusal`.

Every verb (handshake and lifecycle) and every control handler asks `decide` before it changes a link; nothing
else decides a transition. Pure: plain strings in, a `Step` out. `NONE` stands for "no link with that site yet".
"""

from __future__ import annotations

from dataclasses import dataclass

NONE = "none"
AWAITING_START = "awaiting_start"
LINKED = "linked"
STOPPED = "stopped"
STATES = (NONE, AWAITING_START, LINKED, STOPPED)
REQUESTER = "requester"
ACCEPTOR = "acceptor"
ROLES = (REQUESTER, ACCEPTOR)

# Verbs (this site's operator) and received controls (the partner, or the clock).
EVENTS = (
    "accept",  # verb: we accept the partner's token
    "accepted",  # received: the partner accepted our token
    "start", "reject", "release",  # verbs
    "started", "rejected", "released",  # received: the partner started, rejected (or refused), released
    "expired",  # clock: awaiting_start outlived the token's expiry plus the grace period
    "pause", "resume", "send_now", "clear", "relink",  # lifecycle verbs
    "relink_requested", "change_url", "visit_policy", "watermark", "hello",  # received on a live link
    "accept_policy", "fetch", "fetch_requested",
    "site_details",  # received: the partner's company or site name changed
)


@dataclass(frozen=True)
class Step:
    state: str | None  # the new state, or None if refused
    refusal: str | None = None

    @property
    def allowed(self) -> bool:
        return self.state is not None


_ANY = ROLES
_LIVE = (AWAITING_START, LINKED)


def _table() -> dict[tuple[str, str, str], str]:
    table: dict[tuple[str, str, str], str] = {}

    def allow(states: tuple[str, ...], roles: tuple[str, ...], events: tuple[str, ...], to: str | None) -> None:
        for state in states:
            for role in roles:
                for event in events:
                    table[(state, role, event)] = to or state

    # A stopped link never blocks a new handshake between the same pair.
    allow((NONE, STOPPED), _ANY, ("accept", "accepted"), AWAITING_START)
    allow((AWAITING_START,), (REQUESTER,), ("start",), LINKED)
    allow((AWAITING_START,), (REQUESTER,), ("reject",), STOPPED)
    allow((AWAITING_START,), (ACCEPTOR,), ("release",), STOPPED)
    allow((LINKED,), _ANY, ("release",), STOPPED)
    allow((AWAITING_START,), (ACCEPTOR,), ("started", "rejected"), None)
    table[(AWAITING_START, ACCEPTOR, "started")] = LINKED
    table[(AWAITING_START, ACCEPTOR, "rejected")] = STOPPED
    allow((LINKED,), (ACCEPTOR,), ("started",), LINKED)  # `link start` retried after a partial failure
    allow(_LIVE, _ANY, ("released",), STOPPED)
    allow((AWAITING_START,), _ANY, ("expired",), STOPPED)
    allow(_LIVE, _ANY, ("pause", "resume"), None)
    allow((LINKED,), _ANY, ("send_now", "clear", "relink", "relink_requested", "visit_policy",
                            "watermark", "hello", "accept_policy", "fetch", "fetch_requested"), None)
    # A partner that moved its broker or renamed itself tells us while the link awaits its start, too.
    allow(_LIVE, _ANY, ("change_url", "site_details"), None)
    return table


TABLE = _table()


def _refusal(state: str, role: str, event: str) -> str:
    if state == NONE:
        return "there is no link with that site"
    if state == AWAITING_START and role == REQUESTER and event == "release":
        return "the partner accepted and awaits our start: use `link reject` instead"
    if state == AWAITING_START and role == ACCEPTOR and event in ("start", "reject"):
        return "the partner requested this link: only it starts or rejects it (`link release` withdraws ours)"
    if event in ("accept", "accepted"):
        return f"a link with that site already exists ({state})"
    return f"the link is {state}: {event} is not possible"


def decide(state: str, role: str, event: str) -> Step:
    """The new state for `event` on a link in `state` where this site is `role`, or the reason it is refused."""
    if state not in STATES or role not in ROLES or event not in EVENTS:
        raise ValueError(f"unknown state, role or event: {(state, role, event)!r}")
    new = TABLE.get((state, role, event))
    if new is None:
        return Step(None, _refusal(state, role, event))
    return Step(new)
