"""Per-link figures for `status`, the metrics collector and the send loop, read from the database.

Links that share a watermark share the outbox query: with 200 partners that are all caught up this is one
query, not 200.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from federationd import links
from federationd.config import Config
from federationd.outbox.scheduler import Pending, Timing, due_at
from federationd.schema import control_outbox, outbox, records
from federationd.store import load_site_state
from federationd.tokens import iso


@dataclass(frozen=True)
class LinkStatus:
    site: str | None
    state: str
    paused: bool
    sending: bool
    last_send_at: float | None
    next_send_at: float | None
    categories: list[str]
    pending_records: int
    lag_seconds: float
    last_receive_at: float | None
    failures: int
    last_error: str | None
    snapshot_due: bool
    send_now: bool
    control_due: float | None = None  # control messages waiting (release, relink, watermark, ...): sent then
    paused_by: str | None = None  # guard | yaml | cli: what pauses it (the first that applies), or None
    snapshot_waits_until: float | None = None  # a due snapshot waits for schedule.snapshot_windows until then
    limit_warnings: tuple[str, ...] = ()  # the limits past which this link's figures or the site's are

    def as_json(self) -> dict[str, Any]:
        """The `status --json` row (docs/cli.md) (plus `sending`, `categories` and `note`: the last error, or why
        the link needs attention; `snapshot_waits_until`; `limit_warnings`)."""
        return {"site": self.site, "state": self.state, "paused": self.paused,
                "last_send_at": iso(self.last_send_at), "next_send_at": iso(self.next_send_at),
                "pending_records": self.pending_records, "lag_seconds": round(self.lag_seconds, 3),
                "last_receive_at": iso(self.last_receive_at), "sending": self.sending,
                "categories": self.categories, "note": self.last_error, "paused_by": self.paused_by,
                "snapshot_waits_until": iso(self.snapshot_waits_until),
                "limit_warnings": list(self.limit_warnings)}

    @property
    def up(self) -> bool:
        return self.state == links.LINKED and self.failures == 0


def timing(config: Config) -> Timing:
    schedule = config.schedule
    return Timing(schedule.quiet_period.total_seconds(), schedule.max_delay.total_seconds(),
                  schedule.busy_retry.total_seconds())


def is_paused(config: Config, link: links.Link, site_paused: bool = False) -> bool:
    """Paused site-wide or per link, in the YAML or by `federationd pause` (`site_paused`: the database's flag
    or the copied-database guard)."""
    return site_paused or config.paused or config.link(link.site).paused or link.paused


GUARD, YAML, CLI = "guard", "yaml", "cli"


def paused_by(config: Config, link: links.Link, site_paused: bool = False, guard: bool = False) -> str | None:
    """What pauses a link: the copied-database guard, the YAML (site-wide or per link), or `federationd pause`
    (`site_paused`: the database's site-wide flag); None when it is not paused."""
    if guard:
        return GUARD
    if config.paused or config.link(link.site).paused:
        return YAML
    if site_paused or link.paused:
        return CLI
    return None


def _pending(conn: Connection, home: str, sent_seq: int) -> tuple[Pending, int, list[str]]:
    rows, first_at, last_at, last_seq = conn.execute(select(
        func.count(), func.min(outbox.c.created_at), func.max(outbox.c.created_at), func.max(outbox.c.seq),
    ).where(outbox.c.seq > sent_seq)).one()
    pending_records = conn.execute(select(func.count()).select_from(records).where(
        records.c.origin == home, records.c.version > sent_seq)).scalar_one()
    categories = sorted(conn.execute(select(outbox.c.category).distinct().where(outbox.c.seq > sent_seq)).scalars())
    return Pending(int(rows), first_at, last_at, int(last_seq or 0)), int(pending_records), categories


def controls_waiting(conn: Connection) -> dict[str, int]:
    """Control messages waiting per partner."""
    rows = conn.execute(select(control_outbox.c.site, func.count()).group_by(control_outbox.c.site))
    return {site: int(count) for site, count in rows}


def _synced(link: links.Link) -> str | None:
    """The note of a link with nothing wrong: when the partner's broker last confirmed our access settings."""
    if link.access_synced_at is None:
        return None
    return f"access settings sync confirmed at {iso(link.access_synced_at)}"


def figures(conn: Connection, config: Config, now: float, guard_paused: bool = False) -> list[LinkStatus]:
    """Every link's figures; `guard_paused` when the daemon found another installation's database."""
    site = load_site_state(conn)
    site_paused = site.paused or guard_paused
    controls = controls_waiting(conn)
    cache: dict[int, tuple[Pending, int, list[str]]] = {}
    schedule = timing(config)
    result = []
    for link in links.all_links(conn):
        linked = link.state == links.LINKED
        if linked and link.sent_seq not in cache:
            cache[link.sent_seq] = _pending(conn, site.site_id, link.sent_seq)
        pending, count, categories = cache.get(link.sent_seq, (Pending(), 0, [])) if linked else (Pending(), 0, [])
        due, waits = None, None
        if linked:
            due = due_at(pending, schedule, send_now=link.send_now, snapshot_due=link.snapshot_due,
                         retry_at=link.retry_at, deferred_until=link.deferred_until, hold_seq=link.hold_seq)
            if due is not None and link.snapshot_due and not link.send_now:
                waits = _window_wait(config, max(due, now))
                due = waits or due
        # Waiting control messages go at once (a released link still delivers its release), but they do not
        # pull the data along: the quiet period holds for the data whatever the partner sends us.
        control_due = max(now, link.retry_at or 0.0) if controls.get(link.site, 0) else None
        result.append(LinkStatus(
            site=link.site, state=link.state, paused=is_paused(config, link, site_paused),
            paused_by=paused_by(config, link, site.paused, guard_paused),
            sending=link.sending_since is not None,
            last_send_at=link.last_send_at, next_send_at=max(due, now) if due is not None else None,
            categories=categories, pending_records=count,
            lag_seconds=max(0.0, now - pending.first_at) if pending.first_at is not None else 0.0,
            last_receive_at=link.last_receive_at, failures=link.failures,
            last_error=links.regression_note(link.site, link.watermark_epoch, link.watermark_seq, site.epoch,
                                             site.next_seq)
            if links.went_back(site.epoch, site.next_seq, link.watermark_epoch, link.watermark_seq)
            else (link.stop_reason if link.state == links.STOPPED else link.last_error or _synced(link)),
            snapshot_due=link.snapshot_due, send_now=link.send_now, control_due=control_due,
            snapshot_waits_until=waits))
    return result


def _window_wait(config: Config, due: float) -> float | None:
    """When a snapshot due at `due` may start, if a snapshot window makes it wait (an operator's `send-now` or
    `relink --now` set `send_now` and never wait)."""
    allowed = config.schedule.snapshot_allowed_at(due)
    return allowed if allowed > due else None
