"""What every benchmark shares: the run context (one broker, a scratch folder), results, data and measuring helpers.

Every figure a benchmark reports is a ratio against a baseline measured in the same run on the same machine: these
machines are shared and noisy, so absolute numbers say little from one run to the next.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, text

from federationd.store import reading
from tests.support.broker import ManagementAPIError, TestBroker
from tests.support.sites import Site
from tests.support.waiting import wait_until

BASE_EMPLOYEES = 50_000
SNAPSHOT_EMPLOYEES = 100_000
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Schedules that never send on their own: a benchmark decides when a send starts (send-now, relink, a snapshot).
NO_AUTO_SEND = {"schedule": {"quiet_period": "1h", "max_delay": "2h", "busy_retry": "1h"}}


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def scale() -> float:
    """FED_BENCH_SCALE: 1.0 = the issue's sizes (50,000 employees for the bulk run, 100,000 for the snapshot)."""
    value = env_float("FED_BENCH_SCALE", 1.0)
    if value <= 0:
        raise SystemExit("FED_BENCH_SCALE must be > 0")
    return value


def scaled(count: int) -> int:
    return max(100, round(count * scale()))


@dataclass
class Result:
    """One row of the results table: a figure of federationd, the same-run baseline, and their ratio."""

    bench: str
    backend: str
    metric: str
    value: float | None = None
    baseline: float | None = None
    unit: str = ""
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Context:
    """One run: the broker every benchmark shares, a scratch folder, and what earlier benchmarks measured."""

    broker: TestBroker
    root: Path
    backends: list[str]
    shared: dict[str, Any] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def site_id(self, name: str) -> str:
        return f"{name}-{next(self._ids)}"

    def site(self, stack: contextlib.ExitStack, name: str, backend: str, *, start: bool = True,
             extra: dict[str, Any] | None = None) -> Site:
        """An initialised site (daemon started unless told otherwise), closed (daemon stopped, PG database
        dropped) when `stack` unwinds, even on failure."""
        site_id = self.site_id(name)
        stack.callback(self.drop_vhost, site_id)  # runs after site.close (LIFO): the daemon is gone by then
        site = Site(site_id, self.root / site_id, self.broker, backend, extra=dict(extra or {}))
        stack.callback(site.close)
        site.cli("init")
        if start:
            site.start()
        return site


    def drop_vhost(self, vhost: str) -> None:
        """Delete a vhost (its queues) and its administrator, so later benchmarks run on a lean broker."""
        creds = self.broker.sites.pop(vhost, None)
        if not self.broker.running:
            return
        with contextlib.suppress(ManagementAPIError):
            self.broker.api("DELETE", f"/api/vhosts/{quote(vhost, safe='')}")
        if creds is not None:
            with contextlib.suppress(ManagementAPIError):
                self.broker.api("DELETE", f"/api/users/{quote(creds.user, safe='')}")


# -- data ------------------------------------------------------------------------------------------------------
_WORDS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima",
    "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey",
    "xray", "yankee", "zulu", "sales", "support", "engineering", "tokyo", "osaka", "nagoya", "meeting", "project",
    "review", "planning", "office", "remote", "customer", "partner", "quarterly", "report",
)
FIELDS = ("id", "name", "kana", "main_department", "departments", "position", "groups", "email", "phone", "title",
          "location", "bio")


