"""Which inbound changes win, and where a snapshot part stands: pure rules over plain data, no database.

A change applies only if its `(epoch, version)` is newer than what the receiver holds for that record; an older or
equal one is a duplicate: skipped, counted, not an error. Within one message, the newest change of a record wins.
A snapshot's parts may arrive in any order, more than once, interleaved with a newer snapshot: the rules below say
which snapshot a part belongs to and when the snapshot is complete (docs/reliability.md, "Receiving").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from federationd.categories import schedule_in_window

Stamp = tuple[int, int]  # (epoch, version)


class Change(Protocol):
    @property
    def category(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def version(self) -> int: ...


def newer(incoming: Stamp, held: Stamp | None) -> bool:
    return held is None or incoming > held


@dataclass(frozen=True)
class Plan:
    apply: list[Change]
    skipped: int


def plan(changes: Sequence[Change], epoch: int, held: Mapping[tuple[str, str], Stamp]) -> Plan:
    """The changes to write (newest per record, newer than held) and how many were skipped as duplicates."""
    best: dict[tuple[str, str], Change] = {}
    for change in changes:
        key = (change.category, change.id)
        current = best.get(key)
        if current is None or change.version > current.version:
            best[key] = change
    chosen = [change for key, change in best.items() if newer((epoch, change.version), held.get(key))]
    return Plan(chosen, len(changes) - len(chosen))


# --- Snapshots, whatever order their parts arrive in ------------------------------------------------------------

CURRENT = "current"  # a part of the snapshot being received
NEW = "new"  # the first part seen of a newer snapshot: it supersedes the one being received, if any
STALE = "stale"  # a part of a finished or superseded snapshot: applied as ordinary changes, never swept on


@dataclass(frozen=True, order=True)
class SnapshotRef:
    """A snapshot, ordered by (epoch, id): every snapshot starts a new epoch, so the newer one is the larger."""

    epoch: int
    id: str


def part_role(incoming: SnapshotRef, current: SnapshotRef | None, finished: SnapshotRef | None) -> str:
    """What a part of `incoming` is, given the snapshot being received and the newest one finished."""
    if finished is not None and incoming <= finished:
        return STALE
    if current is None or incoming > current:
        return NEW
    return CURRENT if incoming == current else STALE


def part_conflict(part: int, final: bool, final_part: int | None, highest_seen: int) -> str | None:
    """Why a part contradicts the parts already seen of its snapshot (against the rules), or None."""
    if final_part is not None and part > final_part:
        return f"part {part} after a final part {final_part}"
    if final and final_part is not None and part != final_part:
        return f"a second final part {part} (the final part was {final_part})"
    if final and highest_seen > part:
        return f"final part {part} after part {highest_seen}"
    return None


def complete(final_part: int | None, parts_seen: int) -> bool:
    """Every part from 1 to the final one is in (parts are numbered 1..final and counted once each)."""
    return final_part is not None and parts_seen == final_part


@dataclass(frozen=True)
class Floor:
    """What the newest swept snapshot of an origin covered: its whole state as of `epoch`."""

    epoch: int
    categories: frozenset[str]
    since: date | None


def floor_stamp(floor: Floor | None, category: str, data: Mapping[str, object]) -> Stamp | None:
    """The stamp to assume for a record we do not hold: a swept snapshot of epoch E said it did not exist then,
    so any change stamped with an older epoch is older than that (None: not covered, anything newer applies)."""
    if floor is None or category not in floor.categories:
        return None
    if category == "schedule" and floor.since is not None and not schedule_in_window(dict(data), floor.since):
        return None  # outside the resent window: the snapshot said nothing about it
    return (floor.epoch, 0)
