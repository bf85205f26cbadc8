"""How `status` gathers its rows (links plus tokens still waiting for an acceptance) and prints them."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from federationd import links
from federationd.identity import installation_id
from federationd.runtime import Runtime
from federationd.schema import tokens
from federationd.status import LinkStatus, figures
from federationd.store import load_site_state, reading
from federationd.tokens import iso


def status_rows(rt: Runtime) -> list[LinkStatus]:
    now = rt.now()
    guarded = guard_problem(rt) is not None
    with reading(rt.engine) as conn:
        rows = figures(conn, rt.config, now, guard_paused=guarded)
        open_tokens = conn.execute(select(tokens).where(tokens.c.used_at.is_(None), tokens.c.revoked.is_(False),
                                                        tokens.c.expires_at > now)).mappings().all()
    for token in open_tokens:
        rows.append(LinkStatus(site=None, state=links.REQUESTED, paused=rt.config.paused or guarded, sending=False,
                               last_send_at=None, next_send_at=None, categories=[], pending_records=0,
                               lag_seconds=0.0, last_receive_at=None, failures=0,
                               last_error=f"token {token['id']} expires {iso(token['expires_at'])}",
                               snapshot_due=False, send_now=False))
    return rows


def guard_problem(rt: Runtime) -> str | None:
    """Why the daemon would keep the whole site paused, if the database belongs to another installation."""
    with reading(rt.engine) as conn:
        theirs = load_site_state(conn).installation_id
    if installation_id(rt.config.state_dir) != theirs:
        return ("the database carries another installation's identity: the site stays paused until "
                "`federationd adopt --i-am-the-site`")
    return None


def print_status(rt: Runtime, rows: list[LinkStatus]) -> None:
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    problem = guard_problem(rt)
    header = f"site {rt.home}" + (" — PAUSED (site-wide)" if rt.config.paused else "")
    console.print(header)
    if problem:
        console.print(f"[bold red]{problem}[/]")
    table = Table(box=None, pad_edge=False)
    for column in ("site", "state", "paused", "last send", "next send", "categories", "pending", "lag",
                   "last receive", "note"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.site or "-", row.state, "yes" if row.paused else "no",
                      "sending" if row.sending else (iso(row.last_send_at) or "never"),
                      iso(row.next_send_at) or "-", ",".join(row.categories) or "-", str(row.pending_records),
                      f"{row.lag_seconds:.0f}s", iso(row.last_receive_at) or "never", row.last_error or "")
    console.print(table)
