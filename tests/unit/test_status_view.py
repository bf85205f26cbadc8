"""`status` output: readable at 80 columns on a terminal, every column with --full, tab-separated when piped."""

from __future__ import annotations

import io

from rich.console import Console

from federationd.status import LinkStatus
from federationd.status_view import COLUMNS, table, tsv_lines

NOTE = "site-b: cannot reach broker amqps://mq.site-b.example:5671/federation: connection refused " * 2


def _row(site: str, note: str | None = None) -> LinkStatus:
    return LinkStatus(site=site, state="linked", paused=site == "site-c", sending=False,
                      last_send_at=1_790_000_000.0, next_send_at=1_790_000_900.0,
                      categories=["employee", "department", "schedule"], pending_records=12345,
                      lag_seconds=7300.0, last_receive_at=None, failures=1, last_error=note,
                      snapshot_due=False, send_now=False)


def _render(full: bool, width: int = 80) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, highlight=False, color_system=None).print(table(
        [_row("site-b", NOTE), _row("site-c")], full))
    return out.getvalue().splitlines()


def test_terminal_table_fits_80_columns_and_keeps_every_field_readable() -> None:
    lines = _render(full=False)
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0].split() == ["site", "state", "paused", "last", "send", "next", "send", "pending", "lag",
                                "received"]
    assert lines[1].split() == ["site-b", "linked", "no", "09-21", "09-21", "12345", "2h", "never"]
    assert lines[2].split() == ["site-c", "linked", "yes", "09-21", "09-21", "12345", "2h", "never"]
    assert lines[3].startswith("site-b: cannot reach broker") and lines[3].rstrip().endswith("…")
    assert len(lines) == 4


def test_full_shows_every_column_and_the_whole_note() -> None:
    text = " ".join(" ".join(_render(full=True, width=400)).split())
    for column in COLUMNS:
        assert column.split()[0] in text
    assert "employee,department,schedule" in text.replace(" ", "")
    assert "2026-09-21T" in text.replace(" ", "")


def test_piped_output_is_tab_separated_and_unpadded() -> None:
    lines = tsv_lines(["site site-a"], [_row("site-b", NOTE), _row("site-c")])
    assert lines[0] == "# site site-a"
    header = lines[1].split("\t")
    assert header == [c.replace(" ", "_") for c in COLUMNS]
    first = dict(zip(header, lines[2].split("\t"), strict=True))
    assert first["site"] == "site-b" and first["pending"] == "12345" and first["lag"] == "7300"
    assert first["note"] == " ".join(NOTE.split()) and first["last_receive"] == "never"
    assert all("  " not in line for line in lines[1:])
