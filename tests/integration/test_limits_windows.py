"""Issue 15, items 3 and 9 on the real TLS broker: the limits the manual states (warned past the recommended
figures, a link past the maximum refused) and snapshot windows (a due snapshot waits for its window, an
operator's `relink --now` does not). Tiny limits in the config keep it cheap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.sites import link
from tests.support.waiting import holds_for, wait_until

pytestmark = pytest.mark.integration

OFFSET_HOURS = 9  # the windows are read at +09:00, a site in Japan


def _closed_window() -> str:
    """A one-hour window that opens two hours from now in site-local time: closed for the whole test."""
    local = datetime.now(UTC) + timedelta(hours=OFFSET_HOURS)
    return f"{local + timedelta(hours=2):%H:%M}-{local + timedelta(hours=3):%H:%M}"


def _ids(site, category, origin=None):
    return {r["id"] for r in site.records(category, origin=origin)}


@pytest.mark.timeout(600)  # one scenario over three sites and ~25 CLI calls: longer than the default on a busy host
def test_limits_warn_and_refuse_and_snapshots_wait_for_their_window(make_site, tmp_path):
    """「連携するサイト数は100サイトまで、1サイトあたりの社員数は300名までを推奨」「200サイトを上限」 and
    「アクセスが頻発する時間帯...は避けて」 (8:30-9:30, 17:30-18:30), with max_sites 1 and 2 employees per site."""
    a = make_site("alpha", limits={"max_sites": 1, "recommended_sites": 1, "recommended_employees_per_site": 2},
                  schedule={"quiet_period": "1s", "max_delay": "30s", "busy_retry": "2s",
                            "snapshot_windows": [_closed_window()], "utc_offset": f"+{OFFSET_HOURS:02d}:00"})
    b = make_site("beta")
    c = make_site("gamma", start=False)  # only its CLI: a token, and an acceptance A refuses
    (tmp_path / "employees.csv").write_text("id,name\ne-0,Beta 0\ne-1,Beta 1\ne-2,Beta 2\n")
    b.cli("import", "employee", str(tmp_path / "employees.csv"))
    a.put("employee", "e-a", {"name": "Alpha"})
    early = a.json("link", "request")  # issued while A had room: its acceptance arrives past the maximum
    link(a, b)

    # A's first snapshot waits for its window (status says until when); B's, without windows, arrives.
    wait_until(lambda: len(_ids(a, "employee", b.id)) == 3, 60, what="B's snapshot at A")
    # A plain relink waits for the window too; nothing of A's reaches B.
    waited = a.cli("relink", b.id)
    assert "window" in waited.stdout, waited.stdout
    holds_for(lambda: not _ids(b, "employee", a.id), 5, "A's snapshot waiting for its window")
    # controls A owes B (watermarks for B's snapshot, the first policy round's rules) go at once, window or not:
    # until they went, the next send is now; then it is the window's
    row = wait_until(lambda: (r := a.link_row(b.id))["snapshot_waits_until"] is not None
                     and r["next_send_at"] == r["snapshot_waits_until"] and r, 60,
                     what="A's next send at its snapshot window")

    # Past the recommended 2 employees per site: status, check-config and the metric say so.
    assert any("limits.recommended_employees_per_site" in w and b.id in w for w in row["limit_warnings"]), row
    text = a.cli("status").stdout
    assert "waits for its window" in text and "warning:" in text and "recommended_employees_per_site" in text, text
    checked = a.json("check-config")
    assert any("limits.recommended_employees_per_site" in w for w in checked["warnings"]), checked
    assert a.metric("federationd_limit_exceeded", limit="recommended_employees_per_site") == 1
    assert a.metric("federationd_limit_exceeded", limit="max_sites") == 0

    # At max_sites 1, a second link is refused: a new token, accepting a token, and an acceptance arriving.
    refused = a.cli("link", "request", check=False)
    assert refused.returncode == 1 and "limits.max_sites" in refused.stderr and "raise" in refused.stderr, \
        refused.stderr
    theirs = c.json("link", "request")
    refused = a.cli("link", "accept", theirs["token"], "--code", theirs["code"], check=False)
    assert refused.returncode == 1 and "limits.max_sites allows 1" in refused.stderr, refused.stderr
    c.json("link", "accept", early["token"], "--code", early["code"])
    wait_until(lambda: any("limits.max_sites" in r["message"] for r in a.json("log", "--site", c.id)), 60,
               what="A refusing the acceptance that arrived past the maximum")
    assert a.link_row(c.id) is None

    # The operator's explicit `relink --now` goes at once, window or not.
    a.cli("relink", b.id, "--now")
    wait_until(lambda: "e-a" in _ids(b, "employee", a.id), 60, what="A's snapshot after relink --now")
    # e-a travels in a data part; the snapshot counts as sent (and stops waiting) once its final part is confirmed
    wait_until(lambda: a.link_row(b.id)["snapshot_waits_until"] is None, 60, what="A's snapshot no longer waiting")
