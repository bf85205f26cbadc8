"""The handshake verbs: `link request|inspect|accept|start|reject`."""

from __future__ import annotations

import getpass
import os
import socket

import click

from federationd.cli.base import State, emit, fail, guarded, main, pass_state
from federationd.errors import FederationError


@main.group()
def link() -> None:
    """The link handshake and lifecycle."""


def _operator() -> str:
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    return f"{user}@{socket.gethostname()}"


@link.command("request")
@click.option("--by", "requested_by", help="Who requests the link (default: the operator's user@host).")
@pass_state
@guarded
def link_request(state: State, requested_by: str | None) -> None:
    """Issue a link token to mail to the partner's administrator (valid 24 hours, single use)."""
    from federationd import handshake  # noqa: PLC0415 - the broker stack loads only for verbs that use it

    token = handshake.request(state.runtime(), requested_by or _operator())
    click.echo(f"Link token for {token.site} ({token.company}), valid until {token.public()['expires_at']}:")
    click.echo(token.encode())


@link.command("inspect")
@click.argument("token")
@click.option("--json", "as_json", is_flag=True)
def link_inspect(token: str, as_json: bool) -> None:
    """Show what a link token says, without any side effect."""
    from federationd.tokens import decode  # noqa: PLC0415

    try:
        details = decode(token).public()
    except FederationError as exc:
        fail(str(exc))
    def text() -> None:
        for key, value in details.items():
            click.echo(f"{key:13} {value}")
    emit(as_json, details, text)


@link.command("accept")
@click.argument("token")
@pass_state
@guarded
def link_accept(state: State, token: str) -> None:
    """Accept a partner's link token; the partner then starts (or rejects) the link."""
    from federationd import handshake  # noqa: PLC0415

    accepted = handshake.accept(state.runtime(), token)
    click.echo(f"accepted the link from {accepted.site} ({accepted.company}); waiting for it to start the link")


@link.command("start")
@click.argument("site")
@pass_state
@guarded
def link_start(state: State, site: str) -> None:
    """Start a link the partner accepted: both sides go `linked` and send each other a snapshot."""
    from federationd import handshake  # noqa: PLC0415

    handshake.start(state.runtime(), site)
    click.echo(f"link with {site} started")


@link.command("reject")
@click.argument("site")
@pass_state
@guarded
def link_reject(state: State, site: str) -> None:
    """Reject a link the partner accepted: both sides go `stopped`."""
    from federationd import handshake  # noqa: PLC0415

    handshake.reject(state.runtime(), site)
    click.echo(f"link with {site} rejected")
