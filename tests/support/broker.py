"""Private, throwaway RabbitMQ nodes for integration tests.

This module owns booting, driving and tearing down a RabbitMQ node that
belongs to one test run and nothing else:

* every client connection is TLS: there is no plain AMQP listener
  (``listeners.tcp = none``); AMQPS and the management API (HTTPS only)
  listen on free 127.0.0.1 ports;
* the node has its own name, data, logs, Erlang cookie and distribution
  port, and ignores the machine's ``/etc/rabbitmq`` (``rabbitmq-env.conf``,
  ``conf.d``, ``advanced.config``), so the system's default node
  (``rabbit@localhost``) is never touched;
* the node can serve any leaf of :mod:`tests.support.pki` ("server",
  "self_signed", "expired", "wrong_host") to test client-side verification.

The harness administers the node through ``rabbitmqctl`` (Erlang
distribution) and through the management HTTP API as its own administrator,
``fedtest-root``; sites get their own vhost and administrator user via
:meth:`TestBroker.add_site`.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .pki import LEAVES, PKI, Leaf
from .waiting import GiveUp, wait_until

__all__ = [
    "RABBITMQ_BIN",
    "BrokerError",
    "BrokerUnavailable",
    "ManagementAPIError",
    "SiteCreds",
    "TestBroker",
    "TestCluster",
    "ensure_broker_binary",
]

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
ROOT_USER = "fedtest-root"
START_TIMEOUT = 240.0  # a boot takes ~5 s on a quiet machine and minutes with four workers booting on 2 cores; a node
# that dies is noticed at once (`_wait_ready` gives up when the process exits)
STOP_TIMEOUT = 60.0


class BrokerUnavailable(RuntimeError):
    """RabbitMQ is not installed where the harness expects it."""


class BrokerError(RuntimeError):
    """A test node failed to start, stop or run a ``rabbitmqctl`` command."""


class ManagementAPIError(BrokerError):
    """The management API answered with an HTTP error status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:500]}")
        self.method = method
        self.path = path
        self.status = status
        self.body = body


@dataclass(frozen=True)
class SiteCreds:
    """The broker account of one site: an administrator confined to its vhost."""

    user: str
    password: str
    vhost: str


def ensure_broker_binary() -> Path:
    """Return the path of ``rabbitmq-server``, or raise :class:`BrokerUnavailable` saying how to get it."""
    server = RABBITMQ_BIN / "rabbitmq-server"
    missing = [p for p in (server, RABBITMQ_BIN / "rabbitmqctl") if not os.access(p, os.X_OK)]
    if missing:
        raise BrokerUnavailable(
            f"RabbitMQ not found ({', '.join(map(str, missing))} missing or not executable); "
            "run scripts/ensure-services.sh as root, or `apt-get install rabbitmq-server`"
        )
    return server


