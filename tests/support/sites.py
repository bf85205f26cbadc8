"""Sites under test: a config file, a database (SQLite or PostgreSQL), the `federationd` CLI and daemon process.

Integration tests drive federationd the way an operator does: `federationd -c FILE VERB` and `federationd run`
as real processes; they read the database in-process only to check what the CLI cannot show.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine

from federationd.config import load_config
from federationd.runtime import Runtime

from .broker import TestBroker
from .pg import copy_database, create_database, drop_database
from .waiting import GiveUp, wait_until

FEDERATIOND = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "federationd"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Site:
    id: str
    dir: Path
    broker: TestBroker
    backend: str
    extra: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    pg_name: str | None = None

    def __post_init__(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        creds = self.broker.add_site(self.id)
        self.metrics_port = _free_port()
        if self.backend == "postgresql":
            self.pg_name = f"fedtest_{self.id.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
            url = create_database(self.pg_name)
        else:
            url = f"sqlite:///{self.dir / 'site.db'}"
        self.cfg: dict[str, Any] = {
            "site": {"id": self.id, "company": f"{self.id.upper()} Co., Ltd.", "name": f"{self.id} HQ"},
            "state_dir": str(self.dir / "state"),
            "database": {"url": url},
            "broker": {"url": self.broker.url(self.id, creds), "management_url": self.broker.management_url,
                       "public_url": self.broker.public_url(self.id)},
            "tls": {"ca_file": str(self.broker.ca_file)},
            "schedule": {"quiet_period": "1s", "max_delay": "30s", "busy_retry": "2s"},
            "paused": False,
            "links": {},
            "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
            **self.extra,
        }
        self.password = creds.password
        self.config_path = self.dir / "federationd.yaml"
        self.write_config()

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.cfg, sort_keys=False))
        self.config_path.chmod(0o600)

    # -- the CLI ---------------------------------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(FEDERATIOND), "-c", str(self.config_path), *args], capture_output=True,
                                text=True, timeout=timeout, check=False)
        if check and result.returncode:
            raise AssertionError(f"[{self.id}] federationd {' '.join(args)} -> {result.returncode}\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def put(self, category: str, record_id: str, data: dict[str, Any]) -> None:
        self.cli("records", "put", category, record_id, "--data", json.dumps(data))

    def records(self, category: str, origin: str | None = None, include_deleted: bool = False) -> list[Any]:
        args = ["records", "list", category]
        if origin:
            args += ["--origin", origin]
        if include_deleted:
            args.append("--include-deleted")
        return list(self.json(*args))

    def link_row(self, partner: str) -> dict[str, Any] | None:
        return next((row for row in self.json("status") if row["site"] == partner), None)

    def link_state(self, partner: str) -> str | None:
        row = self.link_row(partner)
        return row["state"] if row else None

    # -- the daemon ------------------------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.dir / "daemon.log"

    def start(self) -> Site:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([str(FEDERATIOND), "-c", str(self.config_path), "run"], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_until(self._serving, 30, what=f"{self.id} daemon serving metrics")
        return self

    def _serving(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise GiveUp(f"{self.id} daemon exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
        return bool(self.metrics())

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample (0 if absent)."""
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            metric_name, _, rest = sample.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if metric_name == name and got == wanted:
                return float(value)
        return 0.0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- in-process access for assertions --------------------------------------------------------------------
    @contextlib.contextmanager
    def engine(self) -> Iterator[Engine]:
        """The site's database, for assertions; disposed afterwards (no connection outlives the test)."""
        rt = Runtime(load_config(self.config_path))
        try:
            yield rt.engine
        finally:
            rt.dispose()

    # -- cold backup and restore, as an operator does them (the daemon stopped) ------------------------------
    def backup(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "stop the daemon before a cold backup"
        if self.pg_name:
            copy_database(self.pg_name, f"{self.pg_name}_bak")
        else:
            self._sqlite_files("site.db", "backup.db", shutil.copy2)

    def restore(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "stop the daemon before a restore"
        if self.pg_name:
            copy_database(f"{self.pg_name}_bak", self.pg_name)
            drop_database(f"{self.pg_name}_bak")
        else:
            self._sqlite_files("backup.db", "site.db", shutil.move)

    def _sqlite_files(self, source: str, target: str, transfer: Callable[[Path, Path], object]) -> None:
        """Copy or move a SQLite database with its WAL and shared-memory files (a WAL database is all three)."""
        for suffix in ("", "-wal", "-shm"):
            to = self.dir / f"{target}{suffix}"
            to.unlink(missing_ok=True)
            if (self.dir / f"{source}{suffix}").exists():
                transfer(self.dir / f"{source}{suffix}", to)

    def close(self) -> None:
        self.stop()
        if self.pg_name:
            drop_database(self.pg_name)


def link(a: Site, b: Site, timeout: float = 60) -> str:
    """The whole handshake, as two operators do it; returns the token."""
    token = a.cli("link", "request").stdout.strip().splitlines()[-1]
    b.cli("link", "accept", token)
    wait_until(lambda: a.link_state(b.id) == "awaiting_start", timeout, what=f"{a.id} sees {b.id} accepted")
    a.cli("link", "start", b.id)
    wait_until(lambda: a.link_state(b.id) == "linked" and b.link_state(a.id) == "linked", timeout,
               what=f"{a.id} and {b.id} linked")
    return token


_numbers = itertools.count(1)


@contextlib.contextmanager
def site_maker(tmp_path: Path, backend: str) -> Iterator[Callable[..., Site]]:
    """`make(broker, name, start=True, **config)`: an initialised site with a unique id on `broker`; every site
    made is stopped and its database dropped when the block ends."""
    made: list[Site] = []

    def make(broker: TestBroker, name: str, start: bool = True, **extra: Any) -> Site:
        site_id = f"{name}-{next(_numbers)}"
        site = Site(site_id, tmp_path / site_id, broker, backend, extra=dict(extra))
        made.append(site)
        site.cli("init")
        if start:
            site.start()
        return site

    try:
        yield make
    finally:
        for site in made:
            site.close()
