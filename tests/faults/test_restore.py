"""Fault 4: a site restored from an older backup. The relink that repairs it is covered by
tests/integration/test_operate_link.py (restore, write, notice, relink, converge); this adds when the restored site
notices: before its first change goes out, not only after it (a change made after the restore carries a version the
partner may already hold from before the restore, and is skipped there as a duplicate until the relink)."""

from __future__ import annotations

import pytest

from tests.faults.common import FIGURES, RESTORES, count_records, link, link_row
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def test_restored_site_notices_before_it_sends_anything(make_site):
    """Within seconds of the restart, with no change of ours sent, `status` suggests the relink for the partner and
    the log says we went back. (Found MISSING by this suite; since 72aa6c4 the daemon says `hello` to each partner
    at start, which answers with its watermark of our data.)"""
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    a.put("employee", "e1", {"name": "E1"})
    wait_until(lambda: count_records(b, a.id, "employee") == 1, 60, what="e1 at B")
    a.stop()
    a.backup()
    a.start()
    a.put("employee", "e1", {"name": "Changed after the backup"})
    a.put("employee", "e2", {"name": "Only after the backup"})
    wait_until(lambda: count_records(b, a.id, "employee") == 2, 60, what="the post-backup changes at B")
    newest = a.json("records", "get", "employee", "e2")["version"]
    # ... and B's watermark for them has reached A, as it normally has long before anyone restores a backup
    wait_until(lambda: link_row(a, b.id).watermark_seq >= newest, 60, what="B's watermark at A")

    a.stop()
    a.restore()  # A's counters go back; B holds versions of A's that A's database never handed out
    FIGURES[RESTORES] += 1
    restored_sent = link_row(a, b.id).sent_seq
    a.start()
    b.put("department", "d1", {"name": "B writes; A writes nothing"})
    wait_until(lambda: count_records(a, b.id, "department") == 1, 60, what="B's change at A")
    wait_until(lambda: "relink" in (a.link_row(b.id).get("note") or ""), 60, interval=0.5,
               what="A's status suggesting a relink before A sent anything")
    # nothing of ours went out since the restart: the watermark of what B's broker confirmed did not move, and the
    # restarted daemon counted no employee sent (the sample exists only once one was sent)
    assert link_row(a, b.id).sent_seq == restored_sent
    assert a.metric("federationd_sent_records_total", site=b.id, category="employee", default=None) is None
    status = " ".join(a.cli("status").stdout.split())
    assert "relink" in status and b.id in status
    assert any(b.id in line and "went back" in line for line in a.log_text().splitlines())
