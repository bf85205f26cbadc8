"""Bad input 10: impossible config values are refused by name, through the CLI (exit 3, one line naming the file and
the key, never the password), and a config file other users can read gets a warning from `check-config` and in
`run`'s log. tests/unit/test_config.py covers the model broadly; these are the keys and values it does not."""

from __future__ import annotations

import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.faults.common import FIGURES
from tests.faults.common import REFUSED as BAD_INPUTS
from tests.support.sites import FEDERATIOND

pytestmark = pytest.mark.integration

PASSWORD = "S3cret-never-echoed"


def _base(tmp_path: Path) -> dict[str, Any]:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n(not parsed by check-config)\n-----END CERTIFICATE-----\n")
    return {
        "site": {"id": "site-a", "company": "Example Co., Ltd.", "name": "Example HQ"},
        "state_dir": str(tmp_path / "state"),
        "database": {"url": f"sqlite:///{tmp_path / 'site.db'}"},
        "broker": {"url": f"amqps://federationd:{PASSWORD}@mq.site-a.example:5671/federation",
                   "management_url": "https://mq.site-a.example:15671",
                   "public_url": "amqps://mq.site-a.example:5671/federation"},
        "tls": {"ca_file": str(ca)},
    }


def _set(config: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _check(tmp_path: Path, config: dict[str, Any], mode: int = 0o600) -> subprocess.CompletedProcess[str]:
    file = tmp_path / "federationd.yaml"
    file.write_text(yaml.safe_dump(config, sort_keys=False))
    file.chmod(mode)
    return subprocess.run([str(FEDERATIOND), "-c", str(file), "check-config"], capture_output=True, text=True,
                          timeout=60, check=False)


IMPOSSIBLE = [  # (key, value, what the one line must name): refused today
    ("schedule.max_delay", "0s", "max_delay"),
    ("schedule.busy_retry", "0s", "busy_retry"),
    ("schedule.quiet_period", "-5m", "schedule.quiet_period"),
    ("log.retention", "forever", "log.retention"),
    ("transport.heartbeat", "30", "transport.heartbeat"),
    ("transport.send_workers", 0, "transport.send_workers"),
    ("transport.send_workers", 65, "transport.send_workers"),
    ("transport.batch_records", 100_001, "transport.batch_records"),
    ("transport.batch_bytes", 100, "transport.batch_bytes"),
    ("metrics.listen", "127.0.0.1:0", "metrics.listen"),
    ("metrics.listen", ":9464", "metrics.listen"),
    ("site.name", "", "site.name"),
    ("site.id", "", "site.id"),
    ("site.id", "site.a", "site.id"),
    ("database.url", "", "database.url"),
    ("broker.public_url", "amqps://mq.site-a.example:5671", "broker.public_url"),
    ("broker.management_url", "mq.site-a.example:15671", "broker.management_url"),
    ("links.site-b.paused", "maybe", "links.site-b.paused"),
    ("links.site-b.visit.employees", "e-1", "links.site-b.visit.employees"),
    ("links.site-b.accept.default.role", "", "links.site-b.accept.default.role"),
    ("tls.key_file", "/etc/hostname", "key_file"),
    ("paused", [True], "paused"),
    # found by this suite and fixed (72aa6c4); kept as regressions
    ("schedule.quiet_period", "99999999999d", "schedule.quiet_period"),  # was an OverflowError traceback
    ("log.retention", "0s", "log.retention"),  # would purge the whole link log every minute
    ("transport.retry_max", "0s", "retry_max"),  # a tight retry loop against a partner that is down
    ("transport.connect_timeout", "0s", "connect_timeout"),
    ("broker.public_url", "amqps://mq.site-a.example:99999/federation", "broker.public_url"),
    ("database.url", "sqlite:///", "database.url"),  # an in-memory database
    ("state_dir", "", "state_dir"),
    ("state_dir", "relative/state", "state_dir"),
]



def _refusal_problem(tmp_path: Path, key: str, value: Any, named: str) -> str | None:
    config = _base(tmp_path)
    _set(config, key, value)
    result = _check(tmp_path, config)
    FIGURES[BAD_INPUTS] += 1
    lines = result.stderr.strip().splitlines()
    if result.returncode != 78:
        return f"exit {result.returncode}: {result.stderr[-500:]}"
    if len(lines) != 1 or named not in lines[0] or "federationd.yaml" not in lines[0]:
        return f"not one line naming {named!r} and the file: {lines}"
    if PASSWORD in result.stderr + result.stdout:
        return "the password was echoed"
    return None


def test_impossible_values_are_refused_by_name(tmp_path: Path) -> None:
    def one(case: tuple[int, tuple[str, Any, str]]) -> tuple[str, str | None]:
        n, (key, value, named) = case
        directory = tmp_path / str(n)
        directory.mkdir()
        return f"{key}={str(value).replace(PASSWORD, '***')!r}", _refusal_problem(directory, key, value, named)

    with ThreadPoolExecutor(4) as pool:  # each case is one `federationd check-config` process
        problems = {case: problem for case, problem in pool.map(one, enumerate(IMPOSSIBLE)) if problem}
    assert not problems, problems


@pytest.mark.parametrize(("key", "value", "named"), [
    pytest.param("broker.url", f"amqps://federationd:{PASSWORD}@mq.site-a.example:0/federation", "broker.url",
                 id="broker.url-port-0"),
    pytest.param("broker.public_url", "amqps://mq.site-a.example:0/federation", "broker.public_url",
                 id="public_url-port-0"),
])
def test_port_zero_is_refused_by_name(tmp_path: Path, key: str, value: Any, named: str) -> None:
    problem = _refusal_problem(tmp_path, key, value, named)
    assert problem is None, problem


def test_valid_base_config_passes(tmp_path: Path) -> None:  # the base of the table above is itself valid
    result = _check(tmp_path, _base(tmp_path))
    assert result.returncode == 0 and not result.stderr, result.stderr


@pytest.mark.parametrize("mode", [0o644, 0o604])
def test_config_readable_by_others_gets_a_warning(tmp_path: Path, mode: int) -> None:
    result = _check(tmp_path, _base(tmp_path), mode)
    assert result.returncode == 0, result.stderr
    assert "readable by other users" in result.stderr and PASSWORD not in result.stderr
    quiet = _check(tmp_path, _base(tmp_path), 0o640)  # group-readable (the federationd group) is the norm
    assert quiet.returncode == 0 and not quiet.stderr


def test_run_logs_the_warning_for_a_world_readable_config(make_site):
    a = make_site("alpha", start=False)
    a.config_path.chmod(0o644)
    assert a.config_path.stat().st_mode & stat.S_IROTH
    a.start()
    a.stop()
    log = a.log_text()
    assert "readable by other users" in log and str(a.config_path) in log
    assert a.password not in log
