"""`federationd import CATEGORY FILE.csv`: every row in one transaction, under the site's bulk lock.

The file is read and checked whole before anything is written; a bad file fails naming the line and column and
writes nothing. The header names the fields, one of them `id`. A cell holding a JSON array or object (`[...]`,
`{...}`) is taken as JSON (for `departments`, `groups`, `attendees`, ...); an empty cell leaves the field out;
every other cell is a string.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from federationd.categories import check_category, find_credential
from federationd.errors import RejectedChange
from federationd.outbox import capture
from federationd.schema import bulk_lock

CHUNK_ROWS = 1000
LOCK_NAME = "bulk"
STALE_LOCK_SECONDS = 3600  # a lock left by a job on another host that died stops holding sends back after this
_HOLDER = re.compile(r"^(\d+)@(\S+) ")  # "PID@HOST what": a dead PID on this host frees the lock at once

Row = tuple[str, dict[str, Any]]


def read_rows(path: Path, category: str) -> tuple[list[Row], dict[str, int]]:
    """Parse and check the whole file; raise RejectedChange naming the line (and column) of the first problem.
    Returns the rows and the line each id is on."""
    check_category(category)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RejectedChange("invalid_file", f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise RejectedChange("invalid_file", f"{path}: line {line}: not UTF-8 text (save the file as UTF-8)") \
            from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise RejectedChange("invalid_file", f"{path}: the file is empty") from None
    except csv.Error as exc:
        raise RejectedChange("invalid_file", f"{path}: line 1: {exc}") from None
    _check_header(path, header)
    rows: list[Row] = []
    first_line: dict[str, int] = {}
    try:
        for fields in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in fields):
                continue  # blank lines are fine
            if len(fields) != len(header):
                raise RejectedChange("invalid_file", f"{path}: line {line}: {len(fields)} fields, the header has "
                                     f"{len(header)}")
            record_id, data = _row(path, line, header, fields)
            if record_id in first_line:
                raise RejectedChange("invalid_file", f"{path}: line {line}: id {record_id!r} again (first on "
                                     f"line {first_line[record_id]})")
            first_line[record_id] = line
            rows.append((record_id, data))
    except csv.Error as exc:
        raise RejectedChange("invalid_file", f"{path}: line {reader.line_num}: {exc}") from None
    return rows, first_line


def _check_header(path: Path, header: list[str]) -> None:
    names = [name.strip() for name in header]
    if "id" not in names:
        raise RejectedChange("invalid_file", f"{path}: line 1: no `id` column (columns: {', '.join(names)})")
    for index, name in enumerate(names, start=1):
        if not name:
            raise RejectedChange("invalid_file", f"{path}: line 1, column {index}: empty column name")
        if names.index(name) != index - 1:
            raise RejectedChange("invalid_file", f"{path}: line 1, column {index}: column {name!r} twice")
        if find_credential({name: ""}):
            raise RejectedChange("credential_field", f"{path}: line 1, column {index} ({name!r}): credential "
                                 "fields are never federated: remove the column")


def _row(path: Path, line: int, header: list[str], fields: list[str]) -> Row:
    data: dict[str, Any] = {}
    record_id = ""
    for index, (raw_name, raw_cell) in enumerate(zip(header, fields, strict=True), start=1):
        name, cell = raw_name.strip(), raw_cell.strip()
        if name == "id":
            record_id = cell
            continue
        if not cell:
            continue
        if cell[0] in "[{":
            try:
                data[name] = json.loads(cell)
            except ValueError:
                raise RejectedChange("invalid_file", f"{path}: line {line}, column {index} ({name!r}): "
                                     "starts like JSON but is not valid JSON") from None
        else:
            data[name] = cell
    if not record_id:
        raise RejectedChange("invalid_file", f"{path}: line {line}: empty id")
    return record_id, data


def lock_held(conn: Connection, now: float) -> bool:
    """Whether a live bulk job holds the lock: one whose process still runs here (or, on another host, that took
    it less than STALE_LOCK_SECONDS ago). A lock left by a job killed mid-import holds nothing back."""
    return any(_alive(holder, acquired_at, now) for holder, acquired_at in conn.execute(
        select(bulk_lock.c.holder, bulk_lock.c.acquired_at)))


def _alive(holder: str, acquired_at: float, now: float) -> bool:
    if acquired_at < now - STALE_LOCK_SECONDS:
        return False
    match = _HOLDER.match(holder)
    if match is None or match.group(2) != socket.gethostname():
        return True
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


@contextmanager
def held(engine: Engine, holder: str, now: float) -> Iterator[None]:
    """Hold the site's bulk lock (committed, so the daemon sees it) for the duration of the block."""
    try:
        with engine.begin() as conn:
            if not lock_held(conn, now):  # a dead job's lock is taken over
                conn.execute(delete(bulk_lock).where(bulk_lock.c.name == LOCK_NAME))
            conn.execute(insert(bulk_lock).values(name=LOCK_NAME, holder=holder, acquired_at=now))
    except IntegrityError:
        with engine.connect() as conn:
            other = conn.execute(select(bulk_lock.c.holder).where(bulk_lock.c.name == LOCK_NAME)).scalar()
        raise RejectedChange("bulk_locked", f"another bulk job holds the lock: {other}") from None
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(delete(bulk_lock).where(bulk_lock.c.name == LOCK_NAME, bulk_lock.c.holder == holder))


def run_import(engine: Engine, category: str, path: Path, progress: Callable[[int, int], None] | None = None,
               now: float | None = None) -> int:
    """Import a CSV file in one transaction under the bulk lock; returns the number of records written."""
    rows, lines = read_rows(path, category)
    moment = time.time() if now is None else now
    holder = f"{os.getpid()}@{socket.gethostname()} import {category} {path.name}"
    with held(engine, holder, moment), engine.begin() as conn:
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = rows[start:start + CHUNK_ROWS]
            try:
                capture.put_many(conn, category, chunk, now=moment)
            except RejectedChange as exc:
                where = f"line {lines[exc.record_id]}: " if exc.record_id in lines else ""
                raise RejectedChange(exc.reason, f"{path}: {where}{exc}; nothing was imported") from None
            if progress is not None:
                progress(start + len(chunk), len(rows))
    return len(rows)
