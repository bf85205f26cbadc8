"""`import` and the access verbs: `access check|ticket|redeem` (SPEC 7)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from federationd.cli.base import State, emit, guarded, main, pass_state
from federationd.errors import RejectedChange


@main.command("import")
@click.argument("category")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_state
@guarded
def import_(state: State, category: str, file: Path) -> None:
    """Write every row of a CSV file (header names the fields, one `id`) in one transaction, under the bulk lock."""
    from federationd.outbox.importer import run_import  # noqa: PLC0415

    engine = state.runtime().engine
    if not sys.stderr.isatty():
        count = run_import(engine, category, file)
    else:
        from rich.progress import Progress  # noqa: PLC0415

        with Progress(transient=True) as bar:
            task = bar.add_task(f"importing {file.name}", total=None)
            count = run_import(engine, category, file,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    click.echo(f"imported {count} {category} record(s) from {file}")


@main.group()
def access() -> None:
    """Visit and accept rules, and sign-in tickets (SPEC 7)."""


def _print_decision(answer: dict[str, Any]) -> None:
    verdict = "ALLOWED" if answer["allowed"] else "REFUSED"
    click.echo(f"{verdict}: role {answer['role']}, products {answer['products'] or 'all'}, restrictions "
               f"{answer['restrictions'] or 'none'} (rule: {answer['rule']})")


@access.command("check")
@click.argument("site")
@click.argument("employee")
@click.option("--from-ip", "ip", help="The client's address, for per-network roles.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@guarded
def access_check(state: State, site: str, employee: str, ip: str | None, as_json: bool) -> None:
    """May SITE's EMPLOYEE sign in here, with what, and which rule decided."""
    from federationd import signin  # noqa: PLC0415

    answer = signin.check(state.runtime(), site, employee, _address(ip)).as_json()
    emit(as_json, answer, lambda: _print_decision(answer))


@access.command("ticket")
@click.argument("site")
@click.argument("employee")
@pass_state
@guarded
def access_ticket(state: State, site: str, employee: str) -> None:
    """A sign-in ticket for one of our employees to present at SITE (60 seconds, single use)."""
    from federationd import signin  # noqa: PLC0415

    click.echo(signin.ticket(state.runtime(), site, employee))


@access.command("redeem")
@click.argument("ticket")
@click.option("--from-ip", "ip", help="The client's address, for per-network roles.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@guarded
def access_redeem(state: State, ticket: str, ip: str | None, as_json: bool) -> None:
    """Verify a partner's sign-in ticket (signature, audience, expiry, single use) and answer like `check`."""
    from federationd import signin  # noqa: PLC0415

    answer = signin.redeem(state.runtime(), ticket, _address(ip))

    def text() -> None:
        _print_decision(answer)
        click.echo(f"employee {answer['employee']} of {answer['origin']}")
    emit(as_json, answer, text)


def _address(ip: str | None) -> str | None:
    if ip is None:
        return None
    import ipaddress  # noqa: PLC0415

    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        raise RejectedChange("invalid_option", f"--from-ip {ip!r} is not an IP address") from None
