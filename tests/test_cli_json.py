"""`--json` on the verbs that only act, and `link release` asking first: through the console script, no broker."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_exit_codes import cli, write_config


def _json(config: Path, *args: str) -> object:
    result = cli(config, *args, "--json")
    assert result.returncode == 0, (args, result.stderr)
    return json.loads(result.stdout)  # exactly one document: json.loads refuses trailing text


def test_acting_verbs_print_ok_documents(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert _json(config, "init") == {"ok": True, "site": "site-a", "state_dir": str(tmp_path / "state")}
    assert _json(config, "pause") == {"ok": True, "paused": None}
    assert _json(config, "resume") == {"ok": True, "resumed": None, "still_paused": []}
    assert _json(config, "send-now") == {"ok": True, "sites": []}
    assert _json(config, "clear") == {"ok": True, "sites": []}
    csv = tmp_path / "people.csv"
    csv.write_text("id,name\ne-1,One\ne-2,Two\n")
    assert _json(config, "import", "employee", str(csv)) == {"ok": True, "category": "employee", "records": 2}
    assert _json(config, "check-config")["ok"] is True  # type: ignore[index]


def test_link_release_asks_unless_yes(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert cli(config, "init").returncode == 0
    unattended = cli(config, "link", "release", "site-b")  # stdin is not a terminal here
    assert unattended.returncode == 64 and "--yes" in unattended.stderr
    confirmed = cli(config, "link", "release", "site-b", "--yes")
    assert confirmed.returncode == 1 and "unknown partner 'site-b'" in confirmed.stderr


def test_every_verb_takes_json() -> None:
    """Every verb takes --json (but `run`: a daemon prints logs, not a document). The handshake verbs of
    `link` get theirs with the verification codes."""
    import click

    from federationd.cli import main

    def verbs(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
        found = []
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                found += verbs(command, (*path, name))
            else:
                found.append(((*path, name), command))
        return found

    missing = {" ".join(path) for path, command in verbs(main)
               if "--json" not in {opt for p in command.params for opt in p.opts} and path != ("run",)}
    assert missing <= {"link request", "link accept", "link start", "link reject"}, missing
