"""`make demo`: three sites linked on a throwaway local TLS broker, changes flowing, status shown, then cleaned up.

Everything goes through the real thing: a private RabbitMQ node with its own CA (AMQPS and HTTPS management
only), `federationd init`, `federationd run` daemons, the link handshake between operators (the token by mail,
the verification codes by phone), and `records put`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from tests.support.broker import TestBroker
from tests.support.pki import make_pki
from tests.support.sites import Site, link
from tests.support.waiting import wait_until

console = Console(highlight=False, soft_wrap=True)


def step(text: str) -> None:
    console.print(f"\n[bold cyan]== {text}[/]")


def show(site: Site, *args: str) -> None:
    console.print(f"[dim]$ federationd -c {site.id}.yaml {' '.join(args)}[/]")
    print(site.cli(*args).stdout.rstrip())  # as the CLI printed it, not re-wrapped


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="federationd-demo-"))
    broker = TestBroker(root / "broker", make_pki(root / "pki"))
    sites: list[Site] = []
    try:
        step("booting a throwaway RabbitMQ node (TLS only, private CA, management over HTTPS)")
        started = time.monotonic()
        broker.start()
        console.print(f"broker up on amqps://localhost:{broker.amqps_port} in {time.monotonic() - started:.1f}s")

        step("three sites, each with its own database, vhost and daemon")
        for name in ("tokyo", "osaka", "nagoya"):
            site = Site(name, root / name, broker, "sqlite")
            site.cli("init")
            site.start()
            sites.append(site)
            console.print(f"{name}: initialised and running (metrics on 127.0.0.1:{site.metrics_port})")
        tokyo, osaka, nagoya = sites

        link_with(tokyo, osaka, *request(tokyo, osaka))
        step("tokyo links with nagoya too")
        link_with(tokyo, nagoya)

        step("changes at each site")
        for i in range(1, 6):
            tokyo.put("employee", f"t-{i}", {"name": f"Tokyo person {i}", "main_department": "sales"})
        tokyo.put("department", "sales", {"name": "Sales", "parent": None, "order": 1})
        osaka.put("employee", "o-1", {"name": "Osaka person", "position": "manager"})
        nagoya.put("presence", "n-1", {"status": "out", "return_at": "15:00", "diary": "not federated"})
        console.print("tokyo: 5 employees + 1 department; osaka: 1 employee; nagoya: 1 presence")

        step("waiting for the quiet period (1s here, 15m by default) and the sends")
        wait_until(lambda: len(osaka.records("employee", origin="tokyo")) == 5, 60, what="tokyo's staff at osaka")
        wait_until(lambda: len(nagoya.records("employee", origin="tokyo")) == 5, 60, what="tokyo's staff at nagoya")
        wait_until(lambda: osaka.records("employee", origin="osaka") and
                   tokyo.records("employee", origin="osaka"), 60, what="osaka's employee at tokyo")
        wait_until(lambda: tokyo.records("presence", origin="nagoya"), 60, what="nagoya's presence at tokyo")
        show(osaka, "records", "list", "employee", "--origin", "tokyo")
        show(tokyo, "records", "get", "presence", "n-1", "--origin", "nagoya")

        step("an update and a delete at tokyo reach both partners")
        tokyo.put("employee", "t-1", {"name": "Tokyo person 1 (renamed)", "main_department": "sales"})
        tokyo.cli("records", "delete", "employee", "t-5")
        for partner in (osaka, nagoya):
            wait_until(lambda p=partner: len(p.records("employee", origin="tokyo")) == 4, 60,
                       what=f"the delete at {partner.id}")
        show(nagoya, "records", "list", "employee", "--origin", "tokyo")

        step("status at each site")
        for site in sites:
            show(site, "status")
        console.print("\n[bold green]demo complete[/]: 3 sites linked over AMQPS, changes flowed both ways.")
        return 0
    finally:
        step("cleaning up")
        for site in sites:
            site.close()
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)
        console.print(f"stopped the daemons and the broker; removed {root}")


def request(a: Site, b: Site) -> tuple[str, str]:
    step(f"{a.id} requests a link: the token goes by mail, the code by phone (never in the same mail)")
    lines = a.cli("link", "request", "--by", f"admin@{a.id}").stdout.strip().splitlines()
    console.print("\n".join(lines))
    step(f"{b.id} inspects the token: the code it computes must be the one {a.id}'s administrator reads out")
    show(b, "link", "inspect", lines[-1])
    return lines[-1], lines[-2].removeprefix("code: ")


def link_with(a: Site, b: Site, token: str | None = None, code: str | None = None) -> None:
    if token is None or code is None:
        link(a, b)
    else:
        step(f"{b.id} accepts with the code it was read; it prints its own code, read back to {a.id} by phone")
        accepted = b.cli("link", "accept", token, "--code", code, "--by", f"admin@{b.id}").stdout.strip()
        console.print(accepted)
        wait_until(lambda: a.link_state(b.id) == "awaiting_start", 60, what=f"{a.id} sees the acceptance")
        step(f"{a.id} compares the code of the acceptance it received (`link show`), then starts with it")
        show(a, "link", "show", b.id)
        a.cli("link", "start", b.id, "--code", accepted.splitlines()[-1].removeprefix("code: "))
        wait_until(lambda: a.link_state(b.id) == "linked" and b.link_state(a.id) == "linked", 60,
                   what="both sides linked")
    console.print(f"{a.id} <-> {b.id}: linked")


if __name__ == "__main__":
    sys.exit(main())