def employee(index: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """An employee record of about 1 KB of JSON (a realistic profile padded with a free-text bio)."""
    dept = f"d-{index % 40:02d}"
    data: dict[str, Any] = {
        "name": f"Employee {index:06d}",
        "kana": f"エンプロイー {index:06d}",
        "main_department": dept,
        "departments": [dept, f"d-{(index * 7) % 40:02d}"],
        "position": f"p-{index % 12}",
        "groups": [f"g-{index % 25}", f"g-{(index * 3) % 25}"],
        "email": f"employee{index:06d}@example.co.jp",
        "phone": f"+81-3-{index % 10000:04d}-{(index * 13) % 10000:04d}",
        "title": rng.choice(("Engineer", "Manager", "Director", "Associate", "Specialist")),
        "location": rng.choice(("Tokyo HQ", "Osaka Branch", "Nagoya Office", "Remote")),
    }
    size = len(json.dumps(data, ensure_ascii=False).encode())
    words: list[str] = []
    while size < 1000:
        word = rng.choice(_WORDS)
        words.append(word)
        size += len(word) + 1
    data["bio"] = " ".join(words)
    return f"e-{index:06d}", data


def employees(count: int, seed: int = 7, start: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
    rng = random.Random(seed)
    for index in range(start, start + count):
        yield employee(index, rng)


def write_csv(path: Path, count: int) -> int:
    """The employees as an import file (JSON cells for the list fields); returns the file's size in bytes."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        for record_id, data in employees(count):
            writer.writerow([record_id] + [json.dumps(data[name], ensure_ascii=False) if isinstance(data[name], list)
                                           else data[name] for name in FIELDS[1:]])
    return path.stat().st_size


# -- measuring ---------------------------------------------------------------------------------------------------
def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5), counted after the name


def proc_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak RSS) in MiB, from /proc/PID/status."""
    result = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            result[key] = int(value.split()[0]) / 1024
    return result


def daemon_pid(site: Site) -> int:
    assert site.proc is not None, f"{site.id}: daemon not started"
    return site.proc.pid


def count_records(engine: Engine, origin: str, category: str = "employee", deleted: bool = False) -> int:
    """Live (or deleted) records of `origin` in a site's database, read without taking SQLite's write lock."""
    with reading(engine) as conn:
        return int(conn.execute(text("SELECT count(*) FROM records WHERE origin = :o AND category = :c AND "
                                     "deleted = :d"), {"o": origin, "c": category, "d": deleted}).scalar_one())


def settled(engine: Engine, partner: str) -> bool:
    """The link's start-up traffic is over at this site: initial snapshot sent, visit rules told, no control
    waiting. (A control message's send also carries every pending change, so a benchmark that wants to decide
    when changes go must wait for this before writing them.)"""
    with reading(engine) as conn:
        row = conn.execute(text("SELECT snapshot_due, send_now, visit_sent FROM links WHERE site = :p"),
                           {"p": partner}).first()
        waiting = conn.execute(text("SELECT count(*) FROM control_outbox WHERE site = :p"),
                               {"p": partner}).scalar_one()
    return row is not None and not row.snapshot_due and not row.send_now and row.visit_sent is not None \
        and waiting == 0


def wait_settled(engine_a: Engine, a: str, engine_b: Engine, b: str, timeout: float = 60) -> None:
    wait_until(lambda: settled(engine_a, b) and settled(engine_b, a), timeout, 0.2,
               what=f"the link {a} <-> {b} settled (snapshots sent, visit rules told)")
    wait_until(lambda: count_records(engine_b, a, "company") == 1 and count_records(engine_a, b, "company") == 1,
               timeout, 0.2, what=f"the initial snapshots of {a} and {b} applied")


def holds(engine: Engine, origin: str, record_id: str, category: str = "employee") -> bool:
    """The live record is in a site's database: one primary-key probe, whatever the size of the table."""
    with reading(engine) as conn:
        return conn.execute(text("SELECT 1 FROM records WHERE origin = :o AND category = :c AND id = :i AND "
                                 "deleted = :d"), {"o": origin, "c": category, "i": record_id, "d": False}).first() \
            is not None


def wait_for_count(engine: Engine, origin: str, expected: int, timeout: float, interval: float = 0.1,
                   what: str = "records applied", last: str | None = None) -> float:
    """Poll a site's database until `expected` live employees of `origin` are there; return the monotonic time
    at which the count was first seen complete. With `last` (the employee sent last), only it is looked up until
    it is there, and the count, which reads every record of the origin, runs only then: counting every 50 ms
    cost the database more the fuller the table got (a 50,000-record run on PostgreSQL read 2.5 million rows of
    the receiver's table that way, next to its 50,000 applied), and that was taken from the daemons measured."""
    wait_until(lambda: (last is None or holds(engine, origin, last)) and count_records(engine, origin) >= expected,
               timeout, interval, what=f"{expected} {what} (origin {origin})")
    return time.monotonic()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def placeholder(engine: Engine) -> str:
    """The DB-API parameter marker of the engine's driver (for exec_driver_sql)."""
    return "?" if engine.dialect.name == "sqlite" else "%s"


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return value / baseline


def timeout_for(records: int, per_second: float = 250.0, floor: float = 120.0) -> float:
    """A generous bound for waiting on `records` records: no benchmark may hang."""
    return floor + records / per_second
