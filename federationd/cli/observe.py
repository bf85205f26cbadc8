"""What an operator looks at: `status`, `log` and `history`."""

from __future__ import annotations

import json
import sys

import click

from federationd.cli.base import State, emit, guarded, json_option, main, pass_state
from federationd.errors import RejectedChange
from federationd.store import reading


def _moment(text: str | None, option: str, through: bool = False) -> float | None:
    """An ISO 8601 date/time (UTC if no offset), or a duration back from now (`2h`, `7d`). With `through`, a
    time given to the second covers that whole second (as `log` prints times to the second)."""
    if text is None:
        return None
    from datetime import UTC, datetime  # noqa: PLC0415

    from federationd.durations import parse_duration  # noqa: PLC0415

    try:
        return datetime.now(UTC).timestamp() - parse_duration(text).total_seconds()
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RejectedChange("invalid_option", f"{option} {text!r}: use an ISO 8601 time or a duration like 2h") \
            from None
    value = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return value + 0.999999 if through and moment.microsecond == 0 else value


@main.command("log")
@click.option("--site", help="Only this partner.")
@click.option("--direction", type=click.Choice(["send", "receive"]))
@click.option("--category")
@click.option("--since", help="ISO 8601 time, or a duration back from now (2h, 7d).")
@click.option("--until", help="ISO 8601 time, or a duration back from now.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=10_000, show_default=True)
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header line.")
@json_option
@pass_state
@guarded
def log_(state: State, site: str | None, direction: str | None, category: str | None, since: str | None,
         until: str | None, limit: int, as_csv: bool, as_json: bool) -> None:
    """The link log, newest first (at most 10,000 rows; older than log.retention is purged)."""
    import csv  # noqa: PLC0415

    from federationd import linklog  # noqa: PLC0415

    query = linklog.LogQuery(site, direction, category, _moment(since, "--since"),
                             _moment(until, "--until", through=True), limit)
    with reading(state.runtime().engine) as conn:
        rows, total = linklog.read(conn, query)
    if total > len(rows):
        click.echo(f"federationd: showing the newest {len(rows)} of {total} matching rows (narrow with --since, "
                   "--until, --site or --category)", err=True)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=["at", "site", "direction", "category", "message"])
        writer.writeheader()
        writer.writerows(rows)
    else:
        for row in rows:
            click.echo(f"{row['at']}  {row['site']:<16} {row['direction']:<7} {row['category'] or '-':<10} "
                       f"{row['message']}")


@main.command()
@click.argument("site")
@json_option
@pass_state
@guarded
def history(state: State, site: str, as_json: bool) -> None:
    """Last receive time per category from a partner; never-received categories show as such."""
    from sqlalchemy import select  # noqa: PLC0415

    from federationd import links  # noqa: PLC0415
    from federationd.categories import CATEGORIES  # noqa: PLC0415
    from federationd.schema import receive_history  # noqa: PLC0415
    from federationd.tokens import iso  # noqa: PLC0415

    with reading(state.runtime().engine) as conn:
        links.require(conn, site)
        seen = dict(conn.execute(select(receive_history.c.category, receive_history.c.last_received_at)
                                 .where(receive_history.c.site == site)).all())
    rows = [{"category": category, "last_received_at": iso(seen.get(category))} for category in CATEGORIES]

    def text() -> None:
        for row in rows:
            click.echo(f"{row['category']:<11} {row['last_received_at'] or 'never received'}")
    emit(as_json, rows, text)


@main.command()
@click.option("--full", is_flag=True, help="On a terminal: every column, full times, nothing cut.")
@json_option
@pass_state
@guarded
def status(state: State, full: bool, as_json: bool) -> None:
    """One row per link: state, paused, last and next send, pending records, lag, last receive.

    On a terminal the table fits its width; piped, it prints tab-separated lines with a header line.

    \b
    Examples:
      federationd status
      federationd status | awk -F'\\t' '$3 == "yes"'    # paused links
      federationd status --json | jq '.[].lag_seconds'
    """
    from federationd.cli.health import active_daemon  # noqa: PLC0415
    from federationd.status_view import print_status, status_rows  # noqa: PLC0415

    rt = state.runtime()
    rows = status_rows(rt)
    holder = active_daemon(rt) if as_json else None  # each row says which daemon of this site is active
    emit(as_json, [{**row.as_json(), "active_daemon": holder} for row in rows], lambda: print_status(rt, rows, full))
