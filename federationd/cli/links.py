"""The handshake verbs: `link request|inspect|accept|start|reject|show`.

The verification codes are read aloud between the two administrators, by phone, never in the same mail as the
token (docs/operations.md).
"""

from __future__ import annotations

import getpass
import os
import socket

import click

from federationd.cli.base import State, emit, fail, guarded, json_option, main, pass_state
from federationd.errors import FederationError


@main.group()
def link() -> None:
    """The link handshake and lifecycle."""


def _operator() -> str:
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    return f"{user}@{socket.gethostname()}"


@link.command("request")
@click.option("--by", "requested_by", help="Who requests the link (default: the operator's user@host).")
@click.option("--for", "for_site", metavar="SITE", help="Only SITE may accept: an acceptance from another site id "
              "is refused.")
@json_option
@pass_state
@guarded
def link_request(state: State, requested_by: str | None, for_site: str | None, as_json: bool) -> None:
    """Issue a link token to mail to the partner's administrator (valid 24 hours, single use); read them the
    code over the phone."""
    from federationd import handshake  # noqa: PLC0415 - the broker stack loads only for verbs that use it

    token = handshake.request(state.runtime(), requested_by or _operator(), for_site)
    text = token.encode()
    document = {"token": text, "code": token.code, "expires_at": token.public()["expires_at"], "for": for_site}

    def lines() -> None:
        click.echo(f"Link token for {token.site} ({token.company}), valid until {document['expires_at']}"
                   + (f", for {for_site} only" if for_site else "") + ".")
        click.echo("Mail the token; read the code to the partner's administrator by phone (not in the mail):")
        click.echo(f"code: {token.code}")
        click.echo(text)
    emit(as_json, document, lines)


@link.command("inspect")
@click.argument("token")
@json_option
def link_inspect(token: str, as_json: bool) -> None:
    """Show what a link token says and its code, without any side effect."""
    from federationd.handshake import inspect  # noqa: PLC0415

    try:
        details = inspect(token)
    except FederationError as exc:
        fail(str(exc))

    def text() -> None:
        for key, value in details.items():
            click.echo(f"{key:13} {_shown(value)}")
    emit(as_json, details, text)


@link.command("accept")
@click.argument("token")
@click.option("--code", required=True, help="The code the requester's administrator read to you by phone.")
@click.option("--by", "accepted_by", help="Who accepts (default: the operator's user@host).")
@json_option
@pass_state
@guarded
def link_accept(state: State, token: str, code: str, accepted_by: str | None, as_json: bool) -> None:
    """Accept a partner's link token if its code matches; print our code for the partner's administrator, who
    then starts (or rejects) the link."""
    from federationd import handshake  # noqa: PLC0415

    accepted = handshake.accept(state.runtime(), token, code, accepted_by or _operator())
    document = {"site": accepted.token.site, "state": "awaiting_start", "code": accepted.code}

    def text() -> None:
        click.echo(f"accepted the link from {accepted.token.site} ({accepted.token.company}).")
        click.echo(f"Read this code to {accepted.token.site}'s administrator by phone; they start the link with it:")
        click.echo(f"code: {accepted.code}")
    emit(as_json, document, text)


@link.command("start")
@click.argument("site")
@click.option("--code", required=True, help="The code the acceptor's administrator read to you by phone.")
@json_option
@pass_state
@guarded
def link_start(state: State, site: str, code: str, as_json: bool) -> None:
    """Start a link the partner accepted, if its code matches: both sides go `linked` and send a snapshot."""
    from federationd import handshake  # noqa: PLC0415

    handshake.start(state.runtime(), site, code)
    emit(as_json, {"ok": True, "site": site, "state": "linked"}, lambda: click.echo(f"link with {site} started"))


@link.command("reject")
@click.argument("site")
@click.option("--local", is_flag=True, help="Stop on this side even if the partner cannot be reached now (it is "
              "told when it can).")
@json_option
@pass_state
@guarded
def link_reject(state: State, site: str, local: bool, as_json: bool) -> None:
    """Reject a link the partner accepted: both sides go `stopped`."""
    from federationd import handshake  # noqa: PLC0415

    told = handshake.reject(state.runtime(), site, local)
    emit(as_json, {"ok": True, "site": site, "state": "stopped", "told": told},
         lambda: click.echo(f"link with {site} rejected ({told})"))


@link.command("show")
@click.argument("site")
@json_option
@pass_state
@guarded
def link_show(state: State, site: str, as_json: bool) -> None:
    """One link: state, who paused it, the partner's details and code, the incarnation, who did what when."""
    from federationd.linkview import show  # noqa: PLC0415

    document = show(state.runtime(), site)

    def text() -> None:
        for key, value in document.items():
            click.echo(f"{key:16} {_shown(value)}")
    emit(as_json, document, text)


def _shown(value: object) -> str:
    """A field as the text form prints it: `-` for none, a list (a cluster's nodes) comma-separated."""
    if value is None:
        return "-"
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
