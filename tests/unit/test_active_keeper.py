"""The lock keeper's rules (federationd/active.py): when a daemon may act, with a fake lock and a fake clock."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from federationd.active import LEASE_SECONDS, TAKEOVER_GRACE_SECONDS, Keeper


class FakeLock:
    def __init__(self, fences: bool = True) -> None:
        self.fences = fences
        self.free = True
        self.mine = False
        self.down = False

    def acquire(self) -> bool:
        if self.down:
            raise OperationalError("SELECT", {}, Exception("connection refused"))
        if self.free:
            self.free, self.mine = False, True
        return self.mine

    def held(self) -> bool:
        return self.mine

    def holder(self) -> str | None:
        return None if self.mine else "db2 pid 7"

    def release(self) -> None:
        if self.mine:
            self.free, self.mine = True, False


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def keeper(lock: FakeLock, clock: Clock, events: list[str]) -> Keeper:
    return Keeper(lock, on_lost=events.append, on_error=lambda exc: events.append("error"),
                  on_ok=lambda: None, clock=clock)


def test_a_free_lock_taken_at_the_first_try_acts_at_once() -> None:
    clock, events = Clock(), []
    k = keeper(FakeLock(), clock, events)
    k.round()
    assert k.acting()


def test_a_standby_that_saw_another_holder_waits_the_grace_after_taking_the_lock() -> None:
    lock, clock, events = FakeLock(), Clock(), []
    lock.free = False
    k = keeper(lock, clock, events)
    k.round()
    assert not k.acting() and k.holder_seen == "db2 pid 7"
    lock.free = True  # the holder died
    clock.now += 1
    k.round()
    assert not k.acting() and k.holder_seen is None
    clock.now += TAKEOVER_GRACE_SECONDS - 0.1
    k.round()
    assert not k.acting()
    clock.now += 0.2
    assert k.acting()


def test_the_holder_stops_acting_when_its_lease_runs_out_unconfirmed() -> None:
    clock, events = Clock(), []
    k = keeper(FakeLock(), clock, events)
    k.round()
    clock.now += LEASE_SECONDS - 0.1
    assert k.acting()
    clock.now += 0.2  # no confirmation came back in time (a check hanging on a lost network)
    assert not k.acting()
    k.round()  # confirmed again
    assert k.acting()


def test_a_lost_lock_is_reported_at_once_and_stops_acting() -> None:
    lock, clock, events = FakeLock(), Clock(), []
    k = keeper(lock, clock, events)
    k.round()
    lock.mine = False  # an operator ended the session
    k.round()
    assert not k.acting()
    assert events and "lost the site's active lock" in events[0]


def test_the_database_down_is_reported_and_nothing_acts() -> None:
    lock, clock, events = FakeLock(), Clock(), []
    lock.down = True
    k = keeper(lock, clock, events)
    k.round()
    assert events == ["error"] and not k.acting()


def test_a_file_lock_has_no_lease() -> None:
    clock, events = Clock(), []
    k = keeper(FakeLock(fences=False), clock, events)
    k.round()
    clock.now += 10 * LEASE_SECONDS
    assert k.acting()
