"""Bad input 11: no secret (the sites' broker passwords, partner credentials, link tokens' one-time passwords)
appears in what the daemon and the CLI write: daemon logs, `status` (text and JSON), `log` (text, CSV, JSON),
`history`, metrics, and every message of every CLI call, after a scenario with a handshake, traffic, a refused
token and failing connections."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import update

from federationd.schema import links as link_rows
from federationd.tokens import decode
from tests.faults.common import FIGURES, UNREACHABLE, accept, converge, credential_of, leaks, link
from tests.support.sites import Site, coded
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


class Transcript:
    """Runs CLI verbs and keeps everything they printed."""

    def __init__(self) -> None:
        self.outputs: list[str] = []

    def run(self, site: Site, *args: str, code: int | None = 0) -> subprocess.CompletedProcess[str]:
        result = site.cli(*args, check=False)
        self.outputs.append(f"$ {site.id} {' '.join(args)}\n{result.stdout}\n{result.stderr}")
        if code is not None:
            assert result.returncode == code, (args, result.returncode, result.stderr)
        return result

    def accept(self, site: Site, token: str, code: int) -> None:
        """`link accept`, with the code `link inspect` shows when the handshake has codes (see common.accept)."""
        result = accept(site, token)
        self.outputs.append(f"$ {site.id} link accept ...\n{result.stdout}\n{result.stderr}")
        assert result.returncode == code, (result.returncode, result.stderr)


def test_no_secret_in_logs_status_log_metrics_or_errors(make_site, broker):
    a, b = make_site("alpha", transport={"retry_max": "2s"}), make_site("beta")
    c = make_site("gamma", start=False)
    cli = Transcript()
    token = link(a, b)
    tokens = [token]

    for n in range(3):
        cli.run(a, "records", "put", "employee", f"e{n}", "--data", f'{{"name": "E{n}"}}')
    cli.run(b, "records", "put", "department", "d1", "--data", '{"name": "Sales"}')
    assert converge(a, b, 60, ("company", "employee")).clean

    # a refused token (already used), a token pointing at a closed port, a damaged one
    cli.accept(c, token, code=1)
    fresh = decode(cli.run(a, "link", "request").stdout.strip().splitlines()[-1])
    tokens.append(fresh.encode())
    cli.run(c, "link", "inspect", fresh.encode())
    cli.run(c, "link", "inspect", "--json", fresh.encode())
    dead_end = type(fresh)(**{**fresh.__dict__, "public_url": "amqps://localhost:9/nowhere"}).encode()
    cli.accept(c, dead_end, code=69)
    FIGURES[UNREACHABLE] += 1
    cli.run(c, "link", "accept", *coded(fresh.encode()[:-5]), code=1)

    # a partner whose broker stops answering: sends fail and are retried
    with a.engine() as engine, engine.begin() as conn:
        conn.execute(update(link_rows).where(link_rows.c.site == b.id)
                     .values(public_url="amqps://localhost:9/nowhere"))
    FIGURES[UNREACHABLE] += 1  # the link's endpoint edited in A's database to a closed port
    cli.run(a, "records", "put", "employee", "e9", "--data", '{"name": "E9"}')
    wait_until(lambda: "cannot reach" in (a.link_row(b.id).get("note") or ""), 60, what="A's failed send")
    cli.run(a, "status")
    with a.engine() as engine, engine.begin() as conn:
        conn.execute(update(link_rows).where(link_rows.c.site == b.id)
                     .values(public_url=b.cfg["broker"]["public_url"]))
    a.cli("send-now", b.id)
    assert converge(a, b, 60, ("company", "employee")).clean

    # a config mistake next to the password
    a.cfg["schedule"]["quiet_period"] = "soon"
    a.write_config()
    cli.run(a, "status", code=78)
    cli.run(a, "check-config", code=78)
    a.cfg["schedule"]["quiet_period"] = "1s"
    a.write_config()

    sweep = [(site, args) for site in (a, b)
             for args in (["status"], ["status", "--json"], ["log"], ["log", "--json"], ["log", "--csv"],
                          ["history", (b if site is a else a).id], ["records", "list", "employee", "--json"],
                          ["check-config"])]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda job: cli.run(job[0], *job[1]), sweep))
    secrets = {
        "A's broker password": a.password, "B's broker password": b.password, "C's broker password": c.password,
        "A's credential on B's broker": credential_of(a, b.id)[1],
        "B's credential on A's broker": credential_of(b, a.id)[1],
        **{f"token {n}'s password": decode(t).password for n, t in enumerate(tokens)},
    }
    places = {
        "A's daemon log": a.log_text(), "B's daemon log": b.log_text(),
        "A's metrics": a.metrics(), "B's metrics": b.metrics(),
        "the CLI's output": "\n".join(cli.outputs),
    }
    assert not leaks(secrets, places)
    # the scenario did produce the messages we searched
    assert "already used" in places["the CLI's output"] and "cannot reach" in places["A's daemon log"]
