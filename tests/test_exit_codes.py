"""Exit codes follow sysexits (1 refused, 64 usage, 69 unavailable, 78 config), and the units act on them.

Each test runs the real `federationd` console script as a process, as systemd and scripts see it.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FEDERATIOND = str(Path(sys.executable).with_name("federationd"))
UNITS = [REPO / "deploy" / "federationd.service", REPO / "deploy" / "federationd@.service"]

VALID = """\
site: {{id: site-a, company: "Example Co., Ltd.", name: "Example HQ"}}
state_dir: {state}
database: {{url: "{database}"}}
broker:
  url: "amqps://federationd:SECRET@mq.site-a.example:5671/federation"
  management_url: "https://mq.site-a.example:15671"
  public_url: "amqps://mq.site-a.example:5671/federation"
"""


def write_config(tmp_path: Path, database: str | None = None, extra: str = "") -> Path:
    path = tmp_path / "federationd.yaml"
    database = database or f"sqlite:///{tmp_path}/site.db"
    path.write_text(VALID.format(state=tmp_path / "state", database=database) + extra)
    path.chmod(0o600)
    return path


def cli(config: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    head = [FEDERATIOND] + (["-c", str(config)] if config else [])
    return subprocess.run([*head, *args], capture_output=True, text=True, timeout=60, check=False)


def test_usage_errors_exit_64(tmp_path: Path) -> None:
    for args in (["--no-such-option"], ["status", "--nope"], ["no-such-verb"], ["history"]):
        result = cli(write_config(tmp_path), *args)
        assert result.returncode == 64, (args, result.returncode, result.stderr)


def test_invalid_or_missing_config_exits_78(tmp_path: Path) -> None:
    assert cli(tmp_path / "missing.yaml", "status").returncode == 78
    bad = write_config(tmp_path, extra="pasued: true\n")
    result = cli(bad, "check-config")
    assert result.returncode == 78 and "pasued" in result.stderr


def test_unreachable_database_exits_69(tmp_path: Path) -> None:
    config = write_config(tmp_path, database="postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    result = cli(config, "status")
    assert result.returncode == 69, result.stderr


def test_refusal_exits_1(tmp_path: Path) -> None:
    result = cli(write_config(tmp_path), "link", "inspect", "not-a-token")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_help_lists_the_exit_codes() -> None:
    text = cli(None, "--help").stdout
    for code in ("64", "69", "78"):
        assert code in text


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_reload_of_a_bad_file_fails_through_exec_reload(tmp_path: Path, unit: Path) -> None:
    """The unit's first ExecReload= line, run as written against a bad file, fails: `systemctl reload` fails
    and the daemon is never sent SIGHUP. Against a good file it succeeds."""
    reload_lines = [line.partition("=")[2] for line in unit.read_text().splitlines()
                    if line.startswith("ExecReload=")]
    assert reload_lines[-1] == "/bin/kill -HUP $MAINPID" and len(reload_lines) == 2
    argv = shlex.split(reload_lines[0])
    assert argv[0] == "/opt/federationd/bin/federationd" and argv[1] == "-c"
    good = write_config(tmp_path)
    argv[0], argv[2] = FEDERATIOND, str(good)
    ok = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    good.write_text(good.read_text() + "paused: maybe\n")
    bad = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 78 and "paused" in bad.stderr, bad.stderr
