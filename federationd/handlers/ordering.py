"""Which inbound changes win: pure rules over (epoch, version), no database.

A change applies only if its `(epoch, version)` is newer than what the receiver holds for that record; an older or
equal one is a duplicate: skipped, counted, not an error. Within one message, the newest change of a record wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

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