def _free_ports(count: int) -> list[int]:
    """Pick ``count`` distinct free loopback ports.

    All sockets stay bound until every port is picked, so the kernel cannot
    hand out the same port twice.  (Another process may still grab one before
    the node binds it; that race is accepted as in every free-port helper.)
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def _reap(proc: subprocess.Popen[bytes], log: Any) -> None:
    """Make sure the node's process group is gone.

    Runs via ``weakref.finalize``: from ``stop()``, when a forgotten broker is
    garbage-collected, and at interpreter exit (finalize registers its own
    atexit hook), so no test run leaves a beam process behind unless the
    interpreter itself is SIGKILLed.

    SIGTERM to the ``rabbitmq-server`` wrapper makes it stop the VM cleanly;
    if that does not finish in time, the whole process group is SIGKILLed.
    """
    try:
        if proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired, ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
        # The wrapper may be gone while the VM (same process group) lives on.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    finally:
        log.close()


class TestBroker:
    """A private single-node RabbitMQ with AMQPS and HTTPS management on free loopback ports.

    ``root`` is a directory the broker may fill (config, data, logs); the
    caller owns its removal.  ``leaf`` names the certificate pair served on
    both TLS listeners (see :data:`tests.support.pki.LEAVES`).  Ports and the
    node name are fixed at construction, so URLs stay valid across
    ``stop()``/``start()`` and data survives restarts.
    """

    __test__ = False  # a class named Test* that pytest must not collect

    def __init__(self, root: Path, pki: PKI, leaf: Leaf = "server") -> None:
        if leaf not in LEAVES:
            raise ValueError(f"unknown leaf {leaf!r}; expected one of {LEAVES}")
        self.server = ensure_broker_binary()
        self.root = root.resolve()
        self.pki = pki
        self.leaf: Leaf = leaf
        self.amqps_port, self.management_port, self.dist_port = _free_ports(3)
        self.node = f"fedtest{self.amqps_port}@localhost"
        self.root_user = ROOT_USER
        self.root_password = secrets.token_urlsafe(18)
        self.sites: dict[str, SiteCreds] = {}
        self.pid_file = self.root / "rabbitmq.pid"
        self.log_file = self.root / "node.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes], Any], TestBroker] | None = None
        self._write_files()
        self.env = self._environment()

    # ------------------------------------------------------------------ setup

    def _write_files(self) -> None:
        root = self.root
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("mnesia", "log", "conf.d"):
            (root / sub).mkdir(exist_ok=True)
        cert, key = self.pki.leaf(self.leaf)
        ca = self.pki.ca_cert
        tls = "\n".join(
            f"{prefix}.{k} = {v}"
            for prefix in ("ssl_options", "management.ssl")
            for k, v in {"cacertfile": ca, "certfile": cert, "keyfile": key}.items()
        )
        (root / "rabbitmq.conf").write_text(
            f"""\
