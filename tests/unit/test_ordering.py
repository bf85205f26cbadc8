"""Unit tests for federationd.handlers.ordering: which inbound changes win (SPEC 2, "Versions").

A receiver applies a change only if its (epoch, version) is newer than what it holds; an older or equal one is a
duplicate, skipped and counted. Inside one message the newest change of a record wins. The model-based property
checks that a receiver driven only by `plan` converges, for any delivery order and any redelivery, to the
maximum stamp per record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federationd.handlers.ordering import (
    CURRENT,
    NEW,
    STALE,
    Change,
    Floor,
    SnapshotRef,
    complete,
    floor_stamp,
    newer,
    part_conflict,
    part_role,
    plan,
)
from federationd.wire import WireChange


@dataclass(frozen=True)
class C:
    """A minimal change (the `Change` protocol plus a payload to tell versions apart)."""

    category: str
    id: str
    version: int
    deleted: bool = False


def key(change: Change) -> tuple[str, str]:
    return (change.category, change.id)


# -- newer -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("incoming", "held", "expected"), [
    ((0, 1), None, True),            # nothing held: anything applies
    ((1, 5), (1, 5), False),         # equal: a duplicate
    ((1, 4), (1, 5), False),         # older version, same epoch
    ((1, 6), (1, 5), True),          # newer version, same epoch
    ((2, 1), (1, 999), True),        # a higher epoch beats a higher version of an older epoch
    ((1, 999), (2, 1), False),       # an older epoch loses whatever its version
    ((0, 10**12), (1, 0), False),
])
def test_newer(incoming: tuple[int, int], held: tuple[int, int] | None, expected: bool) -> None:
    assert newer(incoming, held) is expected


# -- plan --------------------------------------------------------------------------------------------------------

def test_empty_message_applies_nothing() -> None:
    result = plan([], 1, {})
    assert result.apply == []
    assert result.skipped == 0


def test_newest_change_per_record_wins_inside_a_batch() -> None:
    changes = [C("employee", "e-1", 3), C("employee", "e-1", 7), C("employee", "e-1", 5), C("employee", "e-2", 1)]
    result = plan(changes, 1, {})
    assert sorted((c.id, c.version) for c in result.apply) == [("e-1", 7), ("e-2", 1)]
    assert result.skipped == 2  # the two superseded versions of e-1


def test_same_id_in_different_categories_are_different_records() -> None:
    changes = [C("employee", "x", 2), C("department", "x", 1)]
    result = plan(changes, 1, {})
    assert sorted((c.category, c.version) for c in result.apply) == [("department", 1), ("employee", 2)]
    assert result.skipped == 0


@pytest.mark.parametrize(("held", "applied"), [
    ((1, 5), False),   # equal stamp: duplicate
    ((1, 6), False),   # we hold newer
    ((1, 4), True),    # we hold older
    ((0, 99), True),   # we hold an older epoch, even with a higher version
    ((2, 1), False),   # we hold a newer epoch, even with a lower version
])
def test_change_applies_only_if_newer_than_held(held: tuple[int, int], applied: bool) -> None:
    result = plan([C("employee", "e-1", 5)], 1, {("employee", "e-1"): held})
    assert (len(result.apply) == 1) is applied
    assert result.skipped == (0 if applied else 1)


def test_tombstone_is_planned_like_any_change_and_blocks_an_older_upsert() -> None:
    held = {("employee", "e-1"): (1, 10)}  # a tombstone at version 10
    assert plan([C("employee", "e-1", 9, deleted=False)], 1, held).apply == []
    assert plan([C("employee", "e-1", 11, deleted=True)], 1, held).apply == [C("employee", "e-1", 11, True)]


def test_plan_accepts_wire_changes() -> None:
    wire_changes = [WireChange(category="employee", id="e-1", origin="site-b", version=v, deleted=False,
                               data={"name": str(v)}) for v in (2, 9, 4)]
    result = plan(wire_changes, 3, {("employee", "e-1"): (3, 8)})
    assert [c.version for c in result.apply] == [9]
    assert result.skipped == 2


# -- model-based property ----------------------------------------------------------------------------------------

KEYS = [(category, record) for category in ("employee", "schedule") for record in ("a", "b", "c")]

stamps = st.tuples(st.integers(0, 3), st.integers(1, 12))
message_changes = st.lists(st.tuples(st.sampled_from(KEYS), st.integers(1, 12)), max_size=8)
messages = st.lists(st.tuples(st.integers(0, 3), message_changes), min_size=1, max_size=6)
held_states = st.dictionaries(st.sampled_from(KEYS), stamps, max_size=len(KEYS))


class Receiver:
    """A replica table driven only by `plan`, as apply_changes drives the database."""

    def __init__(self, held: dict[tuple[str, str], tuple[int, int]]) -> None:
        self.held = dict(held)
        self.applied = 0
        self.skipped = 0

    def deliver(self, epoch: int, changes: list[C]) -> None:
        result = plan(changes, epoch, self.held)
        assert result.skipped == len(changes) - len(result.apply)
        assert len({key(c) for c in result.apply}) == len(result.apply)  # at most one write per record
        for change in result.apply:
            assert newer((epoch, change.version), self.held.get(key(change)))
            self.held[key(change)] = (epoch, change.version)
        self.applied += len(result.apply)
        self.skipped += result.skipped


def as_changes(pairs: list[tuple[tuple[str, str], int]]) -> list[C]:
    # deleted is a function of the version so that two copies of one (record, version) never disagree
    return [C(category, record, version, deleted=version % 3 == 0) for (category, record), version in pairs]


def expected_state(held: dict[tuple[str, str], tuple[int, int]],
                   batch: list[tuple[int, list[C]]]) -> dict[tuple[str, str], tuple[int, int]]:
    state = dict(held)
    for epoch, changes in batch:
        for change in changes:
            state[key(change)] = max(state.get(key(change), (epoch, change.version)), (epoch, change.version))
    return state


@settings(max_examples=200)
@given(held=held_states, raw=messages, data=st.data())
def test_any_delivery_order_converges_to_the_max_stamp_per_record(
        held: dict[tuple[str, str], tuple[int, int]], raw: list[tuple[int, list[tuple[tuple[str, str], int]]]],
        data: st.DataObject) -> None:
    batch = [(epoch, as_changes(pairs)) for epoch, pairs in raw]
    expected = expected_state(held, batch)
    order = data.draw(st.permutations(batch), label="order")
    receiver = Receiver(held)
    for epoch, changes in order:
        receiver.deliver(epoch, changes)
    assert receiver.held == expected

    # redelivery (at-least-once transport): everything is a duplicate now, nothing changes
    again = data.draw(st.permutations(batch), label="redelivery")
    applied_before = receiver.applied
    for epoch, changes in again:
        receiver.deliver(epoch, changes)
    assert receiver.held == expected
    assert receiver.applied == applied_before


@settings(max_examples=100)
@given(held=held_states, raw=messages, data=st.data())
def test_two_receivers_with_different_orders_agree(
        held: dict[tuple[str, str], tuple[int, int]], raw: list[tuple[int, list[tuple[tuple[str, str], int]]]],
        data: st.DataObject) -> None:
    batch = [(epoch, as_changes(pairs)) for epoch, pairs in raw]
    first, second = Receiver(held), Receiver(held)
    for epoch, changes in data.draw(st.permutations(batch)):
        first.deliver(epoch, changes)
    for epoch, changes in data.draw(st.permutations(batch)):
        second.deliver(epoch, changes)
    assert first.held == second.held


@settings(max_examples=200)
@given(pairs=message_changes, epoch=st.integers(0, 3), held=held_states)
def test_plan_picks_exactly_the_per_record_maximum_when_newer(
        pairs: list[tuple[tuple[str, str], int]], epoch: int, held: dict[tuple[str, str], tuple[int, int]]) -> None:
    changes = as_changes(pairs)
    best: dict[tuple[str, str], int] = {}
    for change in changes:
        best[key(change)] = max(best.get(key(change), 0), change.version)
    wanted = {k: v for k, v in best.items() if k not in held or (epoch, v) > held[k]}
    result = plan(changes, epoch, held)
    assert {key(c): c.version for c in result.apply} == wanted
    assert result.skipped == len(changes) - len(wanted)


# --- snapshot parts in any order (federationd/handlers/ordering.py) ----------------------------------------------

S1, S2, S3 = SnapshotRef(10, "b"), SnapshotRef(20, "a"), SnapshotRef(30, "c")


@pytest.mark.parametrize(("incoming", "current", "finished", "role"), [
    (S2, None, None, NEW),          # the first part seen of a snapshot, whichever part it is
    (S2, S2, None, CURRENT),
    (S3, S2, None, NEW),            # a newer snapshot supersedes an unfinished one
    (S1, S2, None, STALE),          # a late part of a superseded snapshot
    (S2, None, S2, STALE),          # a redelivered part of a finished snapshot: never a second sweep
    (S1, None, S2, STALE),
    (S3, None, S2, NEW),
    (S3, S3, S2, CURRENT),
    (SnapshotRef(20, "b"), S2, None, NEW),  # same epoch: the id decides, the same way everywhere
])
def test_part_role(incoming: SnapshotRef, current: SnapshotRef | None, finished: SnapshotRef | None,
                   role: str) -> None:
    assert part_role(incoming, current, finished) == role


@pytest.mark.parametrize(("part", "final", "final_part", "highest", "conflict"), [
    (3, False, None, 2, None),
    (2, False, 4, 3, None),
    (5, False, 4, 3, "part 5 after a final part 4"),
    (4, True, 4, 3, None),          # the final part redelivered
    (3, True, 4, 2, "a second final part 3 (the final part was 4)"),
    (2, True, None, 3, "final part 2 after part 3"),
    (1, True, None, 0, None),       # a snapshot of one (empty) part
])
def test_part_conflict(part: int, final: bool, final_part: int | None, highest: int, conflict: str | None) -> None:
    assert part_conflict(part, final, final_part, highest) == conflict


def test_complete_needs_the_final_part_and_every_part() -> None:
    assert not complete(None, 3)
    assert not complete(4, 3)
    assert complete(4, 4)


@settings(max_examples=300)
@given(final=st.integers(1, 6), data=st.data())
def test_any_order_with_duplicates_completes_exactly_once(final: int, data: st.DataObject) -> None:
    """The receiver's bookkeeping as a model: a set of parts, the final part's number once seen."""
    parts = list(range(1, final + 1))
    order = data.draw(st.permutations(parts))
    extra = data.draw(st.lists(st.sampled_from(parts), max_size=6))
    positions = data.draw(st.lists(st.integers(0, final + 6), min_size=len(extra), max_size=len(extra)))
    sequence = list(order)
    for part, at in zip(extra, positions, strict=True):
        sequence.insert(min(at, len(sequence)), part)
    seen: set[int] = set()
    final_part: int | None = None
    completions = 0
    for part in sequence:
        assert part_conflict(part, part == final, final_part, max(seen, default=0)) is None
        first_time = part not in seen
        seen.add(part)
        final_part = final if part == final else final_part
        if first_time and complete(final_part, len(seen)):
            completions += 1
    assert completions == 1


FLOOR = Floor(20, frozenset({"employee", "schedule"}), date(2026, 3, 1))


@pytest.mark.parametrize(("category", "data", "stamp"), [
    ("employee", {"name": "x"}, (20, 0)),
    ("group", {"name": "x"}, None),                                          # not in the swept snapshot
    ("schedule", {"start": "2026-03-05T09:00:00", "end": "2026-03-05T10:00:00"}, (20, 0)),
    ("schedule", {"start": "2026-01-05T09:00:00", "end": "2026-01-05T10:00:00"}, None),  # before the window
])
def test_floor_stamp(category: str, data: dict[str, object], stamp: tuple[int, int] | None) -> None:
    assert floor_stamp(FLOOR, category, data) == stamp
    assert floor_stamp(None, category, data) is None
