"""`import` and the access verbs: `access list|check|ticket|redeem`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from federationd.cli.base import State, done, emit, guarded, json_option, main, pass_state
from federationd.errors import RejectedChange


@main.command("import")
@click.argument("category")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@pass_state
@guarded
def import_(state: State, category: str, file: Path, as_json: bool) -> None:
    """Write every row of a CSV file (header names the fields, one `id`) in one transaction, under the bulk lock."""
    from federationd.outbox.importer import run_import  # noqa: PLC0415

    engine = state.runtime().engine
    if not sys.stderr.isatty():
        count = run_import(engine, category, file)
    else:
        from rich.console import Console  # noqa: PLC0415
        from rich.progress import Progress  # noqa: PLC0415

        with Progress(transient=True, console=Console(stderr=True)) as bar:  # progress on stderr only
            task = bar.add_task(f"importing {file.name}", total=None)
            count = run_import(engine, category, file,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    done(as_json, f"imported {count} {category} record(s) from {file}", category=category, records=count)


@main.group()
def access() -> None:
    """Visit and accept rules, and sign-in tickets."""


def _print_decision(answer: dict[str, Any]) -> None:
    verdict = "ALLOWED" if answer["allowed"] else "REFUSED"
    click.echo(f"{verdict}: role {answer['role']}, products {answer['products'] or 'all'}, restrictions "
               f"{answer['restrictions'] or 'none'} (rule: {answer['rule']})")


@access.command("list")
@click.argument("site")
@json_option
@pass_state
@guarded
def access_list(state: State, site: str, as_json: bool) -> None:
    """SITE's access settings: our accept table in priority order, our visit rules, the partner's accept rules."""
    from federationd import accesslist  # noqa: PLC0415

    document = accesslist.listing(state.runtime(), site)
    emit(as_json, document, lambda: click.echo("\n".join(accesslist.text_lines(site, document))))


@access.command("check")
@click.argument("site")
@click.argument("employee")
@click.option("--from-ip", "ip", help="The client's address, for per-network roles.")
@json_option
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
@json_option
@pass_state
@guarded
def access_ticket(state: State, site: str, employee: str, as_json: bool) -> None:
    """A sign-in ticket for one of our employees to present at SITE (60 seconds, single use)."""
    from federationd import signin  # noqa: PLC0415

    ticket = signin.ticket(state.runtime(), site, employee)
    done(as_json, ticket, ticket=ticket)


@access.command("redeem")
@click.argument("ticket")
@click.option("--from-ip", "ip", help="The client's address, for per-network roles.")
@json_option
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
