"""How `status` gathers its rows (links plus tokens still waiting for an acceptance) and prints them."""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from federationd import links, usage
from federationd.identity import copied_database, installation_id
from federationd.limits import Finding
from federationd.runtime import Runtime
from federationd.schema import tokens
from federationd.status import LinkStatus, figures
from federationd.store import load_site_state, reading
from federationd.tokens import iso


def status_rows(rt: Runtime) -> list[LinkStatus]:
    """Every link's row, then the tokens still open or lately lapsed; each row carries the limit warnings that
    concern it (the whole site's, and those about its partner's employees)."""
    now = rt.now()
    guarded = guard_problem(rt) is not None
    with reading(rt.engine) as conn:
        found = usage.findings(conn, rt.config)
        rows = figures(conn, rt.config, now, guard_paused=guarded)
        open_tokens = conn.execute(select(tokens).where(tokens.c.used_at.is_(None), tokens.c.revoked.is_(False),
                                                        tokens.c.expires_at > now)).mappings().all()
        # An unaccepted token past its expiry shows as `stopped` (for a week, then it is history).
        lapsed = conn.execute(select(tokens).where(tokens.c.used_at.is_(None), tokens.c.expires_at <= now,
                                                   tokens.c.expires_at > now - EXPIRED_SHOWN_SECONDS)
                              ).mappings().all()
    for token in open_tokens:
        rows.append(_token_row(rt, token, links.REQUESTED, f"token {token['id']} expires {iso(token['expires_at'])}",
                               guarded))
    for token in lapsed:
        rows.append(_token_row(rt, token, links.STOPPED,
                               f"token {token['id']} expired unaccepted at {iso(token['expires_at'])}", guarded))
    return [dataclasses.replace(row, limit_warnings=_concerning(found, rt.home, row.site)) for row in rows]


def _concerning(found: list[Finding], home: str, site: str | None) -> tuple[str, ...]:
    return tuple(finding.message for finding in found if finding.site in (None, home, site))


def limit_notes(rows: list[LinkStatus]) -> list[str]:
    """Each limit warning once, for the header of the text output."""
    return [f"warning: {message}" for message in dict.fromkeys(w for row in rows for w in row.limit_warnings)]


EXPIRED_SHOWN_SECONDS = 7 * 24 * 3600


def _token_row(rt: Runtime, token: Any, state: str, note: str, guarded: bool) -> LinkStatus:
    if token["for_site"]:
        note = f"{note} (for {token['for_site']})"
    return LinkStatus(site=None, state=state, paused=rt.config.paused or guarded, sending=False,
                      last_send_at=None, next_send_at=None, categories=[], pending_records=0, lag_seconds=0.0,
                      last_receive_at=None, failures=0, last_error=note, snapshot_due=False, send_now=False,
                      paused_by="guard" if guarded else ("yaml" if rt.config.paused else None))


def guard_problem(rt: Runtime) -> str | None:
    """Why the daemon would keep the whole site paused, if the database belongs to another installation."""
    with reading(rt.engine) as conn:
        theirs = load_site_state(conn).installation_id
    if installation_id(rt.config.state_dir) != theirs or copied_database(rt.config.state_dir, rt.engine):
        return ("the database carries another installation's identity, or is a copy of this one's: the site stays "
                "paused until `federationd adopt --i-am-the-site`")
    return None


def print_status(rt: Runtime, rows: list[LinkStatus], full: bool = False) -> None:
    """On a terminal: a table fitted to its width (`full`: every column, wrapped). Piped: tab-separated lines
    with a header line, no padding, header notes as `#` lines (for grep, cut and awk)."""
    from federationd.cli.health import role_line  # noqa: PLC0415

    notes = [f"site {rt.home}" + (" — PAUSED (site-wide)" if rt.config.paused else ""), role_line(rt)]
    from federationd.site_details import url_warning  # noqa: PLC0415

    notes += [problem for problem in (guard_problem(rt), url_warning(rt)) if problem]
    notes += limit_notes(rows)
    if not sys.stdout.isatty():
        for line in tsv_lines(notes, rows):
            sys.stdout.write(line + "\n")
        return
    console = Console(highlight=False)
    console.print(notes[0])
    console.print(notes[1])
    for note in notes[2:]:
        console.print(f"[bold red]{note}[/]")
    console.print(table(rows, full))


COLUMNS = ("site", "state", "paused", "last send", "next send", "categories", "pending", "lag", "last receive",
           "note")
COMPACT = ("site", "state", "paused", "last send", "next send", "pending", "lag", "last receive")


def _cells(row: LinkStatus, short: bool) -> dict[str, str]:
    when = _short if short else lambda value: iso(value) or ""
    return {"site": row.site or "-", "state": row.state, "paused": _paused(row),
            "last send": "sending" if row.sending else (when(row.last_send_at) or "never"),
            "next send": when(row.next_send_at) or "-", "categories": ",".join(row.categories) or "-",
            "pending": str(row.pending_records), "lag": _duration(row.lag_seconds) if short else
            f"{row.lag_seconds:.0f}", "last receive": when(row.last_receive_at) or "never",
            "note": _row_note(row)}


def _row_note(row: LinkStatus) -> str:
    waits = (f"snapshot waits for its window (schedule.snapshot_windows) until {iso(row.snapshot_waits_until)}"
             if row.snapshot_waits_until is not None else None)
    return "; ".join(note for note in (waits, row.last_error) if note)


def tsv_lines(notes: list[str], rows: list[LinkStatus]) -> list[str]:
    """Every column, full values, tab-separated; times ISO 8601 UTC, lag in seconds."""
    lines = [f"# {note}" for note in notes]
    lines.append("\t".join(column.replace(" ", "_") for column in COLUMNS))
    for row in rows:
        cells = _cells(row, short=False)
        lines.append("\t".join(" ".join(cells[column].split()) for column in COLUMNS))
    return lines


def table(rows: list[LinkStatus], full: bool) -> Group:
    """The terminal table. Compact: short times (HH:MM today, else MM-DD, UTC), and each link's note on a line
    of its own below, cut to the width. With `full`: every column, full times, wrapped."""
    columns = COLUMNS if full else COMPACT
    grid = Table(box=None, pad_edge=False, collapse_padding=True, padding=(0, 1))
    for column in columns:
        grid.add_column("received" if column == "last receive" and not full else column,
                        overflow="fold" if full else "ellipsis", no_wrap=not full)
    for row in rows:
        cells = _cells(row, short=not full)
        grid.add_row(*(cells[column] for column in columns))
    if full:
        return Group(grid)
    notes = [Text(_note(row.site or "-", _row_note(row)), no_wrap=True, overflow="ellipsis")
             for row in rows if _row_note(row)]
    return Group(grid, *notes)


def _paused(row: LinkStatus) -> str:
    if not row.paused:
        return "no"
    return f"yes ({row.paused_by})" if row.paused_by else "yes"


def _note(site: str, note: str) -> str:
    note = " ".join(note.split())
    return note if note.startswith(f"{site}:") else f"{site}: {note}"


def _short(value: float | None) -> str:
    text = iso(value)
    if not text:
        return ""
    return text[11:16] if text[:10] == iso(time.time())[:10] else text[5:10]  # type: ignore[index]


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
