"""Operating links: `pause`, `resume`, `send-now`, `clear`, `relink`, `link release|change-url`, `adopt`."""

from __future__ import annotations

from types import ModuleType

import click

from federationd.cli.base import State, fail, guarded, main, pass_state
from federationd.cli.links import link


def _lifecycle() -> ModuleType:
    from federationd import lifecycle  # noqa: PLC0415 - the broker stack loads only for verbs that use it

    return lifecycle


def _affected(sites: list[str], what: str) -> None:
    click.echo(f"{what}: {', '.join(sites)}" if sites else f"{what}: no linked partner")


@main.command()
@click.argument("site", required=False)
@pass_state
@guarded
def pause(state: State, site: str | None) -> None:
    """Pause one link, or the whole site: nothing is sent or consumed (partners' messages wait in the broker)."""
    _lifecycle().pause(state.runtime(), site)
    click.echo(f"paused {site or 'the whole site'}; the running daemon stops sending and consuming within a second")


@main.command()
@click.argument("site", required=False)
@pass_state
@guarded
def resume(state: State, site: str | None) -> None:
    """Undo `pause` (a pause set in the config file stays until the file says otherwise)."""
    still = _lifecycle().resume(state.runtime(), site)
    click.echo(f"resumed {site or 'the whole site'}")
    for reason in still:
        click.echo(f"federationd: warning: still paused: {reason}", err=True)


@main.command("send-now")
@click.argument("site", required=False)
@pass_state
@guarded
def send_now(state: State, site: str | None) -> None:
    """Send pending changes at once, skipping the quiet period (one partner, or all)."""
    _affected(_lifecycle().send_now(state.runtime(), site), "sending now to")


@main.command()
@click.argument("site", required=False)
@pass_state
@guarded
def clear(state: State, site: str | None) -> None:
    """Clear a send stuck "sending" and the schedule; pending changes go at the next send (nothing is lost)."""
    _affected(_lifecycle().clear(state.runtime(), site), "cleared the send schedule of")


@main.command()
@click.argument("site")
@pass_state
@guarded
def relink(state: State, site: str) -> None:
    """Resynchronise with a partner: full snapshots both ways under new epochs."""
    _lifecycle().relink(state.runtime(), site)
    click.echo(f"relink with {site}: our snapshot and the request for theirs go at the next send")


@link.command("release")
@click.argument("site")
@pass_state
@guarded
def link_release(state: State, site: str) -> None:
    """Release a link: both sides stop, credentials are revoked, the partner's people and org data are deleted
    here (schedules stay)."""
    _lifecycle().release(state.runtime(), site)
    click.echo(f"released the link with {site}")


@link.command("change-url")
@click.argument("url")
@pass_state
@guarded
def link_change_url(state: State, url: str) -> None:
    """Tell every partner our broker's new public endpoint (amqps://HOST:PORT/VHOST)."""
    told = _lifecycle().change_url(state.runtime(), url)
    _affected(told, "the new endpoint goes at the next send to")
    if state.config.broker.public_url.rstrip("/") != url.rstrip("/"):
        click.echo("federationd: warning: also set broker.public_url in the config file, so new link tokens carry "
                   "the new endpoint", err=True)


@main.command()
@click.option("--i-am-the-site", "confirmed", is_flag=True, help="Confirm this server is the real site.")
@pass_state
@guarded
def adopt(state: State, confirmed: bool) -> None:
    """Lift the guard against a copied database: declare this installation the site (SPEC 3.1)."""
    if not confirmed:
        fail("adopt makes this installation the site; say so with --i-am-the-site (never on a test copy)")
    _lifecycle().adopt(state.runtime())
    click.echo("this installation is now the site; restart or reload the daemon to resume")
