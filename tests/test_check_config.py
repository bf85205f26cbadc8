"""`federationd check-config`: the verb ExecReload runs before every reload, through the console script."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_exit_codes import cli, write_config


def test_unknown_partner_warned_against_the_database(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra="links:\n  site-bb: {paused: true}\n")
    before = cli(config, "check-config", "--json")  # no database yet: valid, and says links were not checked
    assert before.returncode == 0 and not (tmp_path / "site.db").exists(), before.stderr
    assert any("not checked" in w for w in json.loads(before.stdout)["warnings"])
    assert cli(config, "init").returncode == 0
    result = cli(config, "check-config", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["ok"] is True and document["links"] == ["site-bb"]
    assert any("'site-bb' names no known partner" in w for w in document["warnings"]), document
    text = cli(config, "check-config")
    assert text.returncode == 0 and "warning: links: 'site-bb' names no known partner" in text.stderr
