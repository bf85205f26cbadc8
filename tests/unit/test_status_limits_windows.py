"""How `status` says a snapshot waits for its window and which limits are passed (federationd/status*.py)."""

from __future__ import annotations

import dataclasses

from federationd.config import Config
from federationd.limits import Finding
from federationd.status import LinkStatus, _window_wait
from federationd.status_view import _concerning, limit_notes, tsv_lines

MIDNIGHT = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _config(**schedule: object) -> Config:
    return Config.model_validate({
        "site": {"id": "site-a", "company": "A", "name": "A"}, "state_dir": "/tmp/none",
        "database": {"url": "sqlite:////tmp/none.db"},
        "broker": {"url": "amqps://u:p@mq:5671/v", "management_url": "https://mq:15671",
                   "public_url": "amqps://mq:5671/v"},
        "schedule": schedule})


def _row(site: str | None) -> LinkStatus:
    return LinkStatus(site=site, state="linked", paused=False, sending=False, last_send_at=None, next_send_at=None,
                      categories=[], pending_records=0, lag_seconds=0.0, last_receive_at=None, failures=0,
                      last_error=None, snapshot_due=True, send_now=False)


def test_window_wait() -> None:
    closed = _config(snapshot_windows=["09:30-17:30"], utc_offset="+09:00")
    assert _window_wait(closed, MIDNIGHT) == MIDNIGHT + 1800  # 09:00 local: opens 09:30
    assert _window_wait(closed, MIDNIGHT + 3600) is None  # 10:00 local: open
    assert _window_wait(_config(), MIDNIGHT) is None  # no windows: any time


def test_the_waiting_snapshot_is_in_the_note_and_the_json() -> None:
    row = dataclasses.replace(_row("site-b"), snapshot_waits_until=MIDNIGHT + 1800)
    assert row.as_json()["snapshot_waits_until"] == "2026-01-01T00:30:00Z"
    line = tsv_lines([], [row])[-1]
    assert "snapshot waits for its window (schedule.snapshot_windows) until 2026-01-01T00:30:00Z" in line


def test_each_row_carries_the_site_wide_warnings_and_its_partners() -> None:
    found = [Finding("recommended_sites", 101, 100, "sites!"),
             Finding("recommended_employees_per_site", 301, 300, "b!", site="site-b"),
             Finding("recommended_employees_per_site", 301, 300, "home!", site="site-a")]
    assert _concerning(found, "site-a", "site-b") == ("sites!", "b!", "home!")
    assert _concerning(found, "site-a", "site-c") == ("sites!", "home!")
    rows = [dataclasses.replace(_row(s), limit_warnings=_concerning(found, "site-a", s)) for s in ("site-b", "site-c")]
    assert limit_notes(rows) == ["warning: sites!", "warning: b!", "warning: home!"]
    assert rows[0].as_json()["limit_warnings"] == ["sites!", "b!", "home!"]
