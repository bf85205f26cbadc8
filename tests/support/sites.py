"""Sites under test: a config file, a database (SQLite or PostgreSQL), the `federationd` CLI and daemon process.

Integration tests drive federationd the way an operator does: `federationd -c FILE VERB` and `federationd run`
as real processes; they read the database in-process only to check what the CLI cannot show.

The verbs tests poll (`status`, `records list`, `log`, ...) and `records put` run the same click command inside
the test process (click's runner: the same code, arguments, output and exit code, without a new interpreter that
imports everything again). A poll every 100 ms used to start a Python process each time, and those processes,
not the daemons under test, took most of the machine. Every other verb, and any call with `process=True`, runs
the installed `federationd` executable as a process.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from sqlalchemy import Engine

from federationd.cli import main as federationd_main
from federationd.config import load_config
from federationd.runtime import Runtime

from .broker import TestBroker
from .pg import copy_database, create_database, drop_database
from .waiting import GiveUp, wait_until

ABSENT = object()  # Site.metric(): no default given, absence is an error
FEDERATIOND = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "federationd"


def _bindable(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


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
    def cli(self, *args: str, check: bool = True, timeout: float = 60,
            process: bool = False) -> subprocess.CompletedProcess[str]:
        command = [str(FEDERATIOND), "-c", str(self.config_path), *args]
        if not process and _in_process(args):
            result = _run_in_process(command)
        else:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode:
            raise AssertionError(f"[{self.id}] federationd {' '.join(args)} -> {result.returncode}\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"[{self.id}] federationd {' '.join(args)} --json printed no JSON ({exc}):\n"
                                 f"stdout: {result.stdout!r}\nstderr: {result.stderr!r}") from None

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
        if not _bindable(self.metrics_port):  # taken meanwhile by another worker's site: restart on a free one
            self.metrics_port = _free_port()
            self.cfg["metrics"] = {**self.cfg.get("metrics", {}), "listen": f"127.0.0.1:{self.metrics_port}"}
            self.write_config()
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

    def metric(self, name: str, default: object = ABSENT, **labels: str) -> Any:
        """The value of the one sample `name{labels}` (labels matched exactly, all of them).

        A sample that is not exposed raises LookupError naming it (a mislabelled or missing metric must not read
        as 0); a test that expects it may be absent says so with `default=` (e.g. `default=None`)."""
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            metric_name, _, rest = sample.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if metric_name == name and got == wanted:
                return float(value)
        if default is ABSENT:
            raise LookupError(f"{self.id}: no sample {name}{{{wanted}}} in the metrics")
        return default

    def terminate(self) -> None:
        """SIGTERM without waiting (a `stop` afterwards waits): several daemons then stop at once."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self._terminated_pid = self.proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        if sig != signal.SIGTERM or getattr(self, "_terminated_pid", None) != proc.pid:
            os.killpg(proc.pid, sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(10)

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


def coded(token: str) -> tuple[str, str, str]:
    """`TOKEN --code CODE` with the code of the token as received: for tests that edit a token on purpose to
    reach what lies behind the code check (an operator reading the code off `link inspect`)."""
    from federationd.codes import token_code
    from federationd.errors import LinkError

    try:
        return token, "--code", token_code(token)
    except LinkError:
        return token, "--code", "000-000-000-000-000"


def start_code(a: Site, partner: str) -> tuple[str, str]:
    """`--code CODE` for `link start`: the acceptor's code as `link show` computes it from what arrived."""
    return "--code", str(a.json("link", "show", partner)["code"])


def link(a: Site, b: Site, timeout: float = 60) -> str:
    """The whole handshake, as two operators do it: the token by mail, the codes read aloud; returns the token."""
    issued = a.json("link", "request")
    accepted = b.json("link", "accept", issued["token"], "--code", issued["code"])
    wait_until(lambda: a.link_state(b.id) == "awaiting_start", timeout, what=f"{a.id} sees {b.id} accepted")
    a.cli("link", "start", b.id, "--code", accepted["code"])
    wait_until(lambda: a.link_state(b.id) == "linked" and b.link_state(a.id) == "linked", timeout,
               what=f"{a.id} and {b.id} linked")
    return str(issued["token"])


def access_synced(site: Site, partner: Site) -> bool:
    """Both daemons' first policy round after their link is over, as `site`'s link log shows it: its visit and
    accept rules confirmed by the partner's broker, the partner's received. Each daemon runs that round on its own
    clock (every few seconds), a little after the link: until then a send is due at once at `site` (its policy
    controls) and rows keep arriving in its link log, whatever the quiet period."""
    messages = [row["message"] for row in site.json("log", "--site", partner.id)]
    return (sum(m.startswith("access settings sync confirmed") for m in messages) >= 2
            and any(m.startswith("the partner's visit rules") for m in messages)
            and any(m.startswith("the partner's accept rules") for m in messages))


# Verbs that run inside the test process: the read-only ones, and those that only write the database, talk to
# a broker or its management API and return (no daemon, no signal handler, no process-wide setting). Each saves
# a Python start-up (about 0.5 s of CPU); `federationd run` and anything given `process=True` stay processes.
IN_PROCESS_VERBS = {("status",), ("log",), ("history",), ("health",), ("records", "list"), ("records", "get"),
                    ("records", "put"), ("records", "delete"), ("link", "show"), ("link", "list"), ("init",),
                    ("link", "request"), ("link", "accept"), ("link", "start"), ("link", "inspect"),
                    ("link", "reject"), ("link", "release")}


ALL_AS_PROCESSES = os.environ.get("FED_TEST_CLI") == "process"  # the old way, to compare or to rule this out


def _in_process(args: tuple[str, ...]) -> bool:
    return not ALL_AS_PROCESSES and (args[:1] in IN_PROCESS_VERBS or args[:2] in IN_PROCESS_VERBS)


_RUNNER = threading.Lock()  # click's runner swaps sys.stdout and sys.stderr: one verb at a time in a process


def _run_in_process(command: list[str]) -> subprocess.CompletedProcess[str]:
    """`federationd ARGS` through click's runner in this process; the verb closes its database connections when
    it ends (federationd/cli/base.py), so polling leaves nothing open. Tests that call verbs from several threads
    (a writer thread, a parallel comparison) take turns: the runner's output capture is process-wide."""
    with _RUNNER:
        result = CliRunner().invoke(federationd_main, command[1:], prog_name="federationd",
                                    catch_exceptions=False)
    return subprocess.CompletedProcess(command, result.exit_code, result.stdout, result.stderr)


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
        for site in made:  # told all at once, their graceful stops overlap
            site.terminate()
        for site in made:
            site.close()


# -- a second daemon of one site, as on a second host ---------------------------------------------------------------
STATE_NOT_COPIED = ("daemon.*.json", "*.tmp", "active.lock")  # this host's heartbeats and lock file


def second_daemon(site: Site, name: str = "second") -> Site:
    """Another daemon of `site` as an operator sets one up on a second host: a copy of its `state_dir` (identity,
    signing and sealing keys; not the heartbeat or lock files), the same database, a config, metrics port and log
    of its own (under `site.dir / name`). Not started; the caller stops it."""
    other = Site.__new__(Site)
    other.__dict__.update(site.__dict__)
    other.proc = None
    other.pg_name = None  # the original owns (and drops) the database
    other.dir = site.dir / name
    other.dir.mkdir(parents=True, exist_ok=True)
    state = other.dir / "state"
    shutil.copytree(site.dir / "state", state, ignore=shutil.ignore_patterns(*STATE_NOT_COPIED), dirs_exist_ok=True)
    other.metrics_port = _free_port()
    other.cfg = {**site.cfg, "state_dir": str(state), "metrics": {"listen": f"127.0.0.1:{other.metrics_port}"}}
    other.config_path = other.dir / "federationd.yaml"
    other.write_config()
    return other


def use_database_role(site: Site, role: str) -> None:
    """Make `site`'s daemon and CLI connect to its PostgreSQL database as `role` (tests/support/pg.create_role)."""
    from .pg import url_as

    site.cfg = {**site.cfg, "database": {**site.cfg["database"], "url": url_as(site.cfg["database"]["url"], role)}}
    site.write_config()