# Generated by tests/support/broker.py for node {self.node}.
# No plain AMQP: every client connection must be TLS.
listeners.tcp = none
listeners.ssl.default = 127.0.0.1:{self.amqps_port}
{tls}
# Verify a client certificate if one is offered (mutual TLS tests), but do not require one.
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
ssl_options.versions.1 = tlsv1.3
ssl_options.versions.2 = tlsv1.2
# Management over HTTPS only: with management.ssl.* set and no management.tcp.*,
# the plugin starts no plain-HTTP listener (so nothing binds 15672).
management.ssl.port = {self.management_port}
management.ssl.ip = 127.0.0.1
management.ssl.versions.1 = tlsv1.3
management.ssl.versions.2 = tlsv1.2
loopback_users = none
# The harness's own administrator, created on first boot (no guest user).
default_vhost = /
default_user = {self.root_user}
default_pass = {self.root_password}
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
# Fresher management stats for tests that poll them: the management agent
# samples at the smallest retention-policy interval (default 5 s), so both
# the emission interval and the policies' first interval are set to 1 s.
collect_statistics_interval = 1000
management.sample_retention_policies.global.minute = 1
management.sample_retention_policies.global.hour = 60
management.sample_retention_policies.global.day = 1200
management.sample_retention_policies.basic.minute = 1
management.sample_retention_policies.basic.hour = 60
management.sample_retention_policies.detailed.10 = 1
# A nearly full CI disk must not raise a disk alarm that blocks publishers;
# tests that want the alarm set it explicitly.
disk_free_limit.absolute = 1MB
# Everything to stdout, which start() captures in node.log, so boot failures
# that happen before file logging is set up are captured too.
log.console = true
log.console.level = info
log.console.use_colors = off
log.file = false
"""
        )
        (root / "enabled_plugins").write_text("[rabbitmq_management].\n")
        # Our own (empty) rabbitmq-env.conf instead of /etc/rabbitmq's, which is
        # written for the system node.  (Its NODENAME=rabbit@localhost would in
        # fact lose to RABBITMQ_NODENAME, but anything else it sets, e.g.
        # CONFIG_FILE or NODE_PORT, would silently apply to test nodes too.)
        (root / "rabbitmq-env.conf").write_text("# intentionally empty: see tests/support/broker.py\n")
        # Pre-create the cookie: the server and the first rabbitmqctl would
        # otherwise race to create $HOME/.erlang.cookie with different values.
        cookie = root / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16).upper())
            cookie.chmod(0o400)

    def _environment(self) -> dict[str, str]:
        root = self.root
        # Drop inherited RabbitMQ/Erlang settings: they are aimed at some other node.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(root),  # the Erlang cookie lives in $HOME
            RABBITMQ_CONF_ENV_FILE=str(root / "rabbitmq-env.conf"),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_USE_LONGNAME="false",
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONFIG_FILE=str(root / "rabbitmq.conf"),
            RABBITMQ_CONFIG_FILES=str(root / "conf.d"),  # empty: skip /etc/rabbitmq/conf.d
            RABBITMQ_ADVANCED_CONFIG_FILE=str(root / "advanced.config"),  # absent on purpose
            RABBITMQ_ENABLED_PLUGINS_FILE=str(root / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(root / "mnesia"),
            RABBITMQ_LOG_BASE=str(root / "log"),
            RABBITMQ_PID_FILE=str(self.pid_file),
            # Keep distribution (and an epmd we might have to start) on loopback.
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            ERL_CRASH_DUMP=str(root / "erl_crash.dump"),
        )
        return env

    # -------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        """True while the node's OS process is alive (it may still be booting)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> TestBroker:
        """Boot the node and return once AMQPS and the management API both answer.

        On failure the node is killed and :class:`BrokerError` carries the tail of its log.
        """
        if self.running:
            raise BrokerError(f"{self.node} is already running")
        self.pid_file.unlink(missing_ok=True)
        log = open(self.log_file, "ab")  # noqa: SIM115 - closed by _reap
        self._log_offset = log.tell()  # log_tail() shows this boot only
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.node}\n".encode())
        log.flush()
        # Foreground (not -detached) in its own session: we own the process
        # group, capture early boot output, and can always reap it.
        proc = subprocess.Popen(
            [str(self.server)],
            env=self.env,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._proc = proc
        self._finalizer = weakref.finalize(self, _reap, proc, log)
        try:
            self._wait_ready(timeout, "boot")
            overview = self.api("GET", "/api/overview")
            if overview.get("node") != self.node:
                raise BrokerError(f"management API reports node {overview.get('node')!r}, expected {self.node!r}")
        except BaseException as exc:
            self._finalizer()
            self._proc = None
            if isinstance(exc, Exception):
                raise BrokerError(
                    f"{self.node} failed to start: {exc}\n--- node.log tail ---\n{self.log_tail()}"
                ) from exc
            raise
        return self

    def stop(self) -> None:
        """Stop the node (``rabbitmqctl stop``) and wait until its processes are gone.

        Idempotent.  Falls back to SIGTERM/SIGKILL of the node's process group.
        """
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                # A hung node makes these fail or time out: the finalizer
                # below then escalates to signals.
                with contextlib.suppress(BrokerError):
                    self._detach_stats_handler()
                    self.ctl("stop", check=False, timeout=STOP_TIMEOUT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=STOP_TIMEOUT)
        finally:
            assert self._finalizer is not None
            self._finalizer()
            self._proc = None

    def kill(self) -> None:
        """SIGKILL the node at once, like a crash (data survives; ``start()`` works again)."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        assert self._finalizer is not None
        self._finalizer()  # reaps the group and closes the log
        self._proc = None

    def _detach_stats_handler(self) -> None:
        """Remove the management stats event handler before stopping the ``rabbit`` app.

        On 3.10 that handler's ``terminate`` calls ``rabbit:force_event_refresh``
        while the app is already shutting down, which stalls ``stop`` and
        ``stop_app`` for ~5 s (stop: ~6.5 s -> ~1.5 s).  ``start_app``/``start``
        re-add the handler, so nothing is lost while the node runs.
        """
        expr = "gen_event:delete_handler(rabbit_event, rabbit_mgmt_db_handler, [])."
        with contextlib.suppress(BrokerError):  # a loaded machine: only the speed-up is lost, the stop still works
            self.ctl("eval", expr, check=False, timeout=60)

    def __enter__(self) -> TestBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop_app(self) -> None:
        """Stop the RabbitMQ application (all listeners close) but keep the VM running."""
        self._detach_stats_handler()
        self.ctl("stop_app")

    def start_app(self, timeout: float = START_TIMEOUT) -> None:
        """Start the application again and wait until AMQPS and the management API answer."""
        self.ctl("start_app", timeout=timeout)
        self._wait_ready(timeout, "start_app")

    def set_memory_watermark(self, value: float) -> None:
        """Set ``vm_memory_high_watermark`` (fraction of RAM); 0 raises a memory alarm at once."""
        self.ctl("set_vm_memory_high_watermark", repr(float(value)))

    def set_disk_free_limit(self, limit: str) -> None:
        """Set ``disk_free_limit`` (e.g. ``"100000GB"`` raises a disk alarm at the next check; ``"50MB"`` is the
        default)."""
        self.ctl("set_disk_free_limit", limit)

    def alarms(self) -> set[str]:
        """The node's resource alarms now raised: ``{"memory", "disk"}`` or a part of it."""
        nodes = self.api("GET", "/api/nodes")
        names = {"mem_alarm": "memory", "disk_free_alarm": "disk"}
        return {name for node in nodes for key, name in names.items() if node.get(key)}

    def _wait_ready(self, timeout: float, what: str) -> None:
        def ready() -> bool:
            if not self.running:
                code = self._proc.returncode if self._proc else None
                raise GiveUp(f"node process exited with status {code}")
            self._probe_amqps()
            self.api("GET", "/api/overview", timeout=5)
            return True

        wait_until(ready, timeout=timeout, interval=0.25, what=f"{self.node} {what}: AMQPS and management API")

    def _probe_amqps(self) -> None:
        """Complete a TLS handshake on the AMQPS port (raises if it is not accepting yet).

        The probe does not verify the certificate: the node may deliberately serve a bad one.
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", self.amqps_port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost"),
        ):
            pass

    def log_tail(self, lines: int = 80) -> str:
        """The last ``lines`` lines the node printed since the latest ``start()`` (for failure messages)."""
        try:
            with open(self.log_file, "rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------- rabbitmqctl

    def ctl(self, *args: str, check: bool = True, timeout: float = 120.0) -> str:
        """Run ``rabbitmqctl -n NODE *args`` against this node and return its stdout."""
        cmd = [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, *args]
        try:
            result = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"rabbitmqctl {' '.join(args)} timed out after {timeout:g}s") from exc
        if check and result.returncode != 0:
            raise BrokerError(
                f"rabbitmqctl {' '.join(args)} -> exit {result.returncode}\n{result.stderr or result.stdout}"
            )
        return result.stdout

    # --------------------------------------------------------- management API

    @property
    def ca_file(self) -> Path:
        """The CA certificate clients should trust (whatever leaf the node serves)."""
        return self.pki.ca_cert

    @property
    def management_url(self) -> str:
        return f"https://localhost:{self.management_port}"

    def _admin_ssl_context(self) -> ssl.SSLContext:
        """TLS context for the harness's own management calls.

        Against the good "server" leaf this verifies fully (CA + host name).
        Against a deliberately broken leaf the harness must still administer
        the node, so it skips verification there; tests that check
        verification build their own contexts.
        """
        if self.leaf == "server":
            return ssl.create_default_context(cafile=str(self.ca_file))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: tuple[str, str] | None = None,
        timeout: float = 30.0,  # a loaded machine's management API can take seconds; a refusal still fails fast
    ) -> Any:
        """Call the management HTTP API and return the decoded JSON (``None`` for an empty body).

        ``path`` starts with ``/api/``; quote vhost and user names in it with
        ``urllib.parse.quote(name, safe="")``.  Authenticates as the harness
        administrator unless ``auth=(user, password)`` is given.  HTTP errors
        raise :class:`ManagementAPIError`.
        """
        user, password = auth or (self.root_user, self.root_password)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.management_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self._admin_ssl_context()) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise ManagementAPIError(method, path, exc.code, exc.read().decode(errors="replace")) from exc
        return json.loads(raw) if raw else None

    def connections(self) -> list[dict[str, Any]]:
        """All client connections as the management API lists them (fields ``user``, ``ssl``, ``vhost``...)."""
        result: list[dict[str, Any]] = self.api("GET", "/api/connections")
        return result

    # ------------------------------------------------------------------ sites

    def add_site(self, site_id: str) -> SiteCreds:
        """Create vhost ``site_id`` and its administrator ``admin-<site_id>`` (random password).

        The user is tagged ``administrator`` (it may use the management API,
        e.g. to create users for partner sites) and has full permissions on
        its own vhost only.
        """
        creds = SiteCreds(user=f"admin-{site_id}", password=secrets.token_urlsafe(18), vhost=site_id)
        q = urllib.parse.quote
        self.api("PUT", f"/api/vhosts/{q(site_id, safe='')}", {"description": f"test site {site_id}"})
        self.api("PUT", f"/api/users/{q(creds.user, safe='')}", {"password": creds.password, "tags": "administrator"})
        self.api(
            "PUT",
            f"/api/permissions/{q(site_id, safe='')}/{q(creds.user, safe='')}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )
        self.sites[site_id] = creds
        return creds

    def add_least_privilege_users(self, site_id: str) -> tuple[SiteCreds, SiteCreds]:
        """For a site made by ``add_site``: a tagless daemon user ``fed-<site>`` with configure, write and read
        on ``federation`` names of its vhost only, and a provisioning user ``mgmt-<site>`` (``administrator``
        tag, no vhost permissions) for the management API. Returns (daemon user, provisioning user)."""
        q = urllib.parse.quote
        own = SiteCreds(user=f"fed-{site_id}", password=secrets.token_urlsafe(18), vhost=site_id)
        admin = SiteCreds(user=f"mgmt-{site_id}", password=secrets.token_urlsafe(18), vhost=site_id)
        names = r"^federation(\..*)?$"
        self.api("PUT", f"/api/users/{q(own.user, safe='')}", {"password": own.password, "tags": ""})
        self.api("PUT", f"/api/permissions/{q(site_id, safe='')}/{q(own.user, safe='')}",
                 {"configure": names, "write": names, "read": names})
        self.api("PUT", f"/api/users/{q(admin.user, safe='')}", {"password": admin.password, "tags": "administrator"})
        return own, admin

    def url(self, site_id: str, creds: SiteCreds) -> str:
        """``amqps://user:password@localhost:PORT/vhost`` for a site's own broker account."""
        q = urllib.parse.quote
        userinfo = f"{q(creds.user, safe='')}:{q(creds.password, safe='')}"
        return f"amqps://{userinfo}@localhost:{self.amqps_port}/{q(site_id, safe='')}"

    def public_url(self, site_id: str) -> str:
        """The credential-free URL a site advertises to partners: ``amqps://localhost:PORT/site_id``."""
        return f"amqps://localhost:{self.amqps_port}/{urllib.parse.quote(site_id, safe='')}"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<TestBroker {self.node} amqps={self.amqps_port} mgmt={self.management_port} leaf={self.leaf} {state}>"


class TestCluster:
    """A private RabbitMQ cluster of ``size`` :class:`TestBroker` nodes under ``root``.

    The nodes share one Erlang cookie and one harness administrator, each
    serves the private CA's "server" leaf (valid for ``localhost``) on its own
    AMQPS and HTTPS ports, and nodes 2.. ``rabbitmqctl join_cluster`` node 1.
    Nodes boot in parallel.  A site made on the cluster (``add_site``) gets
    a vhost and user that every node knows; ``url`` and ``public_url`` list
    every node.  It quacks like a :class:`TestBroker` where
    :class:`tests.support.sites.Site` needs one.
    """

    __test__ = False

    def __init__(self, root: Path, pki: PKI, size: int = 3) -> None:
        if size < 2:
            raise ValueError("a cluster has at least 2 nodes")
        root = root.resolve()
        cookie = secrets.token_hex(16).upper()
        for index in range(size):
            node_root = root / f"node{index + 1}"
            node_root.mkdir(parents=True, exist_ok=True)
            (node_root / ".erlang.cookie").write_text(cookie)
            (node_root / ".erlang.cookie").chmod(0o400)
        self.nodes = [TestBroker(root / f"node{index + 1}", pki) for index in range(size)]
        first = self.nodes[0]
        for node in self.nodes[1:]:  # after the join, every node knows node 1's users only
            node.root_password = first.root_password
            node._write_files()
        self.pki = pki
        self.root_user, self.root_password = first.root_user, first.root_password
        self.sites: dict[str, SiteCreds] = {}

    def start(self, timeout: float = START_TIMEOUT) -> TestCluster:
        """Boot every node (in parallel), then join nodes 2.. to node 1; returns once all run as one cluster."""
        try:
            with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
                for future in [pool.submit(node.start, timeout) for node in self.nodes]:
                    future.result()
            for node in self.nodes[1:]:
                node.stop_app()
                node.ctl("join_cluster", self.nodes[0].node)
                node.start_app(timeout)
            self.wait_running(self.nodes, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node (in parallel); idempotent."""
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.stop(), self.nodes))

    def __enter__(self) -> TestCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- state

    def running_nodes(self) -> set[str]:
        """Erlang names of the nodes the cluster reports running (asked of a running node)."""
        for node in self.nodes:
            if node.running:
                status = json.loads(node.ctl("cluster_status", "--formatter", "json"))
                return set(status.get("running_nodes", []))
        return set()

    def wait_running(self, nodes: list[TestBroker], timeout: float = START_TIMEOUT) -> None:
        """Wait until the cluster reports exactly ``nodes`` running (e.g. all of them after a restart)."""
        wanted = {node.node for node in nodes}
        wait_until(lambda: self.running_nodes() == wanted, timeout, interval=0.5,
                   what=f"cluster running nodes to be {sorted(wanted)}")

    def by_name(self, erlang_name: str) -> TestBroker:
        return next(node for node in self.nodes if node.node == erlang_name)

    def queue_leader(self, vhost: str, queue: str) -> TestBroker:
        """The node that leads quorum queue ``queue`` (the management API's ``leader``)."""
        q = urllib.parse.quote
        info = self.api("GET", f"/api/queues/{q(vhost, safe='')}/{q(queue, safe='')}")
        return self.by_name(str(info["leader"]))

    def queue_members(self, vhost: str, queue: str) -> list[str]:
        q = urllib.parse.quote
        info = self.api("GET", f"/api/queues/{q(vhost, safe='')}/{q(queue, safe='')}")
        return sorted(info.get("members", []))

    # ------------------------------------------------- the TestBroker surface

    def api(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """The management API of the first running node."""
        node = next((n for n in self.nodes if n.running), None)
        if node is None:
            raise BrokerError("no node of the cluster is running")
        return node.api(method, path, body, **kwargs)

    @property
    def ca_file(self) -> Path:
        return self.nodes[0].ca_file

    @property
    def management_url(self) -> str:
        return self.nodes[0].management_url

    def add_site(self, site_id: str) -> SiteCreds:
        creds = self.nodes[next(i for i, n in enumerate(self.nodes) if n.running)].add_site(site_id)
        self.sites[site_id] = creds
        return creds

    def url(self, site_id: str, creds: SiteCreds) -> list[str]:
        """Every node's ``amqps://user:password@localhost:PORT/vhost``."""
        return [node.url(site_id, creds) for node in self.nodes]

    def public_url(self, site_id: str) -> list[str]:
        return [node.public_url(site_id) for node in self.nodes]

    def __repr__(self) -> str:
        return f"<TestCluster {[repr(node) for node in self.nodes]}>"
