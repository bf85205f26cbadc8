"""The README's "Production install" section, followed literally on this machine.

Every ```sh block of that section runs as written, as root, with bash, from the repository root, with the
absolute paths it names moved under a scratch root (/opt/federationd, /etc/federationd, /var/lib/federationd,
/usr/lib/sysusers.d, /root/ca). The README's own placeholders ('DAEMON-PASSWORD', 'ADMIN-PASSWORD') become
random passwords; the "edit the config" step sets this machine's broker. The broker recipe's `rabbitmqctl`
lines run against the test's private TLS broker. Then the unit's ExecStart runs as the real `federationd` system
user (created by the README's systemd-sysusers step: this test creates that user on the machine it runs on),
and the daemon must answer `status`, serve /metrics and answer `federationd health` ok.

Needs root (runuser, chown) and a package index for pip; skipped otherwise, failed under CI=true.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
UNIT = REPO / "deploy" / "federationd.service"
# root's PATH on Debian: `python3` is the system's /usr/bin/python3 (not a developer's pyenv under /root, which the
# service user could not even execute)
DEBIAN_ROOT_ENV = {**os.environ, "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
MOVED = ("/opt/federationd", "/etc/federationd", "/var/lib/federationd", "/usr/lib/sysusers.d", "/root/ca")


def section(text: str, heading: str) -> str:
    start = text.index(f"## {heading}")
    following = text.find("\n## ", start + 1)
    return text[start:following if following != -1 else None]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def _need(condition: bool, reason: str) -> None:
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)


@pytest.fixture
def root() -> Iterator[Path]:
    """A scratch root the service user can traverse (pytest's own tmp dirs are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="federationd-prod-", dir="/tmp"))
    path.chmod(0o755)
    for present in ("opt", "etc", "var/lib", "usr/lib/sysusers.d"):  # there on every Debian system
        (path / present).mkdir(parents=True, mode=0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_readme_production_install(root: Path, broker) -> None:
    _need(os.geteuid() == 0, "the production install runs as root")
    _need(all(shutil.which(tool) for tool in ("runuser", "systemd-sysusers", "install")),
          "runuser, systemd-sysusers and install are needed")
    readme = README.read_text()
    production = section(readme, "Production install (Debian 12)")
    steps = blocks(production.split("### The broker")[0], "sh")
    assert len(steps) >= 6, "the README's production steps"
    passwords = {"DAEMON-PASSWORD": secrets.token_hex(16), "ADMIN-PASSWORD": secrets.token_hex(16)}

    def moved(text: str) -> str:
        for prefix in MOVED:
            text = text.replace(prefix, f"{root}{prefix}")
        for placeholder, value in passwords.items():
            text = text.replace(placeholder, value)
        return text

    # the broker recipe, against the private test broker
    recipe = next(b for b in blocks(section(readme, "Production install (Debian 12)"), "shell")
                  if "rabbitmqctl add_vhost" in b)
    for line in recipe.splitlines():
        if line.startswith("rabbitmqctl "):
            broker.ctl(*shlex.split(moved(line))[1:])

    ca_dir = root / "root" / "ca"
    ca_dir.mkdir(parents=True)
    shutil.copy(broker.ca_file, ca_dir / "our-broker-ca.pem")
    shutil.copy(broker.ca_file, ca_dir / "partner-site-b.pem")  # a partner's CA (the same test CA here)
    metrics_port = _free_port()
    config = root / "etc" / "federationd" / "federationd.yaml"
    for step in steps:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", moved(step)], cwd=REPO, capture_output=True,
                                text=True, timeout=900, check=False, env=DEBIAN_ROOT_ENV)
        assert result.returncode == 0, f"README step failed:\n{moved(step)}\n{result.stdout}\n{result.stderr}"
        if "site-a.example.yaml" in step:  # "Edit /etc/federationd/federationd.yaml": this machine's values
            _edit_config(config, moved, broker, metrics_port)

    assert oct(config.stat().st_mode & 0o777) == "0o640" and config.stat().st_uid == 0
    assert oct((root / "etc" / "federationd").stat().st_mode & 0o777) == "0o750"
    assert (root / "var" / "lib" / "federationd" / "sealing.key").stat().st_mode & 0o777 == 0o600
    assert (root / "var" / "lib" / "federationd" / "site.db").owner() == "federationd"

    exec_start = next(line.partition("=")[2] for line in UNIT.read_text().splitlines()
                      if line.startswith("ExecStart="))
    log = (root / "daemon.log").open("wb")
    daemon = subprocess.Popen(["runuser", "-u", "federationd", "--", *shlex.split(moved(exec_start))], cwd="/",
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    federationd = [f"{root}/opt/federationd/bin/federationd", "-c", str(config)]
    try:
        wait_until(lambda: _metrics(metrics_port) is not None or daemon.poll() is not None, 60,
                   what="the daemon serving /metrics")
        assert daemon.poll() is None, (root / "daemon.log").read_text()
        assert "federationd_build_info" in (_metrics(metrics_port) or "")
        status = subprocess.run(["runuser", "-u", "federationd", "--", *federationd, "status", "--json"],
                                capture_output=True, text=True, timeout=120, check=False)
        assert status.returncode == 0 and status.stdout.strip().startswith("["), status.stderr

        def healthy() -> bool:
            health = subprocess.run(["runuser", "-u", "federationd", "--", *federationd, "health", "--json"],
                                    capture_output=True, text=True, timeout=120, check=False)
            return health.returncode == 0 and json.loads(health.stdout)["ok"] is True

        wait_until(healthy, 120, what="`federationd health` answering ok, as the service user")
    finally:
        os.kill(daemon.pid, signal.SIGTERM)  # runuser passes it on to the daemon, as systemctl stop would
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(10)
    assert "federationd.daemon: stopped" in (root / "daemon.log").read_text()


def _edit_config(config: Path, moved, broker, metrics_port: int) -> None:
    """What the operator edits: site, broker URLs (this machine's broker), metrics.listen; paths moved."""
    values = yaml.safe_load(moved(config.read_text()))
    values["site"] = {"id": "prod-a", "company": "Production Co.", "name": "Production HQ"}
    values["broker"].update({
        "url": f"amqps://federationd@localhost:{broker.amqps_port}/federation",
        "management_url": f"https://federationd-admin@localhost:{broker.management_port}",
        "public_url": f"amqps://localhost:{broker.amqps_port}/federation"})
    values["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    values["links"] = {}
    config.write_text(yaml.safe_dump(values, sort_keys=False))  # in place: owner and mode stay root:federationd 0640


def _metrics(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())
    except OSError:
        return None
